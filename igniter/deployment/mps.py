"""The CUDA MPS control daemon behind an applied GPU plan.

CUDA_MPS_ACTIVE_THREAD_PERCENTAGE only limits a server that runs under an MPS daemon. Applied servers outlive
`igniter apply`, so the daemon does too: its pipe and log directories sit at a fixed place beside the deployment
state (not a temp dir), every server of the deployment gets them in its environment, and `igniter down` quits it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from igniter.profiling.backends.mps import MPS_CONTROL, mps_dirs_env, quit_mps_daemon, start_mps_daemon

SHARE_ENV = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"


def mps_env(state_dir: Path) -> dict[str, str]:
    return mps_dirs_env(state_dir / "mps")


def daemon_running(state_dir: Path) -> bool:
    return (Path(mps_env(state_dir)["CUDA_MPS_PIPE_DIRECTORY"]) / "control").exists()


def ensure_mps_daemon(state_dir: Path, run=subprocess.run, which=shutil.which) -> dict[str, str]:
    """Start the deployment's MPS daemon unless it already runs; returns the environment its clients need."""
    env = mps_env(state_dir)
    if not daemon_running(state_dir):
        start_mps_daemon(env, (f"the plan sets MPS shares but {MPS_CONTROL} is not on PATH",
                               "run apply on the GPU host with the NVIDIA driver utilities installed"), run, which)
    return env


def stop_mps_daemon(state_dir: Path, run=subprocess.run, which=shutil.which) -> None:
    if daemon_running(state_dir):
        quit_mps_daemon(mps_env(state_dir), run, which)
