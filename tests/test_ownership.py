"""igniter touches only what it owns (issue #19, deliverable 3), through the real CLI with real processes.

Every case asserts the exit code, one error line with "To fix", and that the user's files (bytes and mtimes) and
processes (a real unrelated `sleep`, a real tritonserver igniter did not start for that state) are untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402

from igniter.cli import provision as provision_cli  # noqa: E402
from igniter.cli.main import cli  # noqa: E402
from igniter.deployment.state import DeploymentState, ServerState, load_state, save_state  # noqa: E402
from igniter.errors import UserError  # noqa: E402
from igniter.ownership import MARKER, child_of, contained, is_owned  # noqa: E402
from igniter.triton.demo_zoo import ensure_demo_repo  # noqa: E402
from igniter.triton.server import OWNER_ENV, deployment_owner, owned_by, pid_alive  # noqa: E402
from tests.plan_factory import make_plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = "workloads:\n  - {name: a, model: alexnet, rate: 400, slo_ms: 20}\n"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root, files with their bytes and mtime: what 'untouched' means. Except __pycache__: Triton's
    python backend compiles model.py when it imports it, in an isolated interpreter igniter cannot configure."""
    entries = {}
    for path in sorted(p for p in Path(root).rglob("*") if "__pycache__" not in p.parts):
        is_file = path.is_file() and not path.is_symlink()
        entries[path.relative_to(root).as_posix()] = (path.read_bytes(), path.stat().st_mtime_ns) if is_file else None
    return entries


def one_error_line(result) -> str:
    """The result's stderr must be exactly one line: the error, with its fix."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "To fix: " in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: FakePerfModel()))
    return CliRunner()


def provision(runner, tmp_path: Path, out: Path, workloads: str = WORKLOADS):
    w = tmp_path / "w.yaml"
    w.write_text(workloads)
    (tmp_path / "m.json").write_text("{}")
    return runner.invoke(cli, ["provision", "--workloads", str(w), "--perf-model", str(tmp_path / "m.json"),
                               "--out", str(out)])


@pytest.fixture
def sleeper():
    """A real process igniter has nothing to do with."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def user_repo(tmp_path: Path) -> Path:
    """A user's directory with files of their own."""
    repo = tmp_path / "mine"
    (repo / "convnet" / "1").mkdir(parents=True)
    (repo / "convnet" / "config.pbtxt").write_text('name: "convnet"\n# my own config\n')
    (repo / "notes.txt").write_text("mine\n")
    return repo


def hand_edited_state(path: Path, servers: dict[str, dict]) -> Path:
    """A state file as apply writes it, then edited by hand: each server's pid and repo replaced."""
    state = DeploymentState(servers={name: ServerState(name=name, gpu="host0", share=50.0, repo="/nowhere",
                                                       http="127.0.0.1:1", grpc="127.0.0.1:2", metrics=None, pid=1,
                                                       launch_digest="x") for name in servers})
    save_state(state, path)
    data = json.loads(path.read_text())
    for name, edits in servers.items():
        data["servers"][name].update(edits)
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------- plan directories (provision --out)

