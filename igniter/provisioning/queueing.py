"""p99 end-to-end latency of one Triton server at a given request rate (the "queueing" latency model).

One server runs one model instance with Triton's dynamic batcher, preferred batch b, max queue delay D.
Requests arrive as a Poisson stream of rate lam (req/s). For a request the end-to-end latency is

    transfer + formation + batch queueing wait + batch latency

- transfer  = input_bytes / link bandwidth (the request's own input; outputs are small).
- formation: the first request of a batch waits for b-1 more arrivals, mean (b-1)/lam. We set
  D = (b-1)/lam (the mean fill time) as the batcher's max_queue_delay, so no request waits longer than D for
  its batch to form; batches that do not fill in D leave smaller (faster), so D bounds this term.
- batch latency L: the perf model's predicted latency of a batch under co-location (service time).
- queueing wait of whole batches: batches arrive at lam/b with Erlang-b inter-arrival times (squared
  coefficient of variation ca2 = 1/b) and occupy the server for tau = b / throughput each (tau <= L when
  loading overlaps compute). Utilisation rho = lam / throughput. Kingman's G/G/1 approximation gives the mean
  wait Wq = (ca2 + cs2)/2 * rho/(1-rho) * tau (cs2: service variability, small: interference jitter); the
  waiting-time tail is taken as exponential with P(W > t) = rho * exp(-t * rho / Wq), so
  W99 = (Wq / rho) * ln(rho / 0.01) when rho > 0.01, else 0.
- capacity: rho <= RHO_MAX (headroom for bursts and prediction error); above it the latency is infinite.

Summing formation and queueing wait is conservative (a busy server fills batches while the previous one runs).

The "half-slo" model reproduces the published iGniter rule instead: p99 = 2 * L (formation assumed equal to the
batch latency) and throughput >= rate.

Everything is numpy-vectorised so candidate generation can evaluate whole (batch x share) grids at once.
"""

from __future__ import annotations

import numpy as np

RHO_MAX = 0.9          # utilisation headroom
SERVICE_CV2 = 0.05     # squared coefficient of variation of batch service time (interference jitter)
TAIL = 0.01            # p99
LATENCY_MODELS = ("queueing", "half-slo")


def transfer_ms(input_bytes: float, network_gbps: float) -> float:
    return float(input_bytes) * 8.0 / (network_gbps * 1e6) if input_bytes else 0.0


def max_queue_delay_us(batch, rate_rps):
    """Dynamic batcher max queue delay D = (b-1)/lam, in microseconds (integer)."""
    return np.floor(np.maximum(np.asarray(batch) - 1, 0) / np.asarray(rate_rps, dtype=float) * 1e6).astype(np.int64)


def p99_latency_ms(latency_ms, batch, rate_rps, occupancy_ratio=1.0, extra_ms=0.0, model: str = "queueing"):
    """p99 end-to-end latency (ms); inf where the server cannot carry the rate with headroom.

    occupancy_ratio = tau / L: how long a batch occupies the server relative to its latency
    (b / (throughput * L) from the solo profile; 1 when nothing overlaps).
    """
    L = np.asarray(latency_ms, dtype=float)
    b = np.asarray(batch, dtype=float)
    lam = np.asarray(rate_rps, dtype=float)
    tau = L * np.asarray(occupancy_ratio, dtype=float)
    rho = lam * tau / (b * 1000.0)
    if model == "half-slo":
        return np.where(rho <= 1.0, 2.0 * L + extra_ms, np.inf)
    formation = max_queue_delay_us(b, lam) / 1000.0
    safe_rho = np.clip(rho, 1e-12, 0.999999)
    wq = (1.0 / b + SERVICE_CV2) / 2.0 * safe_rho / (1.0 - safe_rho) * tau
    w99 = np.where(safe_rho > TAIL, wq / safe_rho * np.log(np.maximum(safe_rho / TAIL, 1.0)), 0.0)
    total = extra_ms + formation + w99 + L
    return np.where(rho <= RHO_MAX, total, np.inf)


def max_latency_ms(slo_ms, batch, rate_rps, occupancy_ratio=1.0, extra_ms=0.0, model: str = "queueing",
                   iterations: int = 30):
    """Largest batch latency L with p99_latency_ms(L) <= slo (vectorised bisection; p99 grows with L).

    Returns 0 where even an instant batch misses the SLO (formation + transfer alone exceed it).
    """
    slo = np.asarray(slo_ms, dtype=float)
    b = np.asarray(batch, dtype=float)
    lam = np.asarray(rate_rps, dtype=float)
    shape = np.broadcast(slo, b, lam, np.asarray(occupancy_ratio)).shape
    lo = np.zeros(shape)
    hi = np.broadcast_to(slo, shape).astype(float).copy()
    for _ in range(iterations):
        mid = (lo + hi) / 2.0
        ok = p99_latency_ms(mid, b, lam, occupancy_ratio, extra_ms, model) <= slo
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    feasible = p99_latency_ms(lo, b, lam, occupancy_ratio, extra_ms, model) <= slo
    return np.where(feasible & (lo > 0), lo, 0.0)
