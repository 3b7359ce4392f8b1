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
    for workload in report["workloads"]:
        assert {"slo_ms", "predicted_p99_ms", "measured_p99_ms", "attainment"} <= set(workload)
        assert workload["requests"] > 0 and 0.0 <= workload["attainment"] <= 1.0
    assert (tmp_path / "demo" / "report.html").read_text().count("<circle") == 2
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
