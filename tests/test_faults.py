"""Deployment under faults, with REAL tritonservers and real signals: one writer, no orphan ever.

Every case ends by counting the live tritonservers that carry this deployment's owner tag (read from /proc, an
oracle independent of the state file) and comparing them with what the state records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from igniter.deployment.chaos import PoissonLoad
from igniter.deployment.frontdoor import front_doors
from igniter.deployment.lock import writer_lock
from igniter.deployment.orphans import tagged_servers
from igniter.deployment.state import load_state
from igniter.triton.server import deployment_owner, stop_process_group
from tests.plan_factory import make_plan

pytestmark = pytest.mark.integration
WAIT_S = 120  # generous: the cores are shared; no assertion depends on how long anything takes


def igniter(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "igniter", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(predicate, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture()
def state_dir(tmp_path):
    state = tmp_path / "state"
    yield state
    for pid in running(state):  # whatever a failing test left behind
        stop_process_group(pid, timeout_s=10)


@pytest.fixture()
def two_servers(demo_repo, tmp_path) -> Path:
    return make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4, "cpus": [0]},
                                                    {"name": "b", "model": "mlp", "batch": 4, "cpus": [1]}])


def recorded_pids(state_dir: Path) -> set[int]:
    """The servers' and the front door's pids, as the state records them."""
    state = load_state(state_dir / "state.json")
    return {s.pid for s in state.servers.values()} | ({state.frontdoor.pid} if state.frontdoor else set())


def running(state_dir: Path) -> set[int]:
    """Live tritonservers and front doors carrying this deployment's tag (from /proc)."""
    owner = deployment_owner(state_dir)
    return set(tagged_servers(owner)) | set(front_doors(owner))


def down(state_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "igniter", "down", "--state", str(state_dir / "state.json")],
                          capture_output=True, text=True, timeout=WAIT_S)


def test_a_second_writer_waits_then_names_the_holder(state_dir, two_servers):
    with writer_lock(state_dir):
        proc = igniter("apply", str(two_servers), "--state", str(state_dir / "state.json"), "--lock-timeout", "0.5")
        out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1].startswith("error: another igniter is changing this deployment")
    assert f"pid {os.getpid()}" in err and "To fix:" in err
    assert running(state_dir) == set() and not (state_dir / "state.json").exists()


def test_two_applies_at_once_run_four_servers_never(state_dir, two_servers):
    first, second = (igniter("apply", str(two_servers), "--state", str(state_dir / "state.json"),
                             "--lock-timeout", str(WAIT_S), "--json") for _ in range(2))
    reports = [json.loads(p.communicate(timeout=2 * WAIT_S)[0]) for p in (first, second)]
    assert first.returncode == second.returncode == 0
    actions = sorted(tuple(sorted(a["action"] for a in r["actions"])) for r in reports)
    assert actions == [("keep", "keep"), ("start", "start")], "the second writer saw the first one's servers"
    assert running(state_dir) == recorded_pids(state_dir) and len(running(state_dir)) == 3
    assert down(state_dir).returncode == 0
    assert running(state_dir) == set()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_halfway_rolls_back_and_leaves_nothing(state_dir, two_servers, sig):
    proc = igniter("apply", str(two_servers), "--state", str(state_dir / "state.json"))
    wait_for(lambda: running(state_dir), "the apply to start its first server")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT_S)
    if proc.returncode == 0:  # the signal came after the commit (on busy cores this test can see the server late)
        assert running(state_dir) == recorded_pids(state_dir) and len(running(state_dir)) == 3, \
            "completed, not rolled back: the new plan serves and the state records it"
        assert down(state_dir).returncode == 0 and running(state_dir) == set()
        return  # tests/test_signal_points.py puts the signal at every boundary, deterministically
    assert proc.returncode == 128 + sig, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: apply interrupted by {signal.Signals(sig).name} and rolled back"), last
    assert running(state_dir) == set(), "the servers this apply started are stopped"
    state = load_state(state_dir / "state.json")
    assert state.servers == {} and state.starting == {}, "the state is as before (empty)"
    assert not any((state_dir / "servers").glob("a-*")) and not any((state_dir / "servers").glob("b-*"))


