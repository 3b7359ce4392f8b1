"""The deployment's MPS daemon, with fakes at the edge (no GPU here)."""

import subprocess
from pathlib import Path

import pytest

from igniter.deployment.mps import daemon_running, ensure_mps_daemon, stop_mps_daemon
from igniter.errors import UserError


class FakeMpsControl:
    """Stands in for nvidia-cuda-mps-control: `-d` creates the control pipe, `quit` removes it."""

    def __init__(self):
        self.calls = []

    def __call__(self, cmd, env, input=None, **kwargs):
        self.calls.append((cmd, input))
        control = Path(env["CUDA_MPS_PIPE_DIRECTORY"]) / "control"
        if cmd[-1] == "-d":
            control.touch()
        elif input == "quit\n":
            control.unlink()
        return subprocess.CompletedProcess(cmd, 0, "", "")


def test_daemon_started_once_and_stopped(tmp_path):
    run = FakeMpsControl()
    which = lambda name: f"/usr/bin/{name}"  # noqa: E731
    env = ensure_mps_daemon(tmp_path, run, which)
    # fixed directories beside the state (servers outlive apply, so the daemon's pipes cannot be in a temp dir)
    assert env == {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "mps" / "pipe"),
                   "CUDA_MPS_LOG_DIRECTORY": str(tmp_path / "mps" / "log")}
    assert run.calls == [(["/usr/bin/nvidia-cuda-mps-control", "-d"], None)]
    assert (tmp_path / "mps" / "pipe" / "control").exists() and daemon_running(tmp_path)
    ensure_mps_daemon(tmp_path, run, which)
    assert len(run.calls) == 1, "a running daemon is reused"
    stop_mps_daemon(tmp_path, run, which)
    assert run.calls[-1] == (["/usr/bin/nvidia-cuda-mps-control"], "quit\n")
    assert not (tmp_path / "mps" / "pipe" / "control").exists() and not daemon_running(tmp_path)
    stop_mps_daemon(tmp_path, run, which)
    assert len(run.calls) == 2, "no quit sent to a daemon that is not running"


def test_missing_mps_control_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="To fix"):
        ensure_mps_daemon(tmp_path, FakeMpsControl(), lambda name: None)
