"""The p99 latency model (provisioning/queueing.py) against independent oracles: a discrete-event simulation of
Triton's dynamic batcher written here, and the exact M/D/1 waiting-time distribution at batch 1.

Agreement, per regime, is stated in docs/testing.md. The band a test asserts is the same for every regime
(AGREEMENT); where the model is measured outside it the case is an xfail carrying the measured disagreement,
so a fix of the model turns it into an XPASS (strict) and the table is updated.
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest

from igniter.provisioning import queueing

OPTIMISTIC = 0.05     # the model may under-predict the simulated p99 by at most 5 % (it is a promise to the SLO)
CONSERVATIVE = 0.30   # ... and over-predict it by at most 30 % (more costs GPUs for nothing)
REQUESTS = 120_000    # simulated arrivals per case; the first 10 % are warm-up


def simulate_p99(rate_rps: float, batch: int, latency_ms: float, delay_us: int, occupancy: float = 1.0,
                 requests: int = REQUESTS, seed: int = 1) -> float:
    """p99 end-to-end latency of one model instance behind Triton's dynamic batcher, by simulation.

    Poisson arrivals. When the instance is free the batcher sends a batch as soon as `batch` requests wait
    (preferred size) or the oldest has waited `delay_us` (max queue delay), whichever is first, with every
    request waiting by then up to `batch`. A batch takes `latency_ms` from start to its responses and holds the
    instance for occupancy * latency_ms (the next batch may start earlier when loading overlaps compute).
    """
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1000.0 / rate_rps, requests))
    delay_ms = delay_us / 1000.0
    latencies = np.empty(requests)
    first, free_at = 0, 0.0
    while first < requests:
        full_at = arrivals[first + batch - 1] if first + batch - 1 < requests else math.inf
        start = max(free_at, min(full_at, arrivals[first] + delay_ms))
        size = min(batch, int(np.searchsorted(arrivals, start, side="right")) - first)
        latencies[first:first + size] = start + latency_ms - arrivals[first:first + size]
        free_at = start + occupancy * latency_ms
        first += size
    return float(np.percentile(latencies[requests // 10:], 99))


def md1_sojourn_quantile(rate_rps: float, service_ms: float, q: float) -> float:
    """q-quantile of the time in system of an M/D/1 queue: service + the exact waiting time, whose distribution
    is P(W <= t) = (1 - rho) * sum_{k=0}^{floor(t/T)} (lam (kT - t))^k / k! * exp(-lam (kT - t)) (Erlang).
    The alternating sum cancels badly in floats, so it is summed in 60-digit decimals."""
    getcontext().prec = 60
    lam, T = Decimal(rate_rps) / 1000, Decimal(service_ms)
    rho = lam * T

    def cdf(t: Decimal) -> Decimal:
        return (1 - rho) * sum((lam * (k * T - t)) ** k / math.factorial(k) * (-lam * (k * T - t)).exp()
                               for k in range(int(t // T) + 1))

    lo, hi = Decimal(0), T
    while cdf(hi) < q:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return float(hi) + service_ms


def model_p99(rate_rps: float, batch: int, latency_ms: float, occupancy: float = 1.0) -> float:
    return float(queueing.p99_latency_ms(latency_ms, batch, rate_rps, occupancy))


def rate_for(rho: float, batch: int, latency_ms: float, occupancy: float = 1.0) -> float:
    return rho * batch * 1000.0 / (latency_ms * occupancy)


# -- the oracles checked against each other first --------------------------------------------------------------

@pytest.mark.parametrize("rho", [0.3, 0.6, 0.8])
def test_simulation_reproduces_md1_at_batch_1(rho):
    rate = rate_for(rho, 1, 5.0)
    exact = md1_sojourn_quantile(rate, 5.0, 0.99)
    assert simulate_p99(rate, 1, 5.0, 0, requests=200_000) == pytest.approx(exact, rel=0.04)


def test_md1_closed_form_hand_checks():
    # rho -> 0: no waiting, the sojourn is the service time
    assert md1_sojourn_quantile(0.001, 5.0, 0.99) == pytest.approx(5.0, abs=1e-3)
    # P(W = 0) = 1 - rho: at rho = 0.5 the median wait is 0, so the median sojourn is the service time
    assert md1_sojourn_quantile(100.0, 5.0, 0.5) == pytest.approx(5.0, abs=1e-6)


def test_simulated_batcher_hand_worked():
    # one request every 10 ms exactly is not Poisson, but with batch 1 and 2 ms latency nothing ever waits:
    # the simulation at a tiny rate must give the bare latency; at batch 4 with a 30 ms delay and a tiny rate
    # every batch times out, so the first request of each waits the whole delay: p99 = delay + latency
    assert simulate_p99(0.01, 1, 2.0, 0, requests=2000) == pytest.approx(2.0)
    assert simulate_p99(0.01, 4, 2.0, 30_000, requests=2000) == pytest.approx(32.0)


# -- the model against the oracles ---------------------------------------------------------------------------

@pytest.mark.parametrize("rho", [0.3, 0.5, 0.7, 0.8, 0.9])
def test_model_against_exact_md1_at_batch_1(rho):
    rate = rate_for(rho, 1, 5.0)
    exact = md1_sojourn_quantile(rate, 5.0, 0.99)
    assert exact * (1 - OPTIMISTIC) <= model_p99(rate, 1, 5.0) <= exact * (1 + CONSERVATIVE)


def _regime(batch, rho, measured=None):
    """One (batch, utilisation) case; `measured` = the model/simulation ratio found outside the band."""
    marks = [pytest.mark.xfail(strict=True, reason=f"model/simulated p99 = {measured} (outside "
                                                   f"-{OPTIMISTIC:.0%}/+{CONSERVATIVE:.0%}; see docs/testing.md)")] \
        if measured else []
    return pytest.param(batch, rho, marks=marks, id=f"b{batch}-rho{rho}")


REGIMES = [
    _regime(1, 0.3), _regime(1, 0.6), _regime(1, 0.9), _regime(1, 0.95),
    _regime(2, 0.3), _regime(2, 0.6), _regime(2, 0.9), _regime(2, 0.95),
    _regime(4, 0.3), _regime(4, 0.6), _regime(4, 0.9), _regime(4, 0.95),
    _regime(8, 0.3), _regime(8, 0.6), _regime(8, 0.9), _regime(8, 0.95),
    _regime(16, 0.3), _regime(16, 0.6), _regime(16, 0.9), _regime(16, 0.95),
]   # every regime in the band since formation and server wait compose as a cube norm (issue #11)


@pytest.mark.parametrize("batch, rho", REGIMES)
def test_model_against_simulated_dynamic_batcher(batch, rho):
    latency = 6.0
    rate = rate_for(rho, batch, latency)
    delay = int(queueing.max_queue_delay_us(batch, rate))
    simulated = simulate_p99(rate, batch, latency, delay)
    predicted = model_p99(rate, batch, latency)
    assert simulated * (1 - OPTIMISTIC) <= predicted <= simulated * (1 + CONSERVATIVE), predicted / simulated


@pytest.mark.parametrize("occupancy", [0.5, 0.8])
def test_model_with_overlapping_batches_against_simulation(occupancy):
    # a batch holds the instance for occupancy x its latency: utilisation counts the hold, latency the whole
    batch, latency = 4, 6.0
    rate = rate_for(0.6, batch, latency, occupancy)
    simulated = simulate_p99(rate, batch, latency, int(queueing.max_queue_delay_us(batch, rate)), occupancy)
    predicted = model_p99(rate, batch, latency, occupancy)
    assert simulated * (1 - OPTIMISTIC) <= predicted <= simulated * (1 + CONSERVATIVE), predicted / simulated


# -- hand-worked values of the pieces ----------------------------------------------------------------------------

def test_max_queue_delay_is_mean_fill_time_in_whole_microseconds():
    # (b - 1) / lam: 3 / 400 s = 7500 us; 1 / 3 s = 333333.33 us -> 333333; batch 1 never waits
    assert queueing.max_queue_delay_us(4, 400.0).tolist() == 7500
    assert queueing.max_queue_delay_us(2, 3.0).tolist() == 333333
    assert queueing.max_queue_delay_us(1, 50.0).tolist() == 0


def test_capacity_headroom_and_half_slo_rule():
    # rho = lam * L / (1000 b): 190 req/s x 5 ms = 0.95 is carried, 0.96 is not (RHO_MAX 0.95)
    assert math.isfinite(model_p99(190.0, 1, 5.0))
    assert model_p99(192.0, 1, 5.0) == math.inf
    # the published iGniter rule: p99 = 2 L + transfer while rho <= 1, infinite beyond
    assert float(queueing.p99_latency_ms(5.0, 1, 199.0, 1.0, 0.5, "half-slo")) == pytest.approx(10.5)
    assert float(queueing.p99_latency_ms(5.0, 1, 201.0, 1.0, 0.0, "half-slo")) == math.inf


def test_transfer_adds_to_the_p99():
    assert queueing.transfer_ms(1_250_000, 10.0) == 1.0   # 10 Mbit over 10 Gbit/s, exactly
    assert queueing.transfer_ms(0, 10.0) == 0.0
    base = model_p99(100.0, 1, 5.0)
    assert float(queueing.p99_latency_ms(5.0, 1, 100.0, 1.0, 2.0)) == pytest.approx(base + 2.0)


def test_max_latency_inverts_the_p99():
    # the largest batch latency meeting the SLO: its p99 is at the SLO (to the bisection's precision), a
    # slightly longer batch misses it; an SLO below the formation delay alone gives 0
    allowed = float(queueing.max_latency_ms(30.0, 4, 400.0))
    assert 0 < allowed < 30.0
    assert model_p99(400.0, 4, allowed) <= 30.0 < model_p99(400.0, 4, allowed * 1.001)
    assert float(queueing.max_latency_ms(5.0, 4, 400.0)) == 0.0        # D = 7.5 ms > 5 ms


def test_max_latency_hand_worked_and_vectorised():
    # at 1 req/s and batch 1 fewer than 1 % of requests wait, so p99 = L: the allowed latency is the SLO itself,
    # below 1 ms too; iGniter's rule halves it (p99 = 2 L)
    assert float(queueing.max_latency_ms(0.8, 1, 1.0)) == pytest.approx(0.8, rel=1e-6)
    assert float(queueing.max_latency_ms(30.0, 1, 1.0, model="half-slo")) == pytest.approx(15.0, rel=1e-6)
    assert float(queueing.max_latency_ms(30.0, 1, 1.0, 1.0, 2.0, "half-slo")) == pytest.approx(14.0, rel=1e-6)
    # arrays in any argument broadcast; each entry is the scalar answer
    slo, batch, rate, occ = np.array([30.0, 40.0]), np.array([[1], [4]]), 200.0, np.array([1.0, 0.5])
    together = queueing.max_latency_ms(slo, batch, rate, occ)
    assert together.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            alone = float(queueing.max_latency_ms(slo[j], int(batch[i, 0]), rate, occ[j]))
            assert together[i, j] == pytest.approx(alone, rel=1e-9)


@pytest.mark.parametrize("position", range(4))
def test_max_latency_takes_its_shape_from_any_one_array_argument(position):
    scalars = [40.0, 4, 200.0, 1.0]                       # slo, batch, rate, occupancy
    values = [np.array([30.0, 40.0]), np.array([1, 4]), np.array([100.0, 200.0]), np.array([0.5, 1.0])][position]
    args = [values if i == position else v for i, v in enumerate(scalars)]
    together = queueing.max_latency_ms(*args)
    assert together.shape == (2,)
    for k in range(2):
        alone = [values[k] if i == position else v for i, v in enumerate(scalars)]
        assert together[k] == pytest.approx(float(queueing.max_latency_ms(*alone)), rel=1e-9)


def test_formation_and_batch_queueing_tail_hand_worked():
    # wait_p99 = (D^3 + W99^3)^(1/3): W99 = theta * ln(rho / 1 %), theta = Kingman's mean wait / rho =
    # (1/b + 0.02)/2 * tau / (1 - rho), W99 floored at 0 (fewer than 1 % of batches wait at all)
    def tail(D, b, rho, tau):
        theta = (1.0 / b + 0.02) / 2.0 * tau / (1.0 - rho)
        wait = max(0.0, theta * math.log(rho / 0.01))
        return (D ** 3 + wait ** 3) ** (1.0 / 3.0)

    for D, b, rho, tau in [(5.0, 2, 0.5, 6.0), (7.5, 4, 0.6, 6.0), (2.0, 4, 0.8, 0.5), (0.0, 4, 0.5, 6.0),
                           (0.0, 1, 0.7, 5.0), (1.0, 2, 0.002, 6.0)]:
        assert float(queueing.wait_p99_ms(D, b, rho, tau)) == pytest.approx(tail(D, b, rho, tau), rel=1e-9)
    # by hand: D = 0, b = 1, rho = 0.5, tau = 4: theta = 1.02/2 * 4 / 0.5 = 4.08, W99 = 4.08 ln 50 = 15.961
    assert float(queueing.wait_p99_ms(0.0, 1, 0.5, 4.0)) == pytest.approx(4.08 * math.log(50), rel=1e-12)
    # D = 3, no wait (rho = 0.005 < 1 %): the formation delay alone
    assert float(queueing.wait_p99_ms(3.0, 4, 0.005, 6.0)) == pytest.approx(3.0, rel=1e-12)


def test_p99_hand_worked_edges():
    # 4 req/s at batch 4 and 1 ms batches: rho = 0.001, so no batch queues at the p99 and every batch's first
    # request waits the whole delay D = 3/4 s: p99 = D + L = 751 ms
    assert model_p99(4.0, 4, 1.0) == pytest.approx(751.0)
    assert queueing.max_queue_delay_us(2, 1.0).tolist() == 1_000_000
    assert queueing.max_queue_delay_us(4, 400.0).dtype.kind == "i"          # Triton takes whole microseconds
    # the capacity cap sits exactly at rho = 0.95: 190.1 req/s x 5 ms = 0.9505 is over it
    assert model_p99(190.1, 1, 5.0) == math.inf
    # the default occupancy is 1 (a batch holds the instance for its whole latency)
    assert float(queueing.p99_latency_ms(5.0, 1, 100.0)) == model_p99(100.0, 1, 5.0)
    # the half-slo rule carries rho = 1 exactly (200 req/s x 5 ms), and its largest latency is capped by rho <= 1
    assert float(queueing.p99_latency_ms(5.0, 1, 200.0, 1.0, 0.0, "half-slo")) == pytest.approx(10.0)
    assert float(queueing.max_latency_ms(30.0, 1, 150.0, model="half-slo")) == pytest.approx(1000 / 150, rel=1e-6)


# -- the real request path's term (hardware.json path_overhead) ------------------------------------------------

def test_path_overhead_hand_worked():
    rows = [{"rate_rps": 300.0, "p50_ms": 4.0, "p99_ms": 18.0}, {"rate_rps": 20.0, "p50_ms": 3.0, "p99_ms": 8.0}]
    # between the calibrated rates the p99 is linear: at 160 req/s 8 + 140/280 x 10 = 13 ms, less the 3 ms the
    # profiles already hold (the p50 at the lowest rate, in either row order)
    assert queueing.path_overhead_ms(rows, 160.0) == pytest.approx(10.0)
    assert queueing.path_overhead_ms(rows, 300.0) == pytest.approx(15.0)
    assert queueing.path_overhead_ms(rows, 600.0) == pytest.approx(15.0)   # the nearest calibration outside
    assert queueing.path_overhead_ms(rows, 5.0) == pytest.approx(5.0)
    assert queueing.path_overhead_ms([], 160.0) == 0.0                     # uncalibrated hardware adds nothing


def test_path_overhead_subtracts_the_profilers_baseline_when_measured():
    # a calibration that measured the profiler's own path (direct, one outstanding request: 0.5 ms) subtracts that,
    # not the 3 ms p50 at its lowest rate (that one holds the front door's hop): at 160 req/s 13 - 0.5 ms
    rows = [{"rate_rps": 300.0, "p50_ms": 4.0, "p99_ms": 18.0, "baseline_p50_ms": 0.5},
            {"rate_rps": 20.0, "p50_ms": 3.0, "p99_ms": 8.0, "baseline_p50_ms": 0.5}]
    assert queueing.path_overhead_ms(rows, 160.0) == pytest.approx(12.5)
    assert queueing.path_overhead_ms(rows, 20.0) == pytest.approx(7.5)


@pytest.mark.parametrize("batch, rho", [(1, 0.4), (1, 0.8), (4, 0.5), (8, 0.8)])
def test_path_term_against_a_simulated_batcher_behind_a_random_path(batch, rho):
    # the truth simulated here: Triton's batcher over compute-only batches of 6 ms, then every request also
    # spends an independent path time (shifted exponential, p50 2 ms). The model is given what a profile at one
    # outstanding request measures: latency = compute + the path's median, the server occupied for the compute
    # alone (occupancy compute / latency), and the path calibration's p50 and p99. Adding the path's tail to the
    # server's is conservative (the p99 of a sum of independent parts is below the sum of their p99s), at most
    # 2 x CONSERVATIVE above the simulated p99 of the sum, never more than OPTIMISTIC below it.
    compute, scale, shift = 6.0, 1.5, 2.0 - 1.5 * math.log(2)
    rng = np.random.default_rng(7)
    path = shift + rng.exponential(scale, REQUESTS)
    calibration = [{"rate_rps": 1.0, "p50_ms": float(np.median(path)), "p99_ms": float(np.percentile(path, 99))}]
    rate = rate_for(rho, batch, compute)
    delay = int(queueing.max_queue_delay_us(batch, rate))
    arrivals = np.cumsum(np.random.default_rng(3).exponential(1000.0 / rate, REQUESTS))
    from tests.batcher_sim import simulate  # noqa: PLC0415
    truth = np.percentile((simulate(arrivals, batch, delay / 1000.0, [compute] * batch) + path)[REQUESTS // 10:], 99)
    profiled = compute + calibration[0]["p50_ms"]
    predicted = float(queueing.p99_latency_ms(profiled, batch, rate, compute / profiled,
                                              queueing.path_overhead_ms(calibration, rate)))
    assert truth * (1 - OPTIMISTIC) <= predicted <= truth * (1 + 2 * CONSERVATIVE), predicted / truth


# -- the path's CPU on the servers' cores (hardware.json path_overhead cpu_ms_per_request) -----------------------

def test_path_slowdown_hand_worked():
    rows = [{"rate_rps": 300.0, "p50_ms": 4.0, "p99_ms": 18.0, "cpu_ms_per_request": 2.0},
            {"rate_rps": 20.0, "p50_ms": 3.0, "p99_ms": 8.0, "cpu_ms_per_request": 4.0}]
    # at 300 req/s 2 ms of CPU each keep 0.6 cores busy: 0.3 of each of 2 cores, so a server runs at 0.7 of one
    assert queueing.path_slowdown(rows, 300.0, 2) == pytest.approx(1 / 0.7)
    # at 160 req/s the CPU per request is linear between the rows, 4 - 140/280 x 2 = 3 ms: 0.48 cores, 0.24 each
    assert queueing.path_slowdown(rows, 160.0, 2) == pytest.approx(1 / 0.76)
    assert queueing.path_slowdown(rows, 1000.0, 2) == math.inf          # 1.0 of each core: nothing left
    assert queueing.path_slowdown(rows, 300.0, None) == 1.0              # no core count: no term
    assert queueing.path_slowdown([{"rate_rps": 300.0, "p50_ms": 4.0, "p99_ms": 18.0}], 300.0, 2) == 1.0
    assert queueing.path_slowdown([], 300.0, 2) == 1.0
    # the schema lets a row say cpu_ms_per_request: null (not measured): it counts as absent, not as a crash
    assert queueing.path_slowdown([{"rate_rps": 300.0, "p50_ms": 4.0, "p99_ms": 18.0,
                                    "cpu_ms_per_request": None}], 300.0, 2) == 1.0


def test_slowdown_stretches_latency_and_occupancy_hand_worked():
    # L = 2 ms at a slowdown of 1.5 is a 3 ms batch of one: rho = 100/s x 3 ms = 0.3, no formation wait;
    # theta = (1 + 0.02) / 2 x 3 / 0.7 = 2.185714 ms; W99 = theta x ln(0.3 / 0.01) = 7.434049 ms; p99 = 3 + W99
    assert float(queueing.p99_latency_ms(2.0, 1, 100.0, slowdown=1.5)) == pytest.approx(10.434049, abs=1e-5)
    # the largest latency meeting a 10.434049 ms SLO at that slowdown is the 2 ms again
    assert float(queueing.max_latency_ms(10.434049, 1, 100.0, slowdown=1.5)) == pytest.approx(2.0, abs=1e-4)