def test_provision_never_replaces_a_user_directory_holding_a_stray_plan(runner, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.json").write_text('{"format": "igniter-plan"}\n')
    (out / "thesis.tex").write_text("three years of work\n")
    before = snapshot(out)
    result = provision(runner, tmp_path, out)
    assert result.exit_code == 2
    assert "not an igniter output" in one_error_line(result)
    assert snapshot(out) == before


def test_provision_replaces_its_own_plan_but_not_files_put_into_it(runner, tmp_path):
    out = tmp_path / "out"
    assert provision(runner, tmp_path, out).exit_code == 0
    assert is_owned(out) and json.loads((out / MARKER).read_text())["made_by"] == "igniter provision"
    assert provision(runner, tmp_path, out).exit_code == 0, "an earlier plan igniter wrote is replaced"
    (out / "notes.txt").write_text("my notes\n")
    before = snapshot(out)
    result = provision(runner, tmp_path, out)
    assert result.exit_code == 2
    assert "notes.txt" in one_error_line(result)
    assert snapshot(out) == before


def test_names_with_dotdot_never_write_outside_out(runner, tmp_path):
    out = tmp_path / "a" / "b" / "out"
    result = provision(runner, tmp_path, out,
                       "workloads:\n  - {name: ../../../escape, model: alexnet, rate: 400, slo_ms: 20}\n")
    assert result.exit_code == 2
    one_error_line(result)
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*escape*")], "nothing written anywhere a '..' could reach"


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x", "a\\b", "a\0b"])
def test_a_name_that_is_not_one_plain_path_component_is_refused(tmp_path, name):
    with pytest.raises(UserError, match="not a plain name"):
        child_of(tmp_path, name, "server name", "rename it")
    assert child_of(tmp_path, "gpu0-w1-r0", "server name", "rename it") == tmp_path / "gpu0-w1-r0"


def test_a_path_that_resolves_outside_its_root_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "out").symlink_to(tmp_path)
    with pytest.raises(UserError, match="outside"):
        contained(tmp_path / "root" / "out" / "x", tmp_path / "root", "server repository", "fix it")
    with pytest.raises(UserError, match="outside"):
        contained(tmp_path / "root" / ".." / "x", tmp_path / "root", "server repository", "fix it")
    inside = contained(tmp_path / "root" / "a" / ".." / "b", tmp_path / "root", "x", "y")
    assert inside == tmp_path.resolve() / "root" / "b"


@pytest.mark.parametrize("where", ["under_a_file", "too_long", "proc"])
def test_output_paths_the_os_refuses_are_one_line(runner, tmp_path, where):
    (tmp_path / "a_file").write_text("x")
    out = {"under_a_file": tmp_path / "a_file" / "out", "too_long": tmp_path / ("x" * 300),
           "proc": Path("/proc/igniter-test/out")}[where]
    result = provision(runner, tmp_path, out)
    assert result.exit_code == 2
    one_error_line(result)
    assert (tmp_path / "a_file").read_text() == "x"


# ---------------------------------------------------------------- processes and server copies (apply / down)

@pytest.mark.integration
def test_provision_refuses_a_live_deployment_then_works_after_down(runner, demo_repo, tmp_path):
    out = tmp_path / "out"
    assert provision(runner, tmp_path, out).exit_code == 0
    plan = make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    state = out / "state.json"  # the deployment's state and server copies live inside the plan directory
    try:
        applied = runner.invoke(cli, ["apply", str(plan), "--state", str(state), "--json"])
        assert applied.exit_code == 0, applied.output
        pid = load_state(state).servers["a"].pid
        before = snapshot(out)
        result = provision(runner, tmp_path, out)
        assert result.exit_code == 2
        line = one_error_line(result)
        assert "live deployment" in line and "igniter down" in line
        assert snapshot(out) == before and pid_alive(pid), "nothing deleted, the server still runs"

        down = runner.invoke(cli, ["down", "--state", str(state), "--json"])
        assert down.exit_code == 0, down.output
        assert not pid_alive(pid)
        assert is_owned(out / "servers") and not [p for p in (out / "servers").iterdir() if p.name.startswith("a-")]
        assert provision(runner, tmp_path, out).exit_code == 0, "after down the plan directory is replaceable"
    finally:
        for server in load_state(state).servers.values() if state.exists() else []:
            if server.pid and pid_alive(server.pid):
                os.killpg(server.pid, signal.SIGKILL)


@pytest.mark.integration
def test_owned_by_needs_a_tritonserver_with_the_expected_tag(triton, sleeper, tmp_path):
    assert owned_by(triton.endpoints.pid, f"process:{os.getpid()}"), "the session's server, started by this process"
    assert not owned_by(triton.endpoints.pid, deployment_owner(tmp_path)), "the same server, another owner"
    sleeping_tagged = subprocess.Popen(["sleep", "600"], env={**os.environ, OWNER_ENV: deployment_owner(tmp_path)},
                                       start_new_session=True)
    try:
        assert not owned_by(sleeping_tagged.pid, deployment_owner(tmp_path)), "the tag alone is not enough"
    finally:
        sleeping_tagged.kill()
        sleeping_tagged.wait()
    assert not owned_by(sleeper.pid, f"process:{os.getpid()}")
    assert not owned_by(str(triton.endpoints.pid), f"process:{os.getpid()}") and not owned_by(None, "")


