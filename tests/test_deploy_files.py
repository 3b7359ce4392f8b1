"""Bad plan and state files are one-line errors (exit 2, nothing started, nothing written); atomic writes that
fail midway leave the old file intact and no temporary file. No Triton needed: every case fails before a start."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from igniter import atomic
from igniter.atomic import atomic_write
from igniter.cli.main import cli
from igniter.deployment.state import DeploymentState, ServerState, load_state, save_state
from igniter.errors import UserError
from igniter.provisioning import plan as plan_module
from igniter.provisioning.candidates import build_problem
from igniter.provisioning.plan import build_plan, write_plan
from igniter import provisioning
from igniter.provisioning.workloads import Workload, WorkloadSet, default_catalog
from tests.fake_perf_model import FakePerfModel

REAL_FDOPEN = os.fdopen
def state_server(name: str, pid: int | None, launch_digest: str = "d", models: dict | None = None,
                 workloads: list[str] | None = None, repo: str = "/r", http: str = "h:1", grpc: str = "h:2",
                 metrics: str | None = None, log: str | None = None) -> ServerState:
    return ServerState(name=name, gpu="host0", share=50.0, repo=repo, http=http, grpc=grpc, metrics=metrics, pid=pid,
                       launch_digest=launch_digest, models=models or {}, workloads=workloads or [], log=log)


@pytest.fixture()
def good_plan(demo_repo, tmp_path) -> Path:
    """A valid plan of one CPU server (the demo's tinynet), as plan_factory writes it."""
    from tests.plan_factory import make_plan

    return make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 1}])


def apply_cli(plan: Path, state: Path, *extra: str):
    return CliRunner().invoke(cli, ["apply", str(plan), "--state", str(state), *extra])


def assert_one_line_error(result, needle: str):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "To fix:" in lines[0], result.output
    assert "Traceback" not in result.output


def _corrupt(plan: Path, how: str) -> None:
    launch = plan.parent / "triton_repo" / "a" / "launch.json"
    data = json.loads(plan.read_text())
    if how == "not utf-8":
        plan.write_bytes(b"\xff\xfe")
    elif how == "not json":
        plan.write_text("{not json")
    elif how == "a list":
        plan.write_text('["a list"]')
    elif how == "other format":
        plan.write_text(json.dumps({**data, "format": "something-else"}))
    elif how == "old version":
        plan.write_text(json.dumps({**data, "version": 1}))
    elif how == "server without name":
        del data["gpus"][0]["servers"][0]["name"]
        plan.write_text(json.dumps(data))
    elif how == "share not a number":
        data["gpus"][0]["servers"][0]["share"] = "half"
        plan.write_text(json.dumps(data))
    elif how == "no launch spec":
        launch.unlink()
    elif how == "launch spec not json":
        launch.write_text("{broken")


@pytest.mark.parametrize("how, needle", [
    ("not utf-8", "is not UTF-8"), ("not json", "plan.json"), ("a list", "is not an igniter-plan file"),
    ("other format", "format='something-else'"), ("old version", "is version 1"), ("server without name", "name"),
    ("share not a number", "share"), ("no launch spec", "launch.json"), ("launch spec not json", "launch.json"),
])
def test_bad_plan_is_one_line_and_changes_nothing(good_plan, tmp_path, how, needle):
    _corrupt(good_plan, how)
    state = tmp_path / "state" / "state.json"
    assert_one_line_error(apply_cli(good_plan, state), needle)
    assert not state.exists() and not (state.parent / "servers").exists()


def test_missing_plan_is_one_line(tmp_path):
    assert_one_line_error(apply_cli(tmp_path / "nope.json", tmp_path / "s.json"), "does not exist")


