"""The README's main command and the detached CLI deployment flow, for real (real tritonserver processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from igniter.deployment.state import load_state
from igniter.triton.server import pid_alive
from tests.plan_factory import make_plan

pytestmark = pytest.mark.integration


def _igniter(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "igniter", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    result = _igniter("demo", "--duration", "3", "--workdir", str(tmp_path / "demo"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert {w["name"] for w in report["workloads"]} == {"vision", "ranking"}
    # what the demo claims: every request answered, the plan's p99 within each SLO, and the SLO met for far more
    # requests than a broken plan manages (replayed at 4x the planned rate the demo measured 0.0 with 661
    # failures). 0.9, not the 99 % the benchmark reports: the replay is short and shares the cores with CI.
    for workload in report["workloads"]:
        assert workload["requests"] > 0 and workload["failed"] == 0, workload
        assert workload["predicted_p99_ms"] <= workload["slo_ms"], workload
        assert workload["attainment"] >= 0.9, workload
    assert report["attainment"] >= 0.9
    assert (tmp_path / "demo" / "report.html").read_text().count('id="point-') == 2
    assert not load_state(tmp_path / "demo" / "state.json").servers, "the demo stops what it started"


def test_cli_apply_outlives_the_command_then_down_stops_it(demo_repo, tmp_path):
    plan = make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    state = tmp_path / "state" / "state.json"
    try:
        applied = _igniter("apply", str(plan), "--state", str(state), "--json")
        assert applied.returncode == 0, applied.stderr[-2000:]
        pid = load_state(state).servers["a"].pid
        time.sleep(0.5)
        assert pid_alive(pid), "an applied server keeps serving after `igniter apply` exits"
        status = _igniter("status", "--state", str(state), "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["healthy"]
        down = _igniter("down", "--state", str(state), "--json")
        assert down.returncode == 0 and json.loads(down.stdout)["stopped"] == ["a"]
        assert not pid_alive(pid)
    finally:
        for server in load_state(state).servers.values():
            if server.pid and pid_alive(server.pid):
                os.killpg(server.pid, 9)


def test_demo_attainment_counts_failed_requests_as_misses_hand_worked():
    # attainment = requests answered within the SLO / requests sent, over every replica of a workload:
    # replica 0 answers 3 of 4 (10, 20, 30 ms; one failed), replica 1 answers 2 of 2 (5, 40 ms); SLO 25 ms
    # -> within 10, 20, 5 = 3 of 6 sent = 0.5
    import numpy as np

    from igniter.demo import summarise
    from igniter.profiling.loadgen import LoadResult

    from igniter.provisioning.plan import ServerPlan

    def entry(replica, predicted_p99_ms):
        return ServerPlan(name=f"gpu0-w-r{replica}", share=50.0, model="m", workload="w", replica=replica, replicas=2,
                          batch=1, max_queue_delay_us=0, rate=50.0, slo_ms=25.0,
                          predicted_latency_ms=5.0, predicted_p99_ms=predicted_p99_ms, predicted_throughput_rps=200.0)

    runs = [(entry(0, 12.0), LoadResult(np.array([10.0, 20.0, 30.0]), 4, 3, 1, 1.0, 3.0)),
            (entry(1, 14.0), LoadResult(np.array([5.0, 40.0]), 2, 2, 0, 1.0, 2.0))]
    [row] = summarise({"w": runs})
    assert (row["requests"], row["failed"], row["replicas"], row["rate"]) == (6, 1, 2, 100.0)
    assert row["attainment"] == 0.5 and row["predicted_p99_ms"] == 14.0
    assert row["measured_p99_ms"] == pytest.approx(39.6)   # rank 0.99 x 4 = 3.96: 30 + 0.96 x (40 - 30)


def test_p99_interval_covers_the_true_p99_about_95_percent_of_the_time():
    # oracle: the exact p99 of a uniform(0, 1) is 0.99; over 2000 seeded samples of 500 the distribution-free
    # interval must cover it in about 95 % of them (at least 95 % by construction, a little more: ranks are whole)
    import numpy as np

    from igniter.replay.breakdown import quantile_interval

    rng = np.random.default_rng(11)
    covered = [lo <= 0.99 <= hi for lo, hi in (quantile_interval(rng.uniform(size=500)) for _ in range(2000))]
    assert 0.94 <= sum(covered) / len(covered) <= 0.985
    assert all(np.isnan(quantile_interval(rng.uniform(size=50))))   # 50 samples cannot bound a p99 from above


def test_where_time_went_hand_worked():
    # one workload on two replicas: replica 0 served 100 requests with 200 ms of queue and 300 ms of compute in
    # all, replica 1 served 50 with 100 ms queue and 200 ms compute -> 300 ms / 150 = 2 ms queue, 500 / 150 ms
    # compute. Over 10 s of wall time the servers spent 6 CPU s (0.6 cores), the front door 2 s, the load generator
    # 3 s, and the host was busy 15 CPU s in all: 4 s (0.4 cores) went to something else.
    from igniter.demo import where_time_went
    from igniter.replay.breakdown import ServerCounters

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