@pytest.mark.integration
def test_down_never_signals_or_deletes_what_it_did_not_start(triton, sleeper, tmp_path):
    mine = user_repo(tmp_path)
    before = snapshot(mine)
    state = hand_edited_state(tmp_path / "state" / "state.json", {
        "sleep": {"pid": sleeper.pid, "repo": str(mine)},
        # a real tritonserver igniter started, but not for this deployment (tag mismatch)
        "other": {"pid": triton.endpoints.pid, "repo": str(tmp_path / "state" / "servers" / ".." / ".." / "mine")},
    })
    status = CliRunner().invoke(cli, ["status", "--state", str(state), "--json"])
    assert status.exit_code == 1 and {r["status"] for r in json.loads(status.stdout)["servers"]} == {"down"}
    result = CliRunner().invoke(cli, ["down", "--state", str(state)])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert str(sleeper.pid) in line and str(triton.endpoints.pid) in line
    assert sleeper.poll() is None, "the unrelated process still runs"
    assert triton.alive(), "another owner's tritonserver still runs"
    assert snapshot(mine) == before
    assert not load_state(state).servers, "the state no longer lists what was not ours"


@pytest.mark.integration
def test_apply_does_not_trust_a_foreign_pid_or_repo(demo_repo, sleeper, tmp_path):
    mine = user_repo(tmp_path)
    before = snapshot(mine)
    state = hand_edited_state(tmp_path / "state" / "state.json", {"a": {"pid": sleeper.pid, "repo": str(mine)}})
    plan = make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    try:
        applied = CliRunner().invoke(cli, ["apply", str(plan), "--state", str(state), "--json"])
        assert applied.exit_code == 0, applied.output
        assert json.loads(applied.stdout)["actions"][0]["action"] == "restart"
        pid = load_state(state).servers["a"].pid
        assert pid != sleeper.pid and pid_alive(pid)
        down = CliRunner().invoke(cli, ["down", "--state", str(state), "--json"])
        assert down.exit_code == 0, down.output
        assert not pid_alive(pid)
    finally:
        for server in load_state(state).servers.values():
            if server.pid != sleeper.pid and server.pid and pid_alive(server.pid):
                os.killpg(server.pid, signal.SIGKILL)
    assert sleeper.poll() is None and snapshot(mine) == before


@pytest.mark.parametrize("command", ["down", "status", "apply"])
@pytest.mark.parametrize("pid", ["text", "negative", "bool"])
def test_a_state_with_a_non_integer_pid_is_one_line(tmp_path, command, pid, sleeper):
    value = {"text": str(sleeper.pid), "negative": -sleeper.pid, "bool": True}[pid]  # -pid would be its group
    state = hand_edited_state(tmp_path / "state.json", {"a": {"pid": value, "repo": str(tmp_path)}})
    before = state.read_bytes()
    servers = [{"name": "a", "model": "tinynet", "batch": 4}]
    repo = ensure_demo_repo(ROOT / "triton_repo")
    plan = [str(make_plan(tmp_path / "p", repo, servers))] if command == "apply" else []
    result = CliRunner().invoke(cli, [command, *plan, "--state", str(state)])
    assert result.exit_code == 2
    assert "pid" in one_error_line(result)
    assert state.read_bytes() == before and sleeper.poll() is None


# ---------------------------------------------------------------- plans whose names escape (apply)

@pytest.mark.parametrize("escape", ["server_name", "server_link", "model_name", "long_name"])
def test_apply_refuses_a_plan_that_serves_from_outside_its_directory(demo_repo, tmp_path, escape):
    plan = make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    outside = tmp_path / "outside"
    shutil.copytree(tmp_path / "plan" / "triton_repo" / "a", outside)
    data = json.loads(plan.read_text())
    if escape == "server_name":
        data["gpus"][0]["servers"][0]["name"] = "../../outside"
        plan.write_text(json.dumps(data))
    elif escape == "long_name":
        data["gpus"][0]["servers"][0]["name"] = "x" * 300
        plan.write_text(json.dumps(data))
    elif escape == "server_link":
        shutil.rmtree(tmp_path / "plan" / "triton_repo" / "a")
        (tmp_path / "plan" / "triton_repo" / "a").symlink_to(outside)
    else:
        launch = tmp_path / "plan" / "triton_repo" / "a" / "launch.json"
        launch.write_text(json.dumps({**json.loads(launch.read_text()), "models": ["../../../outside/tinynet"]}))
    state = tmp_path / "state" / "state.json"
    before = snapshot(tmp_path / "outside")
    result = CliRunner().invoke(cli, ["apply", str(plan), "--state", str(state)])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert escape != "server_link" or "outside" in line
    assert not state.exists() and snapshot(outside) == before


