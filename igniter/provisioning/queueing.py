"""p99 end-to-end latency of one Triton server at a given request rate (the "queueing" latency model).

One server runs one model instance with Triton's dynamic batcher, preferred batch b, max queue delay D.
Requests arrive as a Poisson stream of rate lam (req/s). A request's end-to-end latency is

    transfer + F (waiting for its batch to form) + W (its batch waiting for the server) + L (batch latency)

- transfer = input_bytes / link bandwidth (the request's own input; outputs are small).
- path: what the real request path (client, front door, gRPC, Triton's frontend, the backend's IPC) adds at the
  host's request rate beyond what the profiles' latencies hold (they were measured at one outstanding request):
  hardware.json ``path_overhead``, calibrated once per host with a zero-latency model through the front door
  (igniter/replay/calibrate.py): its p99 at the rate minus its p50 as the profiler saw it (direct, one outstanding
  request: the rows' ``baseline_p50_ms``; older calibrations without it: the p50 at the lowest rate). Added to the
  p99 like the transfer (the p99 of a sum of independent parts is at most about the sum of their p99s). Hosts
  without a calibration (imported GPU profiles) add nothing.
- slowdown: on a CPU host the path's own processes (the front door, the clients on the host, gRPC) take CPU on the
  same cores the servers are pinned to, at the host's request rate: calibrated as CPU ms per request
  (hardware.json ``path_overhead`` rows' ``cpu_ms_per_request``, the client's and front door's CPU per probe
  request), they keep u = rate * cpu / (1000 * cores) of every core busy. A server then runs at 1 - u of its core
  (their bursts are short and run first, a preemptive-priority class), so its batch latency and occupancy
  stretch by 1 / (1 - u); u >= RHO_MAX leaves no capacity. No calibration, no slowdown.
- F, batch formation. The batcher's max queue delay is set to the mean fill time D = (b-1)/lam. With arrivals
  about 1/lam apart the j-th request of a batch waits for the b-j later ones, so over requests F is spread
  evenly over {0, h, 2h, ..., (b-1)h = D}, h = D/(b-1): 1/b of the requests (the first of each batch) wait D.
  Batches that do not fill within D leave early, so D bounds F.
- W, queueing of whole batches: batches become ready at rate lam/b with Erlang-b gaps (squared coefficient of
  variation ca2 = 1/b) and occupy the server for tau = b / throughput each (tau <= L when loading overlaps
  compute). Utilisation rho = lam * tau / b. Kingman's G/G/1 mean wait Wq = (ca2 + cs2)/2 * rho/(1-rho) * tau
  (cs2: service variability, small: interference jitter), with the usual exponential tail
  P(W > x) = rho * exp(-x / theta), theta = Wq / rho (a batch waits at all with probability rho).
- p99 of F + W. F and W are not independent: Triton's batcher forms the next batch while the server runs the
  previous one (the max queue delay runs from the oldest request's arrival, and a batch that filled while the
  server was busy starts the moment it frees), so waiting for the batch and waiting for the server overlap. The
  p99 of the pre-service time lies between max(D, W99) (full overlap) and D + W99 (none), with
  W99 = theta * ln(rho / 0.01) the p99 of W alone. We take the cube norm (D^3 + W99^3)^(1/3): against a
  discrete-event simulation of the batcher (tests/test_queueing_truth.py) over batch 1-32 and utilisation
  0.2-0.95 at the planner's D its median error is 5 %, it is never optimistic at utilisation <= 0.8 and at most
  14 % optimistic above; measured on Triton's real batcher with emulated batch times, BENCHMARKS.md ("p99
  truth"). The earlier form, the tail of D-spread formation plus W as if independent, was up to 2.3x pessimistic
  for large batches at high load (the batches are full on arrival there: no formation wait at all).
- L: the perf model's predicted batch latency under co-location, taken as deterministic.
- capacity: rho <= RHO_MAX; the tail formula already grows without bound as rho -> 1, the cap only keeps
  headroom for prediction error. Above it the latency is infinite.

The "half-slo" model reproduces the published iGniter rule instead: p99 = 2 * L (formation assumed equal to the
batch latency) and throughput >= rate (rho <= 1: no queueing headroom at all, so it is optimistic at high load).

Everything is numpy-vectorised so candidate generation can evaluate whole (batch x share) grids at once.
"""

from __future__ import annotations

import numpy as np

RHO_MAX = 0.95         # utilisation headroom for prediction error
SERVICE_CV2 = 0.02     # squared coefficient of variation of batch service time (interference jitter)
TAIL = 0.01            # p99
LATENCY_MODELS = ("queueing", "half-slo")


