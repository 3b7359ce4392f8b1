"""apply/status against REAL local Triton servers: live reload without failed requests, rollback, self-healing."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from click.testing import CliRunner

from igniter.cli.main import cli
from igniter.deployment.apply import status
from igniter.deployment.state import load_state
from igniter.errors import UserError
from igniter.triton.client import TritonClient
from igniter.triton.config import driven_fields
from igniter.triton.server import Endpoints
from tests.plan_factory import make_plan

pytestmark = pytest.mark.integration


def _client(state_path, server):
    s = load_state(state_path).servers[server]
    return TritonClient(Endpoints(http=s.http, grpc=s.grpc))


class Traffic:
    """A client sending requests to one model throughout a reconfiguration, counting failures."""

    def __init__(self, client: TritonClient, model: str, batch: int):
        self.client, self.model, self.batch = client, model, batch
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        inputs = self.client.make_inputs(self.model, self.batch)
        while not self._stop.is_set():
            try:
                self.client.infer(self.model, inputs)
                self.ok += 1
            except Exception as err:  # noqa: BLE001 - every failure counts
                self.failed += 1
                self.errors.append(str(err))

    def __enter__(self):
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(10)


def test_apply_then_live_reload_without_failed_requests(deployer, demo_repo, tmp_path):
    plan = make_plan(tmp_path / "p1", demo_repo, [{"name": "s-tiny", "model": "tinynet", "batch": 4},
                                                  {"name": "s-conv", "model": "convnet", "batch": 2, "cpus": [1]}])
    report = deployer.apply(plan)
    assert {a["action"] for a in report["actions"]} == {"start"}
    pid_before = load_state(deployer.state_path).servers["s-tiny"].pid
    assert status(deployer.state_path)["healthy"]

    plan2 = make_plan(tmp_path / "p2", demo_repo, [{"name": "s-tiny", "model": "tinynet", "batch": 8, "instances": 2},
                                                   {"name": "s-conv", "model": "convnet", "batch": 2, "cpus": [1]}])
    with _client(deployer.state_path, "s-tiny") as client, Traffic(client, "tinynet", 2) as traffic:
        report = deployer.apply(plan2)
    actions = {a["server"]: a["action"] for a in report["actions"]}
    assert actions == {"s-tiny": "reload", "s-conv": "keep"}
    assert traffic.failed == 0, traffic.errors[:3]
    assert traffic.ok > 10
    state = load_state(deployer.state_path)
    assert state.servers["s-tiny"].pid == pid_before, "a config change must not restart the server"
    with _client(deployer.state_path, "s-tiny") as client:
        running = driven_fields(client.config("tinynet"))
    assert running["instances"] == 2 and running["preferred_batch_size"] == [8]


def test_broken_config_rolls_back(deployer, demo_repo, tmp_path):
    good = make_plan(tmp_path / "good", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4},
                                                    {"name": "b", "model": "convnet", "batch": 2, "cpus": [1]}])
    deployer.apply(good)
    state_before = deployer.state_path.read_text()
    broken = make_plan(tmp_path / "broken", demo_repo, [{"name": "a", "model": "tinynet", "batch": 8},
                                                        {"name": "b", "model": "convnet", "batch": 4, "cpus": [1],
                                                         "break_config": True}])
    with pytest.raises(UserError, match="rolled back"):
        deployer.apply(broken)
    assert deployer.state_path.read_text() == state_before
    with _client(deployer.state_path, "a") as client:
        assert driven_fields(client.config("tinynet"))["preferred_batch_size"] == [4], "first server's change undone"
        assert client.infer("tinynet", client.make_inputs("tinynet", 1))["OUTPUT0"].shape == (1, 16)
    with _client(deployer.state_path, "b") as client:
        assert driven_fields(client.config("convnet"))["preferred_batch_size"] == [2]
    assert status(deployer.state_path)["healthy"]


@pytest.mark.slow
def test_killed_server_is_reported_and_restored(deployer, demo_repo, tmp_path):
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    deployer.apply(plan)
    pid = load_state(deployer.state_path).servers["a"].pid
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    result = CliRunner().invoke(cli, ["status", "--state", str(deployer.state_path), "--json"])
    assert result.exit_code == 1
    assert '"status": "down"' in result.output
    report = deployer.apply(plan)
    assert report["actions"][0]["action"] == "restart"
    assert status(deployer.state_path)["healthy"]


def test_share_change_starts_new_server_then_retires_old(deployer, demo_repo, tmp_path):
    deployer.apply(make_plan(tmp_path / "p1", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4, "share": 50, "cpus": [0]}]))
    old_pid = load_state(deployer.state_path).servers["a"].pid
    report = deployer.apply(make_plan(tmp_path / "p2", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4,
                                                                      "share": 100, "cpus": [0, 1]}]))
    assert report["actions"][0]["action"] == "reshare"
    new_pid = load_state(deployer.state_path).servers["a"].pid
    assert new_pid != old_pid
    time.sleep(0.5)
    assert not os.path.exists(f"/proc/{old_pid}") or open(f"/proc/{old_pid}/stat").read().split()[2] == "Z"


def test_dry_run_changes_nothing(deployer, demo_repo, tmp_path):
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    result = CliRunner().invoke(cli, ["apply", str(plan), "--dry-run", "--state", str(deployer.state_path), "--json"])
    assert result.exit_code == 0, result.output
    assert '"action": "start"' in result.output
    assert not deployer.state_path.exists()


def test_missing_plan_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["apply", str(tmp_path / "nope.json"), "--state", str(tmp_path / "s.json")])
    assert result.exit_code == 2 and "To fix:" in result.output


class RecordingBackend:
    """The CPU backend plus a daemon that only records: what apply asks of a backend like MPS."""

    name, kind, gpu, exclusive_shares = "recording", "cpu", False, False

    def __init__(self):
        self.started, self.stopped = [], []

    def start_daemon(self, base):
        self.started.append(base)
        return {"IGNITER_TEST_DAEMON": str(base)}

    def stop_daemon(self, base):
        self.stopped.append(base)


def test_apply_starts_and_stops_the_backends_daemon(monkeypatch, deployer, demo_repo, tmp_path):
    from igniter import backends

    recording = RecordingBackend()
    monkeypatch.setitem(backends.BACKENDS, recording.name, recording)
    deployer.apply(make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4,
                                                          "backend": "recording"}]))
    daemon_dir = deployer.state_path.parent / "recording"
    assert recording.started == [daemon_dir]
    pid = load_state(deployer.state_path).servers["a"].pid
    environ = dict(item.split("=", 1) for item in open(f"/proc/{pid}/environ").read().split("\0") if "=" in item)
    assert environ["IGNITER_TEST_DAEMON"] == str(daemon_dir) and environ["OMP_NUM_THREADS"] == "1"
    deployer.stop_all()
    assert recording.stopped == [daemon_dir]