def test_kill_9_of_igniter_mid_apply_then_down_leaves_no_orphan(state_dir, two_servers):
    proc = igniter("apply", str(two_servers), "--state", str(state_dir / "state.json"))
    orphans = wait_for(lambda: running(state_dir), "the apply to start a server")
    proc.kill()
    proc.wait(timeout=WAIT_S)
    assert running(state_dir) >= orphans, "kill -9 leaves the servers it started (the tag still finds them)"
    assert not (recorded_pids(state_dir) & orphans), "the state never recorded their pids"
    assert load_state(state_dir / "state.json").starting, "...but it recorded them as starting, before they ran"
    shown = subprocess.run([sys.executable, "-m", "igniter", "status", "--state", str(state_dir / "state.json"), "--json"],
                           capture_output=True, text=True, timeout=WAIT_S)
    assert shown.returncode == 1 and json.loads(shown.stdout)["starting"], "status says an apply died mid-way"
    result = down(state_dir)
    assert result.returncode == 0, result.stderr
    assert running(state_dir) == set()
    assert load_state(state_dir / "state.json").servers == {}


def test_an_apply_after_a_killed_apply_stops_its_orphans(state_dir, two_servers):
    proc = igniter("apply", str(two_servers), "--state", str(state_dir / "state.json"))
    wait_for(lambda: running(state_dir), "the apply to start a server")
    proc.kill()
    proc.wait(timeout=WAIT_S)
    again = igniter("apply", str(two_servers), "--state", str(state_dir / "state.json"))
    _, err = again.communicate(timeout=2 * WAIT_S)
    assert again.returncode == 0, err
    assert running(state_dir) == recorded_pids(state_dir) and len(running(state_dir)) == 3
    assert down(state_dir).returncode == 0 and running(state_dir) == set()


@pytest.mark.parametrize("command", [["down"], ["apply", "PLAN"]])
def test_an_unreadable_state_is_one_line_and_never_overwritten(state_dir, two_servers, command):
    state_dir.mkdir()
    (state_dir / "state.json").write_text('{"format": "igniter-state", "version": 2, "servers": {')
    before = (state_dir / "state.json").read_bytes()
    args = [str(two_servers) if a == "PLAN" else a for a in command]
    result = subprocess.run([sys.executable, "-m", "igniter", *args, "--state", str(state_dir / "state.json")],
                            capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "To fix:" in lines[0]
    assert (state_dir / "state.json").read_bytes() == before
    assert running(state_dir) == set()


def test_a_sigterm_halfway_under_load_fails_no_request(state_dir, two_servers, demo_repo, tmp_path):
    applied = subprocess.run([sys.executable, "-m", "igniter", "apply", str(two_servers), "--state",
                              str(state_dir / "state.json"), "--json"], capture_output=True, text=True, timeout=WAIT_S)
    assert applied.returncode == 0, applied.stderr
    endpoint = json.loads(applied.stdout)["endpoints"]["a"]["grpc"]
    before = recorded_pids(state_dir)
    moved = make_plan(tmp_path / "moved", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4, "share": 60.0},
                                                      {"name": "b", "model": "mlp", "batch": 4, "cpus": [1]}])
    with PoissonLoad(endpoint, "tinynet", 20.0, seed=4) as load:
        proc = igniter("apply", str(moved), "--state", str(state_dir / "state.json"))
        wait_for(lambda: running(state_dir) - before, "the apply to start the new server")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S)
        time.sleep(0.5)  # requests after the rollback too (not an assertion on timing)
    assert load.record.requests and load.record.failed == [], load.record.failed[:3]
    if proc.returncode == 0:  # the signal came after the commit: the apply completed (tests/test_signal_points.py)
        assert recorded_pids(state_dir) == running(state_dir) and len(recorded_pids(state_dir) - before) == 1, \
            "the new a serves, the state records it, the old a is retired"
    else:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert recorded_pids(state_dir) == before == running(state_dir), "the old servers serve on, nothing else runs"
    assert down(state_dir).returncode == 0 and running(state_dir) == set()
