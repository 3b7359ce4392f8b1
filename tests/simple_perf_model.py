"""A perf model simple enough to work provisioning cases out by hand (provisioning oracle tests).

Solo batch latency L(m, b, s) = (base_m + per_sample_m * b) * 100 / s ms, throughput 1000 b / L (so a batch
holds the server for exactly its latency). Interference as the packers linearise it: a member's latency is
L * (1 + sensitivity_m * sum of its partners' pressure), pressure = pressure_m * s / 100. ``curvature`` > 0
makes the full prediction differ from that linearisation: L * (1 + sens * P + curvature * P^2) (P: partners'
pressure), so linear packers place sets the full model rejects. ``sched_ms`` adds that much per co-runner (the
scheduling term of igniter's model).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

Prediction = namedtuple("Prediction", "model batch share latency_ms throughput_rps")
LinearTerms = namedtuple("LinearTerms", "solo_latency_ms solo_throughput_rps sensitivity pressure sched_ms")
Model = namedtuple("Model", "base per_sample pressure sensitivity memory_mb sched_ms", defaults=(0.0, 0.0, 100.0, 0.0))


class SimplePerfModel:
    def __init__(self, models: dict[str, Model], kind: str = "cpu", cores: int = 4, memory_mb: float = 16384.0,
                 batches=(1,), shares=None, curvature: float = 0.0):
        self.params = models
        self.hardware = {"kind": kind, "name": f"simple-{kind}", "source": "test", "memory_mb": memory_mb}
        if kind == "cpu":
            self.hardware["cores"] = cores
        self._batches = list(batches)
        self._shares = list(shares) if shares else [100.0 * c / cores for c in range(1, cores + 1)]
        self.curvature = curvature

    @property
    def models(self) -> list[str]:
        return sorted(self.params)

    def batches(self, model: str) -> list[int]:
        return self._batches

    def shares(self, model: str) -> list[float]:
        return self._shares

    def memory_mb(self, model: str, batch: int) -> float:
        return self.params[model].memory_mb

    def solo_ms(self, model: str, batch: int, share: float) -> float:
        p = self.params[model]
        return (p.base + p.per_sample * batch) * 100.0 / share

    def linear_terms(self, model: str, batch: int, share: float) -> LinearTerms:
        p = self.params[model]
        lat = self.solo_ms(model, batch, share)
        return LinearTerms(lat, 1000.0 * batch / lat, p.sensitivity, p.pressure * share / 100.0, p.sched_ms)

    def linear_terms_many(self, models, batches, shares) -> LinearTerms:
        rows = [self.linear_terms(m, b, s) for m, b, s in zip(models, batches, shares)]
        return LinearTerms(*(np.array(column, float) for column in zip(*rows)))

    def latencies(self, members) -> list[float]:
        """Full-model batch latency of every member of one co-located set (members: (model, batch, share))."""
        press = [self.params[m].pressure * s / 100.0 for m, _, s in members]
        out = []
        for (m, b, s), own in zip(members, press):
            partners = sum(press) - own
            out.append(self.solo_ms(m, b, s) * (1 + self.params[m].sensitivity * partners
                                                + self.curvature * partners ** 2)
                       + self.params[m].sched_ms * (len(members) - 1))
        return out

    def predict(self, members) -> list[Prediction]:
        lats = self.latencies([(m.model, m.batch, m.share) for m in members])
        return [Prediction(m.model, m.batch, m.share, lat, 1000.0 * m.batch / lat) for m, lat in zip(members, lats)]

    def predict_sets(self, sets) -> list[list[Prediction]]:
        return [self.predict(s) for s in sets]