def transfer_ms(input_bytes: float, network_gbps: float) -> float:
    return float(input_bytes) * 8.0 / (network_gbps * 1e6) if input_bytes else 0.0


def path_overhead_ms(calibration: list[dict], rate_rps: float) -> float:
    """The path term (module docstring) at ``rate_rps`` requests/s on the host: the calibrated p99, linear between
    calibrated rates and the nearest calibration outside them, minus the profiler's baseline (``baseline_p50_ms``,
    else the p50 at the lowest rate); 0 without one."""
    rows = sorted(calibration, key=lambda r: r["rate_rps"])
    if not rows:
        return 0.0
    p99 = float(np.interp(rate_rps, [r["rate_rps"] for r in rows], [r["p99_ms"] for r in rows]))
    baseline = rows[0].get("baseline_p50_ms")
    return max(p99 - (rows[0]["p50_ms"] if baseline is None else baseline), 0.0)


def path_slowdown(calibration: list[dict], rate_rps: float, cores: int | None) -> float:
    """The slowdown factor 1 / (1 - u) (module docstring) at ``rate_rps`` requests/s on a host of ``cores``; 1
    without a CPU calibration (rows lacking ``cpu_ms_per_request``, or no core count), inf at u >= RHO_MAX."""
    rows = sorted((r for r in calibration if r.get("cpu_ms_per_request") is not None), key=lambda r: r["rate_rps"])
    if not rows or not cores:
        return 1.0
    cpu_ms = float(np.interp(rate_rps, [r["rate_rps"] for r in rows], [r["cpu_ms_per_request"] for r in rows]))
    busy = rate_rps * cpu_ms / (1000.0 * cores)
    return 1.0 / (1.0 - busy) if busy < RHO_MAX else float("inf")


def max_queue_delay_us(batch, rate_rps):
    """Dynamic batcher max queue delay D = (b-1)/lam, in microseconds (integer)."""
    return np.floor(np.maximum(np.asarray(batch) - 1, 0) / np.asarray(rate_rps, dtype=float) * 1e6).astype(np.int64)


def wait_p99_ms(formation_ms, batch, rho, tau_ms):
    """p99 of formation + batch queueing wait (module docstring), vectorised."""
    D = np.asarray(formation_ms, dtype=float)
    b = np.asarray(batch, dtype=float)
    rho = np.clip(np.asarray(rho, dtype=float), 1e-12, 0.999999)
    theta = (1.0 / b + SERVICE_CV2) / 2.0 * np.asarray(tau_ms, dtype=float) / (1.0 - rho)
    wait = np.maximum(theta * np.log(rho / TAIL), 0.0)
    return np.cbrt(D ** 3 + wait ** 3)


def p99_latency_ms(latency_ms, batch, rate_rps, occupancy_ratio=1.0, extra_ms=0.0, model: str = "queueing",
                   slowdown=1.0):
    """p99 end-to-end latency (ms); inf where the server cannot carry the rate with headroom.

    occupancy_ratio = tau / L: how long a batch occupies the server relative to its latency
    (b / (throughput * L) from the solo profile; 1 when nothing overlaps). slowdown: the host's path_slowdown,
    stretching the batch latency (and so the occupancy) the server sees.
    """
    L = np.asarray(latency_ms, dtype=float) * np.asarray(slowdown, dtype=float)
    b = np.asarray(batch, dtype=float)
    lam = np.asarray(rate_rps, dtype=float)
    tau = L * np.asarray(occupancy_ratio, dtype=float)
    rho = lam * tau / (b * 1000.0)
    if model == "half-slo":
        return np.where(rho <= 1.0, 2.0 * L + extra_ms, np.inf)
    formation = max_queue_delay_us(b, lam) / 1000.0
    total = extra_ms + wait_p99_ms(formation, b, rho, tau) + L
    return np.where(rho <= RHO_MAX, total, np.inf)


def max_latency_ms(slo_ms, batch, rate_rps, occupancy_ratio=1.0, extra_ms=0.0, model: str = "queueing",
                   iterations: int = 30, slowdown=1.0):
    """Largest batch latency L (before the slowdown) with p99_latency_ms(L) <= slo (vectorised bisection; p99
    grows with L).

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
        ok = p99_latency_ms(mid, b, lam, occupancy_ratio, extra_ms, model, slowdown) <= slo
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    feasible = p99_latency_ms(lo, b, lam, occupancy_ratio, extra_ms, model, slowdown) <= slo
    return np.where(feasible & (lo > 0), lo, 0.0)
