"""The demo's breakdown of where a request's time and the host's CPU went (igniter/replay/breakdown.py,
igniter.demo.where_time_went), against independent oracles: a simulation and hand-worked readings."""

from __future__ import annotations

import numpy as np
import pytest

from igniter.demo import where_time_went
from igniter.replay.breakdown import ServerCounters, group_cpu_s, host_busy_s, quantile_interval


def test_p99_interval_covers_the_true_p99_about_95_percent_of_the_time():
    # oracle: the exact p99 of a uniform(0, 1) is 0.99; over 2000 seeded samples of 500 the distribution-free
    # interval must cover it in about 95 % of them (at least 95 % by construction, a little more: ranks are whole)
    rng = np.random.default_rng(11)
    covered = [lo <= 0.99 <= hi for lo, hi in (quantile_interval(rng.uniform(size=500)) for _ in range(2000))]
    assert 0.94 <= sum(covered) / len(covered) <= 0.985
    assert all(np.isnan(quantile_interval(rng.uniform(size=50))))   # 50 samples cannot bound a p99 from above


def test_where_time_went_hand_worked():
    # one workload on two replicas: replica 0 served 100 requests with 200 ms of queue and 300 ms of compute in
    # all, replica 1 served 50 with 100 ms queue and 200 ms compute -> 300 ms / 150 = 2 ms queue, 500 / 150 ms
    # compute. Over 10 s of wall time the servers spent 6 CPU s (0.6 cores), the front door 2 s, the load generator
    # 3 s, and the host was busy 15 CPU s in all: 4 s (0.4 cores) went to something else.
    def reading(counters, servers, door, client, busy, wall):
        return {"counters": {"w": counters}, "host_s": (busy, wall),
                "cpu_s": {"servers": servers, "front_door": door, "load_generator": client}}

    before = reading([ServerCounters(10, 0, 0), ServerCounters(0, 5_000_000, 0)], 1.0, 1.0, 1.0, 5.0, 100.0)
    after = reading([ServerCounters(110, 200_000_000, 300_000_000), ServerCounters(50, 105_000_000, 200_000_000)],
                    7.0, 3.0, 4.0, 20.0, 110.0)
    split = where_time_went(before, after)
    assert split["workloads"]["w"]["server_queue_ms"] == pytest.approx(2.0)
    assert split["workloads"]["w"]["server_compute_ms"] == pytest.approx(500 / 150)
    assert split["cores_busy"] == pytest.approx({"servers": 0.6, "front_door": 0.2, "load_generator": 0.3,
                                                 "other": 0.4})


def test_cpu_readers_parse_proc_hand_worked(tmp_path):
    # a fake /proc: process group 40 has two members (utime + stime 30 + 20 and 5 + 5 ticks), another group one;
    # a command name with spaces and ")" must not shift the fields. /proc/stat: 2 cores, 1000 ticks in all of
    # which idle 600 and iowait 100 -> busy 300 ticks; per core 500 ticks
    tick = __import__("os").sysconf("SC_CLK_TCK")

    def stat(pid, name, pgid, utime, stime):
        fields = ["S", "1", str(pgid), str(pgid)] + ["0"] * 7 + [str(utime), str(stime)] + ["0"] * 10
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({name}) " + " ".join(fields) + "\n")

    stat(40, "tritonserver", 40, 30, 20)
    stat(41, "triton_python_backend_stub ) x", 40, 5, 5)
    stat(50, "caddy", 50, 100, 100)
    (tmp_path / "stat").write_text("cpu  200 0 100 600 100 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0\n"
                                   "intr 0\n")
    assert group_cpu_s(40, tmp_path) == pytest.approx(60 / tick)
    assert group_cpu_s(None, tmp_path) == 0.0
    assert host_busy_s(tmp_path) == pytest.approx((300 / tick, 500 / tick))