@pytest.mark.parametrize("text", ["{oops", '{"servers": {"a": {"name": "a"}}}', '{"servers": [1, 2]}', "\xff"])
def test_bad_state_file_is_one_line_for_apply_status_and_down(good_plan, tmp_path, text):
    state = tmp_path / "state.json"
    state.write_bytes(text.encode("latin-1"))
    before = state.read_bytes()
    assert_one_line_error(apply_cli(good_plan, state), "state")
    for command in ("status", "down"):
        assert_one_line_error(CliRunner().invoke(cli, [command, "--state", str(state)]), "state")
    assert state.read_bytes() == before, "a state igniter cannot read is never overwritten"


def test_bad_server_map_is_one_line(good_plan, tmp_path):
    plan = good_plan
    bad = tmp_path / "map.yaml"
    bad.write_text("- just\n- a list\n")
    assert_one_line_error(apply_cli(plan, tmp_path / "s.json", "--server-map", str(bad)), "must be a mapping")


# -- atomic writes made to fail midway ---------------------------------------------------------------------

class HalfWriter:
    """Stands in for the temp file: writes half the data, then the disk is full."""

    def __init__(self, fd, mode):
        self.f = REAL_FDOPEN(fd, mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(28, "No space left on device")


def leftovers(directory: Path, keep: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != keep)


def test_atomic_write_failing_midway_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old contents\n")
    monkeypatch.setattr(atomic.os, "fdopen", HalfWriter)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, "new contents that do not fit\n")
    assert target.read_text() == "old contents\n" and leftovers(tmp_path, "state.json") == []


def test_atomic_write_failing_at_the_rename_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old contents\n")

    def refuse(src, dst):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError):
        atomic_write(target, "new\n")
    assert target.read_text() == "old contents\n" and leftovers(tmp_path, "state.json") == []


