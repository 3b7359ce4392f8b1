"""GPU under NVIDIA MPS: a server's share is CUDA_MPS_ACTIVE_THREAD_PERCENTAGE (its fraction of the SMs), which
only holds under an MPS control daemon; models run as KIND_GPU instances on device 0 of CUDA_VISIBLE_DEVICES.

The daemon (``nvidia-cuda-mps-control -d``) runs with CUDA_MPS_PIPE_DIRECTORY / CUDA_MPS_LOG_DIRECTORY under a
directory its owner chooses (the profiler: a private temp dir; a deployment: beside its state file, because
applied servers outlive `igniter apply`), and is stopped with ``quit`` on its stdin (no shell). Its clients get
the same two variables. subprocess.run and shutil.which are injectable, so this imports and is tested without a GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np

from igniter.backends import Launch, check_percentage, share_grid
from igniter.backends.hardware import gpu_hardware, load_pynvml
from igniter.errors import UserError
from igniter.triton.config import ModelConfig, set_instance_group

MPS_CONTROL = "nvidia-cuda-mps-control"
SHARE_ENV = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
SHARE_STEP = 2.5      # share grid (%): the MPS granularity iGniter uses


def mps_dirs_env(base: Path) -> dict[str, str]:
    """The environment that points an MPS daemon and its clients at the pipe/log directories under ``base``."""
    return {"CUDA_MPS_PIPE_DIRECTORY": str(base / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(base / "log")}


def start_mps_daemon(env: dict[str, str], missing: tuple[str, str], run=subprocess.run, which=shutil.which) -> None:
    """``nvidia-cuda-mps-control -d`` in ``env``'s directories (created); UserError ``missing`` (problem, fix) when
    the binary is absent, another when the daemon fails to start."""
    binary = which(MPS_CONTROL)
    if binary is None:
        raise UserError(*missing)
    for directory in env.values():
        Path(directory).mkdir(parents=True, exist_ok=True)
    result = run([binary, "-d"], env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise UserError(f"the MPS control daemon did not start: {(result.stderr or result.stdout).strip()}",
                        "check that no other MPS daemon owns the GPU and that the GPU is in DEFAULT compute mode")


def quit_mps_daemon(env: dict[str, str], run=subprocess.run, which=shutil.which) -> None:
    run([which(MPS_CONTROL) or MPS_CONTROL], input="quit\n", env={**os.environ, **env}, capture_output=True,
        text=True, timeout=30)


class MpsGpu:
    name = "mps"
    kind = "gpu"
    gpu = True
    exclusive_shares = True    # MPS thread percentages of co-located servers add up to at most 100

    def __init__(self, run=subprocess.run, which=shutil.which):
        self.run, self.which = run, which

    def share_grid(self, hardware: dict) -> np.ndarray:
        return share_grid(SHARE_STEP)

    def lowest_usable_share(self, lowest_profiled: float, hardware: dict) -> float:
        """One grid step below the profiled range: the MPS surface is smooth in the share, one step of
        extrapolation is a small error, more is a guess."""
        return lowest_profiled - SHARE_STEP

    def check_share(self, share: float) -> None:
        check_percentage(share)

    def host_cpus(self, hardware: dict) -> list[int]:
        return []   # GPU servers are not pinned

    def launch(self, share: float, host_cpus: Sequence[int] = (), first: int = 0) -> Launch:
        check_percentage(share)
        return Launch(env={SHARE_ENV: f"{share:g}"})

    def configure_model(self, cfg: ModelConfig, instances: int, launch: Launch) -> ModelConfig:
        return set_instance_group(cfg, instances, "KIND_GPU", gpus=[0])  # device 0 of CUDA_VISIBLE_DEVICES

    # -- the daemon beside a deployment (or a profiler's temp dir) ----------------------------------------------
    def daemon_running(self, base: Path) -> bool:
        return (Path(mps_dirs_env(base)["CUDA_MPS_PIPE_DIRECTORY"]) / "control").exists()

    def start_daemon(self, base: Path) -> dict[str, str]:
        """Start the MPS daemon under ``base`` unless it already runs; returns the environment its clients need."""
        env = mps_dirs_env(base)
        if not self.daemon_running(base):
            start_mps_daemon(env, (f"MPS shares need {MPS_CONTROL}, which is not on PATH",
                                   "run on the GPU host with the NVIDIA driver utilities installed, or use the cpu "
                                   "backend"), self.run, self.which)
        return env

    def stop_daemon(self, base: Path) -> None:
        if self.daemon_running(base):
            quit_mps_daemon(mps_dirs_env(base), self.run, self.which)

    def describe_hardware(self, index: int = 0, nvml=None) -> dict:
        try:
            nvml = nvml or load_pynvml()
        except RuntimeError as err:
            raise UserError(f"no usable NVIDIA GPU: {err}", "use the cpu backend on hosts without a GPU") from err
        return {**gpu_hardware(nvml, index), "backend": self.name}


BACKEND = MpsGpu()
