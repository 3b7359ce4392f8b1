"""A signal at every step boundary of an apply, injected deterministically, with REAL tritonservers.

The apply's progress callback is called at each step boundary (each server's step, routing, the commit, each retire,
the rollback); here it sends SIGTERM to this process at one chosen boundary, so the signal lands exactly there
rather than wherever a race puts it. Every boundary has one right outcome, known from where it lies (the oracle is
the boundary, not the code): before the commit the apply rolls back (the old servers serve on, the state file is
byte for byte as before); from the commit on it completes (the new plan serves, the state records it) and says so.
What runs is read from /proc: every process carrying this deployment's owner tag, launch shims included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from igniter.cli.main import cli
from igniter.deployment.apply import Deployer
from igniter.deployment.interrupt import Interrupted, signals_interrupt
from igniter.deployment.state import load_state
from igniter.triton.server import OWNER_ENV, deployment_owner, pid_alive, stop_process_group
from tests.plan_factory import make_plan

pytestmark = pytest.mark.integration


def tagged(state_dir: Path) -> set[int]:
    """Every live process group leader whose environment carries this deployment's owner tag (servers, the front
    door, launch shims not yet exec'd; a server's backend stubs inherit the tag but live in its group)."""
    tag = os.fsencode(f"{OWNER_ENV}={deployment_owner(state_dir)}")
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not pid_alive(int(entry.name)):
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            leads_group = os.getpgid(int(entry.name)) == int(entry.name)
        except OSError:
            continue
        if tag in environ and leads_group:
            pids.add(int(entry.name))
    return pids


def recorded(state_dir: Path) -> set[int]:
    state = load_state(state_dir / "state.json")
    return {s.pid for s in state.servers.values()} | ({state.frontdoor.pid} if state.frontdoor else set())


def copies(state_dir: Path) -> set[str]:
    servers = state_dir / "servers"
    return {str(p) for p in servers.iterdir() if p.name != "logs" and not p.name.startswith(".")}


def signal_at(boundaries: list[str]):
    """A progress callback that sends SIGTERM to this process at each boundary in turn (a message's first word)."""
    left = list(boundaries)

    def progress(message: str) -> None:
        if left and message.split()[0] == left[0]:
            left.pop(0)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1_000_000):  # Python runs the handler between bytecodes, right after the kill
                pass
    progress.left = left
    return progress


@pytest.fixture()
def deployed(demo_repo, tmp_path):
    """Two applied servers (a on CPU 0, b on CPU 1) and the moved plan: a reshared (a new process), b kept."""
    state_dir = tmp_path / "state"
    first = Deployer(state_dir / "state.json", detached=True)
    first.apply(make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4, "cpus": [0]},
                                                        {"name": "b", "model": "mlp", "batch": 4, "cpus": [1]}]))
    moved = make_plan(tmp_path / "moved", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4, "share": 60.0},
                                                      {"name": "b", "model": "mlp", "batch": 4, "cpus": [1]}])
    deployers = [first]
    yield state_dir, moved, deployers
    Deployer(state_dir / "state.json").stop_all()
    for pid in tagged(state_dir):  # whatever a failing case left behind
        stop_process_group(pid, timeout_s=10)
    for local in (s for d in deployers for s in d.local.values()):
        local.stop()  # reaps the processes this test started (a zombie child upsets mutmut)


# the moved apply's boundaries, in order: reshare a, keep b, route, commit, retire the old a
ROLLED_BACK = [["reshare"], ["keep"], ["route"], ["commit"], ["reshare", "rolling"], ["route", "rolling"]]
COMPLETED = [["retire"]]