def test_atomic_write_replaces_whole_file_readable_by_others(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("a much longer old content than the new one\n")
    atomic_write(target, b"new\n")
    assert target.read_bytes() == b"new\n" and (target.stat().st_mode & 0o777) == 0o644
    assert leftovers(tmp_path, "f.txt") == []


def test_state_save_failing_midway_keeps_the_previous_state(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    first = DeploymentState(plan="p1", servers={"a": state_server("a", None)})
    save_state(first, path)
    monkeypatch.setattr(atomic.os, "fdopen", HalfWriter)
    with pytest.raises((OSError, UserError)):
        save_state(DeploymentState(plan="p2"), path)
    assert load_state(path).plan == "p1" and set(load_state(path).servers) == {"a"}
    assert leftovers(tmp_path, "state.json") == []


def test_plan_write_failing_midway_keeps_the_previous_plan_directory(tmp_path, monkeypatch):
    ws = WorkloadSet((Workload("w0", "alexnet", 200, 30), Workload("w1", "resnet50", 100, 60)))
    problem = build_problem(ws, default_catalog(FakePerfModel()))
    plan = build_plan(problem, provisioning.solve(problem, "igniter", 10)[0], "igniter")
    out = tmp_path / "out"
    write_plan(plan, problem, out, None, {})
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    written = []

    def second_server_fails(repo, *args):
        written.append(repo)
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        return real(repo, *args)

    real = plan_module._write_server
    monkeypatch.setattr(plan_module, "_write_server", second_server_fails)
    with pytest.raises((OSError, UserError), match="No space left"):
        write_plan(plan, problem, out, None, {"changed": True})
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert leftovers(tmp_path, "out") == [], "no temporary plan directory left beside it"


# -- the diff between a plan and the deployment state, hand-worked -----------------------------------------

def test_diff_names_the_action_each_server_needs(demo_repo, tmp_path):
    # recorded servers without a pid (remote ones) skip the process checks; a pid that is not a live tritonserver
    # of this deployment is restarted (a reshare needs a live one: test_deploy_faults covers it on real Triton)
    import subprocess

    from igniter.deployment.apply import diff, planned_servers
    from igniter.triton.config import config_digest, read_config
    from tests.plan_factory import make_plan

    finished = subprocess.Popen(["true"])
    finished.wait()
    servers = [{"name": n, "model": "tinynet", "batch": 4} for n in ("fresh", "dead", "reconf", "same")]
    planned = planned_servers(make_plan(tmp_path / "p", demo_repo, servers))
    by_name = {s.name: s for s in planned}
    digest = config_digest(read_config(by_name["same"].models["tinynet"]))
    state = DeploymentState(servers={
        "dead": state_server("dead", finished.pid, models={"tinynet": digest}),
        "reconf": state_server("reconf", None, models={"tinynet": "old-digest"}),
        "same": state_server("same", None, models={"tinynet": digest}),
        "gone": state_server("gone", None)})
    actions = diff(planned, state, tmp_path / "state")
    assert {a.server: (a.action, a.models) for a in actions} == {
        "fresh": ("start", ["tinynet"]), "dead": ("restart", ["tinynet"]), "reconf": ("reload", ["tinynet"]),
        "same": ("keep", []), "gone": ("retire", [])}
    reasons = {a.server: a.reason for a in actions}
    assert reasons["fresh"] == "new server" and reasons["reconf"] == "configs changed"
    assert reasons["same"] == "up to date" and reasons["gone"] == "not in the plan"
    assert str(finished.pid) in reasons["dead"]
    assert by_name["same"].share == 50.0 and by_name["same"].gpu == "host0" and by_name["same"].workloads == ["same"]


def test_state_file_round_trip_and_endpoints_hand_worked(tmp_path):
    path = tmp_path / "nested" / "state.json"
    assert load_state(path).servers == {} and load_state(path).plan is None     # no file yet: nothing deployed
    a = state_server("a", 41, "d1", {"tinynet": "c1"}, ["w1", "w2"], "/r/a", "127.0.0.1:1", "127.0.0.1:2",
                     "127.0.0.1:3", "/logs/a")
    b = state_server("b", None, "d2", {}, ["w1"], "(remote)", "10.0.0.5:8000", "10.0.0.5:8001")
    save_state(DeploymentState(plan="/p/plan.json", servers={"b": b, "a": a}), path)
    data = json.loads(path.read_text())
    assert data["format"] == "igniter-state" and data["version"] == 2 and data["plan"] == "/p/plan.json"
    assert list(data["servers"]) == ["a", "b"] and data["servers"]["a"]["pid"] == 41
    loaded = load_state(path)
    assert loaded.servers == {"a": a, "b": b}
    assert loaded.endpoints_by_workload() == {
        "w1": [{"server": "a", "grpc": "127.0.0.1:2", "http": "127.0.0.1:1"},
               {"server": "b", "grpc": "10.0.0.5:8001", "http": "10.0.0.5:8000"}],
        "w2": [{"server": "a", "grpc": "127.0.0.1:2", "http": "127.0.0.1:1"}]}


# -- the exact lines users see, and the rest of the file formats -------------------------------------------

def test_state_error_line_is_what_users_read(tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{")
    with pytest.raises(UserError) as err:
        load_state(state)
    assert str(err.value).count("To fix:") == 1 and "(state.json)" in str(err.value)


def test_state_file_text_and_a_state_without_servers(tmp_path):
    path = tmp_path / "state.json"
    save_state(DeploymentState(plan="p"), path)
    assert json.loads(path.read_text()) == {"format": "igniter-state", "version": 2, "plan": "p", "servers": {}}
    path.write_text('{"format": "igniter-state", "version": 2, "plan": "p"}')
    assert load_state(path).servers == {} and load_state(path).plan == "p"


def test_mps_control_missing_is_this_line(tmp_path):
    from igniter.backends.mps import MpsGpu

    with pytest.raises(UserError) as err:
        MpsGpu(lambda *a, **k: None, lambda name: None).start_daemon(tmp_path)
    assert str(err.value) == ("MPS shares need nvidia-cuda-mps-control, which is not on PATH. To fix: run on the GPU "
                              "host with the NVIDIA driver utilities installed, or use the cpu backend")
