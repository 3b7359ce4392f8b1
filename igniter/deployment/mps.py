"""The CUDA MPS control daemon behind an applied GPU plan.

CUDA_MPS_ACTIVE_THREAD_PERCENTAGE only limits a server that runs under an MPS daemon. Applied servers outlive
`igniter apply`, so the daemon does too: its pipe and log directories sit at a fixed place beside the deployment
state (not a temp dir), every server of the deployment gets them in its environment, and `igniter down` quits it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from igniter.errors import UserError

MPS_CONTROL = "nvidia-cuda-mps-control"
SHARE_ENV = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"


def mps_env(state_dir: Path) -> dict[str, str]:
    return {"CUDA_MPS_PIPE_DIRECTORY": str(state_dir / "mps" / "pipe"),
            "CUDA_MPS_LOG_DIRECTORY": str(state_dir / "mps" / "log")}


def daemon_running(state_dir: Path) -> bool:
    return (Path(mps_env(state_dir)["CUDA_MPS_PIPE_DIRECTORY"]) / "control").exists()


def ensure_mps_daemon(state_dir: Path, run=subprocess.run, which=shutil.which) -> dict[str, str]:
    """Start the deployment's MPS daemon unless it already runs; returns the environment its clients need."""
    env = mps_env(state_dir)
    if daemon_running(state_dir):
        return env
    binary = which(MPS_CONTROL)
    if binary is None:
        raise UserError(f"the plan sets MPS shares but {MPS_CONTROL} is not on PATH",
                        "run apply on the GPU host with the NVIDIA driver utilities installed")
    for directory in env.values():
        Path(directory).mkdir(parents=True, exist_ok=True)
    result = run([binary, "-d"], env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise UserError(f"the MPS control daemon did not start: {(result.stderr or result.stdout).strip()}",
                        "check that no other MPS daemon owns the GPU and that it is in DEFAULT compute mode")
    return env


def stop_mps_daemon(state_dir: Path, run=subprocess.run, which=shutil.which) -> None:
    if not daemon_running(state_dir):
        return
    binary = which(MPS_CONTROL) or MPS_CONTROL
    run([binary], input="quit\n", env={**os.environ, **mps_env(state_dir)}, capture_output=True, text=True, timeout=30)
