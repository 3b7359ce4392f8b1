"""The deployment's MPS daemon, with fakes at the edge (no GPU here)."""

import subprocess
from pathlib import Path

import pytest

from igniter.backends.mps import MpsGpu, mps_dirs_env
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
    assert env == mps_dirs_env(tmp_path) and gpu.daemon_running(tmp_path)
    gpu.start_daemon(tmp_path)
    assert len(run.calls) == 1, "a running daemon is reused"
    gpu.stop_daemon(tmp_path)
    assert not gpu.daemon_running(tmp_path) and run.calls[-1][1] == "quit\n"


def test_missing_mps_control_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="To fix"):
        MpsGpu(FakeMpsControl(), lambda name: None).start_daemon(tmp_path)
