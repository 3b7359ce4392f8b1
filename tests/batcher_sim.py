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


def simulate_gpu(servers: list[dict]) -> list[np.ndarray]:
    """Several batchers on one emulated GPU, each as ``simulate``'s, whose batches slow each other while both are
    held (the replay's emulated backend, igniter/triton/emulated_backend.py): a batch of n advances at rate
    1 / table[n - 1][mask], mask = the partners holding a batch at that moment (bit i = partners[i]), so a partner
    that starts or stops mid-batch changes the rest of it. Each server: {"arrivals_ms", "batch", "delay_ms",
    "table", "partners" (indices into ``servers``)}. Returns each server's request latencies (ms)."""
    count = len(servers)
    arrivals = [np.asarray(s["arrivals_ms"], dtype=float) for s in servers]
    out = [np.empty(len(a)) for a in arrivals]
    head = [0] * count           # first request not yet dispatched
    batch: list[tuple[int, int] | None] = [None] * count   # (first request, size) of the batch held
    remaining = [0.0] * count    # the held batch's fraction of work still to do
    now = 0.0

    def latency(i: int) -> float:
        mask = sum(1 << bit for bit, p in enumerate(servers[i]["partners"]) if batch[p] is not None)
        return servers[i]["table"][batch[i][1] - 1][mask]

    def dispatch_at(i: int) -> float:
        a, h, b = arrivals[i], head[i], servers[i]["batch"]
        if h >= len(a):
            return np.inf
        bth = a[h + b - 1] if h + b - 1 < len(a) else np.inf
        return max(now, a[h], min(a[h] + servers[i]["delay_ms"], bth))

    while True:
        rates = [latency(i) if batch[i] is not None else 0.0 for i in range(count)]
        events = [now + remaining[i] * rates[i] if batch[i] is not None else dispatch_at(i) for i in range(count)]
        nxt = min(events)
        if not np.isfinite(nxt):
            return out
        for i in range(count):
            if batch[i] is not None and rates[i] > 0:
                remaining[i] -= (nxt - now) / rates[i]
        now = nxt
        for i in range(count):   # completions first: a partner that ends now no longer slows what starts now
            if batch[i] is not None and (remaining[i] * rates[i] <= 1e-9 or rates[i] <= 0):
                first, n = batch[i]
                out[i][first:first + n] = now - arrivals[i][first:first + n]
                batch[i] = None
        for i in range(count):
            if batch[i] is None and dispatch_at(i) <= now:
                a, h, b = arrivals[i], head[i], servers[i]["batch"]
                n = int(np.searchsorted(a[h:h + b], now, side="right"))
                batch[i], remaining[i], head[i] = (h, n), 1.0, h + n