@pytest.mark.parametrize("boundaries", ROLLED_BACK + COMPLETED, ids=lambda b: "-then-".join(b))
def test_a_signal_at_each_boundary_rolls_back_or_completes(deployed, boundaries):
    state_dir, moved, deployers = deployed
    state_path = state_dir / "state.json"
    before_bytes, before_pids, before_copies = state_path.read_bytes(), recorded(state_dir), copies(state_dir)
    old = load_state(state_path).servers
    assert tagged(state_dir) == before_pids
    progress = signal_at(boundaries)
    deployer = Deployer(state_path, detached=True, progress=progress)
    deployers.append(deployer)
    with pytest.raises(Interrupted) as caught, signals_interrupt():
        deployer.apply(moved)
    assert progress.left == [], "every boundary was reached and signalled"
    if boundaries in ROLLED_BACK:
        assert state_path.read_bytes() == before_bytes, "the state is as before"
        assert tagged(state_dir) == before_pids, "the old servers serve on and nothing the apply started runs"
        assert copies(state_dir) == before_copies, "the repository copy made for the new a is removed"
        assert not getattr(caught.value, "completed", False), "a rollback is said as one"
    else:
        new = load_state(state_path).servers
        assert new["a"].pid != old["a"].pid and new["b"].pid == old["b"].pid, "the state records the new plan"
        assert new["a"].share == 60.0
        assert tagged(state_dir) == recorded(state_dir) == before_pids - {old["a"].pid} | {new["a"].pid}
        assert copies(state_dir) == {new["a"].repo, new["b"].repo}, "the old a's copy is retired with it"
        assert getattr(caught.value, "completed", False), "the apply completed: the signal must not claim a rollback"
        report = deployer.report  # what the apply returns when no signal comes
        assert {a["server"]: a["action"] for a in report["actions"]} == {"a": "reshare", "b": "keep"}
        assert report["state"] == str(state_path) and set(report["endpoints"]) == {"a", "b"}


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1_000_000):  # the handler runs here unless signals are held back
        pass


def signal_during_the_commit(monkeypatch):
    stop = Deployer._stop

    def stop_after_a_signal(self, server):  # retiring the old a: the state is written, the signal held back
        kill_self()
        return stop(self, server)
    monkeypatch.setattr(Deployer, "_stop", stop_after_a_signal)


def signal_after_the_apply_returned(monkeypatch):
    apply = Deployer.apply

    def apply_then_a_signal(self, plan, dry_run=False):  # still inside the CLI's signal handling
        report = apply(self, plan, dry_run)
        if not dry_run:
            kill_self()
        return report
    monkeypatch.setattr(Deployer, "apply", apply_then_a_signal)


@pytest.mark.parametrize("inject", [signal_during_the_commit, signal_after_the_apply_returned])
def test_a_signal_after_the_commit_exits_0_with_the_report_and_says_so(deployed, monkeypatch, inject):
    state_dir, moved, _ = deployed
    old_a = load_state(state_dir / "state.json").servers["a"].pid
    inject(monkeypatch)
    result = CliRunner().invoke(cli, ["apply", str(moved), "--state", str(state_dir / "state.json"), "--json"])
    assert result.exit_code == 0, result.output  # 128+15 would say "rolled back"
    report = json.loads(result.stdout)
    assert {a["server"]: a["action"] for a in report["actions"]} == {"a": "reshare", "b": "keep"}
    assert "note: SIGTERM came after the apply had committed: it completed" in result.stderr
    assert load_state(state_dir / "state.json").servers["a"].pid != old_a and not pid_alive(old_a)
    assert tagged(state_dir) == recorded(state_dir)


def test_a_signal_as_a_server_copy_is_made_leaves_no_copy(deployed, monkeypatch):
    state_dir, moved, deployers = deployed
    before_bytes, before_pids, before_copies = (state_dir / "state.json").read_bytes(), recorded(state_dir), copies(state_dir)
    copytree = shutil.copytree

    def copy_then_a_signal(*args, **kwargs):  # the signal lands as the copy for the new a ends
        copytree(*args, **kwargs)
        kill_self()
    monkeypatch.setattr("igniter.deployment.apply.shutil.copytree", copy_then_a_signal)
    deployer = Deployer(state_dir / "state.json", detached=True)
    deployers.append(deployer)
    with pytest.raises(Interrupted) as caught, signals_interrupt():
        deployer.apply(moved)
    assert not caught.value.completed
    assert (state_dir / "state.json").read_bytes() == before_bytes and tagged(state_dir) == before_pids
    assert copies(state_dir) == before_copies, "the half-made copy is removed with the rest"
