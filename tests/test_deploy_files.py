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
from igniter.provisioning import greedy_igniter
from igniter.provisioning.workloads import Workload, WorkloadSet, default_catalog
from tests.fake_perf_model import FakePerfModel

REAL_FDOPEN = os.fdopen
GOOD_SERVER = {"name": "a", "model": "tinynet", "workload": "a", "replica": 0, "share": 50.0, "batch": 1,
               "instances": 1}


def plan_dir(tmp_path: Path, plan, launch: str | None = '{"models": ["tinynet"], "cpus": [0]}') -> Path:
    d = tmp_path / "plan"
    (d / "triton_repo" / "a" / "tinynet").mkdir(parents=True)
    if launch is not None:
        (d / "triton_repo" / "a" / "launch.json").write_text(launch)
    (d / "plan.json").write_text(plan if isinstance(plan, str) else json.dumps(plan))
    return d / "plan.json"


def apply_cli(plan: Path, state: Path, *extra: str):
    return CliRunner().invoke(cli, ["apply", str(plan), "--state", str(state), *extra])


def assert_one_line_error(result, needle: str):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "To fix:" in lines[0], result.output
    assert "Traceback" not in result.output


def plan_with(server: dict) -> dict:
    return {"format": "igniter-plan", "version": 1, "gpus": [{"id": "host0", "servers": [server]}]}


@pytest.mark.parametrize("plan, launch, needle", [
    ("{not json", "{}", "is not valid JSON"),
    (b"\xff\xfe", "{}", "is not valid JSON"),
    ('["a list"]', "{}", "is not an igniter plan"),
    ({"format": "something-else"}, "{}", "is not an igniter plan (format='something-else')"),
    ({"format": "igniter-plan", "gpus": "host0"}, "{}", "is malformed"),
    ({"format": "igniter-plan", "gpus": [{"id": "host0", "servers": [{"model": "tinynet"}]}]}, "{}", "is malformed"),
    (plan_with({**GOOD_SERVER, "share": "half"}), "{}", "is malformed"),
    (plan_with(GOOD_SERVER), None, "has no launch spec"),
    (plan_with(GOOD_SERVER), "{broken", "is not valid JSON"),
])
def test_bad_plan_is_one_line_and_changes_nothing(tmp_path, plan, launch, needle):
    if isinstance(plan, bytes):
        path = plan_dir(tmp_path, "{}", launch)
        path.write_bytes(plan)
    else:
        path = plan_dir(tmp_path, plan, launch)
    state = tmp_path / "state" / "state.json"
    assert_one_line_error(apply_cli(path, state), needle)
    assert not state.exists() and not (state.parent / "servers").exists()


def test_missing_plan_is_one_line(tmp_path):
    assert_one_line_error(apply_cli(tmp_path / "nope.json", tmp_path / "s.json"), "does not exist")


@pytest.mark.parametrize("text", ["{oops", '{"servers": {"a": {"name": "a"}}}', '{"servers": [1, 2]}', "\xff"])
def test_bad_state_file_is_one_line_for_apply_status_and_down(tmp_path, text):
    state = tmp_path / "state.json"
    state.write_bytes(text.encode("latin-1"))
    before = state.read_bytes()
    plan = plan_dir(tmp_path, plan_with(GOOD_SERVER))
    assert_one_line_error(apply_cli(plan, state), "deployment state")
    for command in ("status", "down"):
        assert_one_line_error(CliRunner().invoke(cli, [command, "--state", str(state)]), "deployment state")
    assert state.read_bytes() == before, "a state igniter cannot read is never overwritten"


def test_bad_server_map_is_one_line(tmp_path):
    plan = plan_dir(tmp_path, plan_with(GOOD_SERVER))
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
    first = DeploymentState(plan="p1", servers={"a": ServerState("a", "host0", 50.0, "/r", "h:1", "h:2", None, None, "d")})
    save_state(first, path)
    monkeypatch.setattr(atomic.os, "fdopen", HalfWriter)
    with pytest.raises(OSError):
        save_state(DeploymentState(plan="p2"), path)
    assert load_state(path).plan == "p1" and set(load_state(path).servers) == {"a"}
    assert leftovers(tmp_path, "state.json") == []


