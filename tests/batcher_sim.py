"""A discrete-event simulation of Triton's dynamic batcher on one model instance: the oracle for the queueing
model (independent of igniter/provisioning/queueing.py).

Semantics (Triton's dynamic batcher with one preferred batch size b = max_batch_size and max queue delay D): when
the instance is free and requests wait, it dispatches at once if b are waiting; otherwise it waits until b have
arrived or the oldest waiting request has waited D, whichever is first, then takes up to b. A batch of n holds
the instance for latency[n - 1].
"""

from __future__ import annotations

import numpy as np


def simulate(arrivals_ms: np.ndarray, batch: int, delay_ms: float, latency_ms: list[float]) -> np.ndarray:
    """Each request's latency (ms) from arrival to its batch's completion."""
    n_total = len(arrivals_ms)
    out = np.empty(n_total)
    i, free = 0, 0.0
    while i < n_total:
        bth = arrivals_ms[i + batch - 1] if i + batch - 1 < n_total else np.inf  # the b-th never comes
        start = max(free, arrivals_ms[i], min(arrivals_ms[i] + delay_ms, bth))
        j = i
        while j < n_total and j < i + batch and arrivals_ms[j] <= start:
            j += 1
        done = start + latency_ms[j - i - 1]
        out[i:j] = done - arrivals_ms[i:j]
        free, i = done, j
    return out


def p99(batch: int, rate_rps: float, delay_ms: float, latency_ms: list[float], requests: int = 100_000,
        seed: int = 0) -> float:
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1000.0 / rate_rps, requests))
    return float(np.percentile(simulate(arrivals, batch, delay_ms, latency_ms)[requests // 50:], 99))
