"""The deployment's MPS daemon, with fakes at the edge (no GPU here)."""

import subprocess
from pathlib import Path

import pytest

from igniter.backends.mps import MpsGpu
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
    gpu = MpsGpu(run, lambda name: f"/usr/bin/{name}")
    env = gpu.start_daemon(tmp_path)
    # the pipe and log directories under the given base (servers outlive apply: not a temp dir)
    assert env == {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(tmp_path / "log")}
    assert run.calls == [(["/usr/bin/nvidia-cuda-mps-control", "-d"], None)]
    assert (tmp_path / "pipe" / "control").exists() and gpu.daemon_running(tmp_path)
    gpu.start_daemon(tmp_path)
    assert len(run.calls) == 1, "a running daemon is reused"
    gpu.stop_daemon(tmp_path)
    assert run.calls[-1] == (["/usr/bin/nvidia-cuda-mps-control"], "quit\n")
    assert not (tmp_path / "pipe" / "control").exists() and not gpu.daemon_running(tmp_path)
    gpu.stop_daemon(tmp_path)
    assert len(run.calls) == 2, "no quit sent to a daemon that is not running"


def test_missing_mps_control_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="To fix"):
        MpsGpu(FakeMpsControl(), lambda name: None).start_daemon(tmp_path)
