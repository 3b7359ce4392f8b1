"""Deployment faults against REAL local Triton servers: retire, verification, rollback with the old server still
answering, a failing undo, remote apply through --server-map, degraded status."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from igniter.cli.main import cli
from igniter.deployment.apply import Deployer
from igniter.deployment.state import load_state
from igniter.errors import UserError
from igniter.triton.client import TritonClient
from igniter.triton.config import driven_fields, set_dynamic_batching
from igniter.triton.server import Endpoints, LocalServer, ServerOptions, pid_alive
from tests.plan_factory import make_plan

pytestmark = pytest.mark.integration


def client_of(state_path: Path, server: str) -> TritonClient:
    s = load_state(state_path).servers[server]
    return TritonClient(Endpoints(http=s.http, grpc=s.grpc))


def answers(state_path: Path, server: str, model: str) -> bool:
    with client_of(state_path, server) as c:
        return c.infer(model, c.make_inputs(model, 1))["OUTPUT0"].shape[0] == 1


def dead(pid: int) -> bool:
    deadline = time.monotonic() + 20
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pid_alive(pid)


def test_server_dropped_from_the_plan_is_retired(deployer, demo_repo, tmp_path):
    deployer.apply(make_plan(tmp_path / "p1", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4},
                                                          {"name": "b", "model": "mlp", "batch": 2, "cpus": [1]}]))
    before = load_state(deployer.state_path).servers
    report = deployer.apply(make_plan(tmp_path / "p2", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}]))
    assert {a["server"]: a["action"] for a in report["actions"]} == {"a": "keep", "b": "retire"}
    after = load_state(deployer.state_path).servers
    assert set(after) == {"a"} and after["a"].pid == before["a"].pid
    assert dead(before["b"].pid), "a retired server is stopped"
    assert not Path(before["b"].repo).exists(), "its deployed repository copy is removed"
    assert answers(deployer.state_path, "a", "tinynet")


def test_verify_catches_a_server_reconfigured_or_unloaded_behind_apply(deployer, demo_repo, tmp_path):
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    deployer.apply(plan)
    state_before = deployer.state_path.read_text()
    with client_of(deployer.state_path, "a") as c:          # someone else changes the live config
        other = c.config("tinynet")
        set_dynamic_batching(other, [2], 100)
        c.load("tinynet", other)
    with pytest.raises(UserError, match="runs .*the plan says"):
        deployer.apply(plan)                                 # the diff says "keep": only verification sees it
    assert deployer.state_path.read_text() == state_before
    with client_of(deployer.state_path, "a") as c:          # ... or unloads the model
        c.unload("tinynet")
    with pytest.raises(UserError, match="not READY"):
        deployer.apply(plan)
    assert deployer.state_path.read_text() == state_before
    result = CliRunner().invoke(cli, ["status", "--state", str(deployer.state_path), "--json"])
    assert result.exit_code == 1
    row = json.loads(result.output)["servers"][0]
    assert row["status"] == "degraded" and pid_alive(row["pid"]), "alive but not serving is degraded, not down"


def test_failed_apply_rolls_back_start_reshare_and_restart(deployer, demo_repo, tmp_path):
    deployer.apply(make_plan(tmp_path / "p1", demo_repo, [
        {"name": "keep", "model": "tinynet", "batch": 4, "share": 50, "cpus": [0]},
        {"name": "dies", "model": "mlp", "batch": 2, "share": 50, "cpus": [1]}]))
    old = load_state(deployer.state_path).servers
    os.kill(old["dies"].pid, signal.SIGKILL)
    assert dead(old["dies"].pid)
    state_before = deployer.state_path.read_text()
    started = []
    deployer.progress = lambda m: started.append(m)
    broken = make_plan(tmp_path / "p2", demo_repo, [
        {"name": "keep", "model": "tinynet", "batch": 4, "share": 100, "cpus": [0, 1]},    # reshare
        {"name": "dies", "model": "mlp", "batch": 2, "share": 50, "cpus": [1]},           # restart
        {"name": "new", "model": "convnet", "batch": 2, "cpus": [1]},                     # start
        {"name": "zz-broken", "model": "tinynet", "batch": 4, "cpus": [1], "break_config": True}])
    with pytest.raises(UserError, match="rolled back"):
        deployer.apply(broken)
    actions = [m.split()[0] for m in started if not m.startswith(("rolling", "retire"))]
    assert actions == ["reshare", "restart", "start", "start"]
    assert deployer.state_path.read_text() == state_before, "the state still describes what runs"
    assert pid_alive(old["keep"].pid) and answers(deployer.state_path, "keep", "tinynet"), \
        "the old server of a reshare keeps serving"
    servers_dir = deployer.state_path.parent / "servers"
    assert sorted(p.name.split("-")[0] for p in servers_dir.iterdir()
                  if p.name != "logs" and not p.name.startswith(".")) == ["dies", "keep"], \
        "repositories copied for the new processes are removed (only the two from the first apply remain)"
    assert not [s for s in deployer.local.values() if s.alive() and s.endpoints.pid != old["keep"].pid
                and s.endpoints.pid != old["dies"].pid], "every process started by the failed apply is stopped"


@pytest.fixture()
def remote_servers(demo_repo, tmp_path):
    """Two tritonservers started here, standing in for servers igniter did not start (--server-map)."""
    servers = []
    for name in ("r1", "r2"):
        log = tmp_path / f"{name}.log"
        servers.append(LocalServer(ServerOptions(repo=demo_repo, models=["tinynet", "mlp"], log_path=log)))
    for s in servers:
        s.start()
    yield servers
    for s in servers:
        s.stop()


def _address(server: LocalServer) -> str:
    e = server.endpoints
    return f"http={e.http},grpc={e.grpc},metrics={e.metrics}"


def _running(server: LocalServer, model: str) -> dict:
    with TritonClient.connect(server) as c:
        return driven_fields(c.config(model))


def test_remote_apply_through_a_server_map_then_rollback_and_a_failing_undo(remote_servers, demo_repo, tmp_path,
                                                                           request):
    r1, r2 = remote_servers
    server_map = tmp_path / "servers.yaml"
    server_map.write_text(f"w-tiny: '{_address(r1)}'\nw-mlp: '{_address(r2)}'\n")
    state = tmp_path / "state" / "state.json"
    # the CLI's apply is detached: its front door outlives the command, so `down` it whatever the test's outcome
    request.addfinalizer(lambda: CliRunner().invoke(cli, ["down", "--state", str(state)]))
    plan = make_plan(tmp_path / "p1", demo_repo, [{"name": "w-tiny", "model": "tinynet", "batch": 8, "delay_us": 700},
                                                  {"name": "w-mlp", "model": "mlp", "batch": 2, "delay_us": 300}])
    result = CliRunner().invoke(cli, ["apply", str(plan), "--server-map", str(server_map), "--state", str(state),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert _running(r1, "tinynet")["preferred_batch_size"] == [8] and _running(r1, "tinynet")["max_queue_delay_us"] == 700
    assert _running(r2, "mlp")["preferred_batch_size"] == [2]
    recorded = load_state(state).servers
    assert recorded["w-tiny"].pid is None and recorded["w-tiny"].grpc == r1.endpoints.grpc
    assert CliRunner().invoke(cli, ["status", "--state", str(state), "--json"]).exit_code == 0

    # a broken second server: the first one's new config is undone on the remote server
    broken = make_plan(tmp_path / "p2", demo_repo, [
        {"name": "w-tiny", "model": "tinynet", "batch": 4},
        {"name": "w-mlp", "model": "mlp", "batch": 2, "break_config": True}])
    deployer = Deployer(state, {"w-tiny": _address(r1), "w-mlp": _address(r2)}, detached=False)
    with pytest.raises(UserError, match="rolled back"):
        deployer.apply(broken)
    assert _running(r1, "tinynet")["preferred_batch_size"] == [8], "remote config restored"

    # the same failure, but the first remote server goes away before the rollback: its undo fails and is reported
    messages = []

    def progress(message: str) -> None:
        messages.append(message)
        if message.split(":")[0].split()[-1] == "w-mlp":   # "<action> w-mlp: ...": w-tiny is done by then
            r1.stop()

    deployer = Deployer(state, {"w-tiny": _address(r1), "w-mlp": _address(r2)}, detached=False, progress=progress)
    with pytest.raises(UserError) as raised:
        deployer.apply(broken)
    assert any(m.startswith("rollback step failed") for m in messages), messages
    assert "not rolled back completely" in str(raised.value) and "'w-tiny'" in str(raised.value), str(raised.value)