# ---------------------------------------------------------------- user repositories (infer / serve)

def _demo_like_user_repo(tmp_path: Path) -> Path:
    """A user's repository with models named like the demo's (no igniter marker), one file missing."""
    repo = tmp_path / "user_repo"
    shutil.copytree(ensure_demo_repo(ROOT / "triton_repo"), repo, ignore=shutil.ignore_patterns(MARKER))
    (repo / "tinynet" / "config.pbtxt").write_text((repo / "tinynet" / "config.pbtxt").read_text() + "# mine\n")
    (repo / "tinynet" / "1" / "model.py").unlink()
    return repo


@pytest.mark.integration
@pytest.mark.parametrize("command", ["infer", "serve"])
def test_infer_and_serve_never_write_into_a_user_repository_and_fail_as_soon_as_triton_says(tmp_path, command):
    repo = _demo_like_user_repo(tmp_path)
    before = snapshot(repo)
    # the server's readiness limit is 120 s: an answer within 100 s can only come from reading Triton's verdict
    result = subprocess.run([sys.executable, "-m", "igniter", command, "--repo", str(repo)], capture_output=True,
                            text=True, timeout=100)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "model.py" in line and "not ready after" not in line
    assert snapshot(repo) == before, "the user's repository is left exactly as it was"
    assert not processes_mentioning(str(repo)), "no server left behind"


LOAD_LATER = """
import sys
from pathlib import Path
from igniter.errors import UserError
from igniter.triton.client import TritonClient
from igniter.triton.server import LocalServer, ServerOptions
with LocalServer(ServerOptions(repo=Path(sys.argv[1]), models=["convnet"])) as server:
    with TritonClient.connect(server) as client:
        try:
            client.load("tinynet")
        except UserError as err:
            print(err)
"""


@pytest.mark.integration
def test_a_model_loaded_later_that_cannot_load_is_reported_as_soon_as_triton_says(tmp_path):
    """Through the repository API Triton would never answer (the model stays LOADING): the log says why at once."""
    repo = _demo_like_user_repo(tmp_path)
    result = subprocess.run([sys.executable, "-c", LOAD_LATER, str(repo)], capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cannot load model 'tinynet'" in result.stdout and "model.py" in result.stdout


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_demo_never_writes_into_a_directory_it_did_not_make(tmp_path):
    mine = user_repo(tmp_path)
    before = snapshot(mine)
    result = CliRunner().invoke(cli, ["demo", "--workdir", str(mine), "--duration", "1"])
    assert result.exit_code == 2
    assert "not an igniter output" in one_error_line(result)
    assert snapshot(mine) == before


def test_demo_models_are_generated_only_where_igniter_owns_the_directory(tmp_path):
    repo = _demo_like_user_repo(tmp_path)
    before = snapshot(repo)
    with pytest.raises(UserError, match="not an igniter output"):
        ensure_demo_repo(repo)
    assert snapshot(repo) == before

    ours = tmp_path / "ours"
    shutil.copytree(ROOT / "triton_repo", ours)  # carries the project's marker
    (ours / "mlp" / "1" / "model.py").unlink()
    ensure_demo_repo(ours)
    backend_code = (ROOT / "igniter" / "triton" / "demo_model_backend.py").read_bytes()
    assert (ours / "mlp" / "1" / "model.py").read_bytes() == backend_code

    fresh = ensure_demo_repo(tmp_path / "fresh")
    assert is_owned(fresh) and (fresh / "convnet" / "1" / "model.onnx").exists()