def test_plan_write_failing_midway_keeps_the_previous_plan_directory(tmp_path, monkeypatch):
    ws = WorkloadSet((Workload("w0", "alexnet", 200, 30), Workload("w1", "resnet50", 100, 60)))
    problem = build_problem(ws, default_catalog(FakePerfModel()))
    plan = build_plan(problem, greedy_igniter.solve(problem), "igniter")
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
    with pytest.raises(OSError):
        write_plan(plan, problem, out, None, {"changed": True})
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert leftovers(tmp_path, "out") == [], "no temporary plan directory left beside it"


# -- the diff between a plan and the deployment state, hand-worked -----------------------------------------

def test_diff_names_the_action_each_server_needs(demo_repo, tmp_path):
    import subprocess

    from igniter.deployment.apply import diff, read_plan
    from igniter.triton.config import config_digest, read_config
    from tests.plan_factory import make_plan

    finished = subprocess.Popen(["true"])
    finished.wait()
    servers = [{"name": n, "model": "tinynet", "batch": 4} for n in ("fresh", "dead", "moved", "reconf", "same")]
    planned = read_plan(make_plan(tmp_path / "p", demo_repo, servers))
    by_name = {s.name: s for s in planned}
    digest = config_digest(read_config(by_name["same"].models["tinynet"]))

    def recorded(name, pid, launch_digest=None, config=digest):
        return ServerState(name, "host0", 50.0, "/r", "h:1", "h:2", None, pid,
                           launch_digest or by_name[name].launch_digest, {"tinynet": config})

    state = DeploymentState(servers={
        "dead": recorded("dead", finished.pid), "moved": recorded("moved", os.getpid(), "another-launch"),
        "reconf": recorded("reconf", os.getpid(), config="old-digest"), "same": recorded("same", os.getpid()),
        "gone": ServerState("gone", "host0", 50.0, "/r", "h:1", "h:2", None, os.getpid(), "x")})
    actions = {a.server: (a.action, a.models) for a in diff(planned, state)}
    assert actions == {"fresh": ("start", ["tinynet"]), "dead": ("restart", ["tinynet"]),
                       "moved": ("reshare", ["tinynet"]), "reconf": ("reload", ["tinynet"]),
                       "same": ("keep", []), "gone": ("retire", [])}
    assert by_name["same"].share == 50.0 and by_name["same"].gpu == "host0" and by_name["same"].workloads == ["same"]
    reasons = {a.server: a.reason for a in diff(planned, state)}
    assert reasons == {"fresh": "new server", "dead": f"process {finished.pid} is gone",
                       "moved": "share 50% -> 50%", "reconf": "configs changed", "same": "up to date",
                       "gone": "not in the plan"}


def test_state_file_round_trip_and_endpoints_hand_worked(tmp_path):
    path = tmp_path / "nested" / "state.json"
    assert load_state(path).servers == {} and load_state(path).plan is None     # no file yet: nothing deployed
    a = ServerState("a", "host0", 50.0, "/r/a", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", 41, "d1",
                    {"tinynet": "c1"}, ["w1", "w2"], "/logs/a")
    b = ServerState("b", "host0", 50.0, "(remote)", "10.0.0.5:8000", "10.0.0.5:8001", None, None, "d2", {}, ["w1"])
    save_state(DeploymentState(plan="/p/plan.json", servers={"b": b, "a": a}), path)
    data = json.loads(path.read_text())
    assert data["format"] == "igniter-state" and data["version"] == 1 and data["plan"] == "/p/plan.json"
    assert list(data["servers"]) == ["a", "b"] and data["servers"]["a"]["pid"] == 41
    loaded = load_state(path)
    assert loaded.servers == {"a": a, "b": b}
    assert loaded.endpoints_by_workload() == {
        "w1": [{"server": "a", "grpc": "127.0.0.1:2", "http": "127.0.0.1:1"},
               {"server": "b", "grpc": "10.0.0.5:8001", "http": "10.0.0.5:8000"}],
        "w2": [{"server": "a", "grpc": "127.0.0.1:2", "http": "127.0.0.1:1"}]}


