"""Load generator semantics with a fake async infer at the edge (no server): schedule, coordinated omission,
warm-up, bounds, failures, perf_analyzer CSV."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from igniter.errors import UserError
from igniter.profiling import loadgen
from igniter.profiling.loadgen import LoadSpec, arrival_offsets, closed_loop, open_loop


def fast():
    async def infer():
        await asyncio.sleep(0.001)

    return infer


def serial_server(service_s: float):
    """One request at a time, ``service_s`` each: a server that queues."""
    lock = asyncio.Lock()

    async def infer():
        async with lock:
            await asyncio.sleep(service_s)

    return infer


def test_arrival_offsets_rate_and_determinism():
    const = arrival_offsets(100, 2.0, "constant")
    assert len(const) == 200 and np.allclose(np.diff(const), 0.01)
    pois = arrival_offsets(100, 20.0, "poisson", seed=3)
    assert abs(len(pois) - 2000) < 200
    assert np.array_equal(pois, arrival_offsets(100, 20.0, "poisson", seed=3))
    assert not np.array_equal(pois, arrival_offsets(100, 20.0, "poisson", seed=4))
    assert len(arrival_offsets(100, 20.0, max_requests=7)) == 7
    with pytest.raises(UserError):
        arrival_offsets(0, 1.0)
    with pytest.raises(UserError):
        arrival_offsets(1, 1.0, "bursty")


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_open_loop_sends_rate_times_duration(arrival):
    res = asyncio.run(open_loop(fast(), 200, 1.0, arrival=arrival, seed=1, batch=4))
    assert res.failed == 0 and res.ok == res.sent
    assert 150 <= res.sent <= 250  # ~ r * T
    assert res.throughput_rps == pytest.approx(res.achieved_rps * 4)
    assert res.mean_ms < 50


def test_open_loop_latency_from_schedule_includes_queueing():
    """Offered 100/s to a server that does 50/s: latency from the scheduled time grows with the queue, while the
    service time is 20 ms. A closed loop on the same server only ever sees ~20 ms."""
    res = asyncio.run(open_loop(serial_server(0.02), 100, 0.6, arrival="constant", drain_s=10))
    assert res.ok == res.sent and res.sent >= 55
    assert res.percentile(99) > 200  # the last requests waited behind ~30 others
    assert res.latencies_ms.max() > 5 * 20
    closed = asyncio.run(closed_loop(serial_server(0.02), 1, 0.4))
    assert 15 < closed.percentile(50) < 40


def test_warmup_excluded_and_bounds():
    t0 = time.monotonic()
    res = asyncio.run(open_loop(fast(), 100, 0.5, arrival="constant", warmup_s=0.5))
    assert 40 <= res.sent <= 60  # only the measured half second
    assert res.duration_s == pytest.approx(0.5)
    assert time.monotonic() - t0 < 3
    capped = asyncio.run(open_loop(fast(), 1000, 5.0, arrival="constant", max_requests=20))
    assert capped.sent == 20


def test_hung_requests_are_cancelled_and_counted():
    async def hang():
        await asyncio.sleep(3600)

    t0 = time.monotonic()
    res = asyncio.run(open_loop(hang, 20, 0.3, arrival="constant", drain_s=0.2))
    assert res.ok == 0 and res.failed == res.sent > 0
    assert "cancelled" in res.errors[0]
    assert time.monotonic() - t0 < 2


def test_failures_counted():
    calls = [0]

    async def flaky():
        calls[0] += 1
        if calls[0] % 3 == 0:
            raise RuntimeError("boom")

    res = asyncio.run(open_loop(flaky, 300, 0.5, arrival="constant"))
    assert res.failed == pytest.approx(res.sent / 3, abs=2)
    assert res.errors == ["RuntimeError: boom"]
    assert len(res.latencies_ms) == res.ok


def test_closed_loop_concurrency():
    async def service():
        await asyncio.sleep(0.01)

    res = asyncio.run(closed_loop(service, 2, 0.5, warmup_s=0.1))
    assert 70 <= res.ok <= 105  # 2 workers x 0.5 s / 10 ms
    assert 9 < res.percentile(50) < 20
    with pytest.raises(UserError):
        asyncio.run(closed_loop(service, 0, 0.1))


def test_perf_analyzer_csv_and_command(tmp_path):
    text = ("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
            "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
            "Avg latency,request/response,response wait\n"
            "1,400.5,10,100,20,5,900,5,3,1000,1500,1700,2500,1100,0,0\n")
    spec = LoadSpec("127.0.0.1:8001", "convnet", batch=4)
    res = loadgen.parse_perf_analyzer_csv(text, spec, 2.0)
    assert res.throughput_rps == pytest.approx(400.5)
    assert res.percentile(99) == pytest.approx(2.5) and res.mean_ms == pytest.approx(1.1)
    cmd = loadgen.perf_analyzer_command(tmp_path / "pa", spec, 2.0, tmp_path / "x.csv")
    assert cmd[cmd.index("-b") + 1] == "4" and "--concurrency-range" in cmd and "-f" in cmd
    open_spec = LoadSpec("h:1", "m", 1, "open", rate_rps=50)
    assert "--request-rate-range" in loadgen.perf_analyzer_command(tmp_path / "pa", open_spec, 1.0, tmp_path / "y")
    with pytest.raises(UserError):
        loadgen.parse_perf_analyzer_csv("", spec, 1.0)


def test_no_full_collection_runs_while_load_runs_and_the_collector_comes_back_after():
    # two generators in one loop, one ending earlier: while either runs generation 2 never triggers (its threshold
    # out of reach) and what was alive at the start is frozen out of the collector; the thresholds and an empty
    # permanent generation come back only when the last one ends
    import gc

    before = gc.get_threshold()
    seen: list[tuple] = []

    async def infer():
        seen.append((gc.get_threshold()[2], gc.get_freeze_count() > 0))

    async def both():
        short = loadgen.open_loop(infer, 200.0, 0.05, arrival="constant", drain_s=1.0)
        long = loadgen.open_loop(infer, 200.0, 0.2, arrival="constant", drain_s=1.0)
        return await asyncio.gather(short, long)

    results = asyncio.run(both())
    assert all(r.ok > 0 for r in results) and seen
    assert all(threshold >= 1 << 30 and frozen for threshold, frozen in seen)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
