"""A small analytical performance model with igniter.model.PerfModel's API, for provisioning tests.

Solo latency L(b, s) = (c0 + c1*b) * (100/s)^0.7 + 0.1 ms (V100-like magnitudes); throughput = 1000*b/L.
Co-location is exactly the linear form the ILP uses: L * (1 + sens * sum(partner pressure)) + sched * partners,
so the linearisation is exact and optima can be checked by enumeration.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

Member = namedtuple("Member", "model batch share")
Prediction = namedtuple("Prediction", "model batch share latency_ms throughput_rps")
LinearTerms = namedtuple("LinearTerms", "solo_latency_ms solo_throughput_rps sensitivity pressure sched_ms")

# model: (c0, c1, pressure at 100 %, sensitivity, sched_ms, memory base MB, memory per sample MB)
PARAMS = {
    "alexnet": (0.30, 0.25, 0.30, 0.5, 0.05, 300.0, 10.0),
    "resnet50": (1.00, 0.80, 0.40, 0.6, 0.10, 500.0, 40.0),
    "vgg19": (2.00, 2.00, 0.50, 0.5, 0.10, 800.0, 60.0),
    "ssd": (3.00, 2.50, 0.40, 0.7, 0.15, 700.0, 80.0),
}


class FakePerfModel:
    def __init__(self, name: str = "V100", memory_mb: float | None = 16384.0, models: dict | None = None,
                 speed: float = 1.0, kind: str = "gpu", cores: int | None = None,
                 shares: tuple[float, ...] = (10.0, 20.0, 40.0, 50.0, 60.0, 80.0, 100.0)):
        self.params = models or PARAMS
        self.speed = speed
        self.profiled_shares = list(shares)
        self.hardware = {"kind": kind, "name": name, "source": "fake"}
        if memory_mb:
            self.hardware["memory_mb"] = memory_mb
        if cores:
            self.hardware["cores"] = cores
        self.calls = 0

    @property
    def models(self) -> list[str]:
        return sorted(self.params)

    def batches(self, model: str) -> list[int]:
        return [1, 2, 4, 8, 16, 32]

    def shares(self, model: str) -> list[float]:
        return self.profiled_shares

    def memory_mb(self, model: str, batch: int) -> float | None:
        p = self.params[model]
        return p[5] + p[6] * batch

    def _solo(self, model: str, batch: int, share: float) -> float:
        c0, c1 = self.params[model][:2]
        return ((c0 + c1 * batch) * (100.0 / share) ** 0.7 + 0.1) / self.speed

    def linear_terms(self, model: str, batch: int, share: float) -> LinearTerms:
        lat = self._solo(model, batch, share)
        p = self.params[model]
        pressure = p[2] * share / 100.0
        return LinearTerms(lat, 1000.0 * batch / lat, p[3], pressure, p[4])

    def linear_terms_many(self, models, batches, shares) -> LinearTerms:
        """Fields as arrays, one entry per point (the real model's vectorised form)."""
        rows = [self.linear_terms(m, b, s) for m, b, s in zip(models, batches, shares)]
        return LinearTerms(*(np.array(column, float) for column in zip(*rows)))

    def predict(self, members) -> list[Prediction]:
        self.calls += 1
        terms = [self.linear_terms(m.model, m.batch, m.share) for m in members]
        total_pressure = sum(t.pressure for t in terms)
        out = []
        for m, t in zip(members, terms):
            others = total_pressure - t.pressure
            lat = t.solo_latency_ms * (1 + t.sensitivity * others) + t.sched_ms * (len(members) - 1)
            out.append(Prediction(m.model, m.batch, m.share, lat, 1000.0 * m.batch / lat))
        return out

    def predict_sets(self, sets) -> list[list[Prediction]]:
        return [self.predict(s) for s in sets]
