"""The README's main command and the detached CLI deployment flow, for real (real tritonserver processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from igniter.demo import DemoOptions, run_demo
from igniter.deployment.state import load_state
from igniter.profiling.store import ProfileStore
from igniter.triton.server import pid_alive
from tests.plan_factory import make_plan

pytestmark = pytest.mark.integration


def _igniter(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "igniter", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_demo_claims(report: dict, workdir) -> None:
    """What the demo claims: every request answered, the plan's p99 within each SLO, and the SLO met for far more
    requests than a broken plan manages (replayed at 4x the planned rate the demo measured 0.0 with 661
    failures). 0.9, not the 99 % the benchmark reports: the replay is short and shares the cores with CI, whose
    stalls of a few tenths of a second (the load generator's send lag shows them) cost a 3 s replay 10 %."""
    context = json.dumps({k: report.get(k) for k in ("workloads", "cores_busy", "warnings", "machine", "profiles")},
                         default=str)
    assert {w["name"] for w in report["workloads"]} == {"vision", "ranking"}, context
    for workload in report["workloads"]:
        assert workload["requests"] > 0 and workload["failed"] == 0, context
        assert workload["predicted_p99_ms"] <= workload["slo_ms"], context
        assert workload["attainment"] >= 0.9, context
    assert report["attainment"] >= 0.9, context
    assert (workdir / "report.html").read_text().count('id="point-') == 2
    assert not load_state(workdir / "state.json").servers, "the demo stops what it started"


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    result = _igniter("demo", "--duration", "8", "--workdir", str(tmp_path / "demo"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_demo_claims(json.loads(result.stdout), tmp_path / "demo")


@pytest.mark.slow
def test_demo_on_a_host_unlike_the_shipped_profiles_profiles_and_calibrates_it_first(tmp_path):
    """The path every host but the shipped store's takes (on a 2-core Xeon it once refused every plan)."""
    elsewhere = tmp_path / "elsewhere"
    ProfileStore(elsewhere).write_hardware({"kind": "cpu", "name": "another machine", "cores": 2})
    workdir = tmp_path / "demo"
    report = run_demo(DemoOptions(workdir=workdir, profiles=elsewhere, duration_s=8.0))
    assert report["profiles"] == f"{workdir / 'profiles'} (measured now)"
    calibration = ProfileStore(workdir / "profiles").read_hardware()["path_overhead"]
    assert [row["rate_rps"] for row in calibration] == [20.0, 150.0, 300.0, 600.0]
    assert all(row["failed"] == 0 and 0 < row["baseline_p50_ms"] < row["p50_ms"] <= row["p99_ms"]
               for row in calibration), calibration
    assert report["path_overhead_ms"] > 0, "the plan's p99s include the path just measured"
    assert_demo_claims(report, workdir)


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