# -- the exact lines users see, and the rest of the file formats -------------------------------------------

def test_error_lines_are_exactly_what_users_read(tmp_path):
    from igniter.deployment.apply import read_plan

    missing = tmp_path / "nope.json"
    with pytest.raises(UserError) as err:
        read_plan(missing)
    assert str(err.value) == (f"plan {missing} does not exist. To fix: run `igniter provision ... --out DIR` and "
                              "pass DIR/plan.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UserError) as err:
        read_plan(bad)
    assert str(err.value).endswith(". To fix: regenerate it with `igniter provision`")
    bad.write_text('{"format": "x"}')
    with pytest.raises(UserError) as err:
        read_plan(bad)
    assert str(err.value) == (f"{bad} is not an igniter plan (format='x'). To fix: pass the plan.json written by "
                              "`igniter provision`")
    bad.write_text('{"format": "igniter-plan", "gpus": [{"servers": [{"model": "m"}]}]}')
    with pytest.raises(UserError) as err:
        read_plan(bad)
    assert str(err.value) == (f"plan {bad} is malformed (KeyError: 'name'). To fix: regenerate it with "
                              "`igniter provision`")
    path = plan_dir(tmp_path / "x", plan_with(GOOD_SERVER), None)
    with pytest.raises(UserError) as err:
        read_plan(path)
    launch = path.parent / "triton_repo" / "a" / "launch.json"
    assert str(err.value) == (f"server 'a' has no launch spec at {launch}. To fix: regenerate the plan with "
                              "`igniter provision`")
    launch.write_text("{")
    with pytest.raises(UserError) as err:
        read_plan(path)
    assert str(err.value).startswith(f"launch spec {launch} is not valid JSON (") and \
        str(err.value).endswith(". To fix: regenerate the plan with `igniter provision`")
    state = tmp_path / "state.json"
    state.write_text("{")
    with pytest.raises(UserError) as err:
        load_state(state)
    assert str(err.value).endswith(". To fix: restore it from version control or delete it after stopping the "
                                   "servers it lists")


def test_plans_without_servers_and_launch_specs_without_models(tmp_path):
    from igniter.deployment.apply import read_plan

    empty = tmp_path / "empty" / "plan.json"
    empty.parent.mkdir()
    empty.write_text('{"format": "igniter-plan"}')
    assert read_plan(empty) == []                                   # nothing planned: apply retires everything
    empty.write_text('{"format": "igniter-plan", "gpus": [{"id": "g"}]}')
    assert read_plan(empty) == []
    [server] = read_plan(plan_dir(tmp_path, plan_with(GOOD_SERVER), '{"cpus": [0]}'))
    assert list(server.models) == ["tinynet"], "a launch spec without models serves the plan entry's model"
    assert server.repo == tmp_path / "plan" / "triton_repo" / "a"
    assert server.models["tinynet"] == server.repo / "tinynet" / "config.pbtxt"
    assert server.launch == {"cpus": [0]} and server.share == 50.0 and server.gpu == "host0"
    [server] = read_plan(plan_dir(tmp_path / "two", plan_with(GOOD_SERVER), '{"models": ["mlp", "tinynet"]}'))
    assert sorted(server.models) == ["mlp", "tinynet"], "the launch spec's models are what the server loads"


def test_state_file_text_and_a_state_without_servers(tmp_path):
    path = tmp_path / "state.json"
    save_state(DeploymentState(plan="p"), path)
    assert path.read_text() == '{\n  "format": "igniter-state",\n  "plan": "p",\n  "servers": {},\n  "version": 1\n}\n'
    path.write_text('{"format": "igniter-state", "plan": "p"}')
    assert load_state(path).servers == {} and load_state(path).plan == "p"


def test_mps_control_missing_is_this_line(tmp_path):
    from igniter.deployment.mps import ensure_mps_daemon

    with pytest.raises(UserError) as err:
        ensure_mps_daemon(tmp_path, lambda *a, **k: None, lambda name: None)
    assert str(err.value) == ("the plan sets MPS shares but nvidia-cuda-mps-control is not on PATH. To fix: run "
                              "apply on the GPU host with the NVIDIA driver utilities installed")
