"""CPU host: a server with share s of a host with C usable cores gets k = max(1, round(s/100 * C)) whole cores,
pinned (its python-backend stubs inherit the affinity), with every threading runtime capped at k threads (OpenMP,
OpenBLAS, MKL) and the model's ``threads`` config parameter (the demo models' onnxruntime intra-op threads) set to
k. Co-located servers take consecutive core blocks that wrap around, so shares may overlap (50+50 on 2 cores: one
core each; 100+50: the second shares a core with the first): on a CPU host overlap is how interference is created
and measured. The share grid is whole cores, so a planned share is what runs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from igniter.backends import Launch, check_percentage, share_grid
from igniter.backends.hardware import cpu_count, cpu_hardware
from igniter.triton.config import ModelConfig, set_instance_group, set_parameter

THREADS_PARAMETER = "threads"
THREAD_CAPS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cores_for_share(share: float, cores: int) -> int:
    check_percentage(share)
    return max(1, min(cores, int(round(share / 100.0 * cores))))


def host_cores(hardware: dict) -> int:
    """Cores of a CPU host: hardware.json's "cores", else those usable here (counted as the profiler does)."""
    return int((hardware or {}).get("cores") or cpu_count())


class CpuHost:
    name = "cpu"
    kind = "cpu"
    gpu = False
    exclusive_shares = False   # overlapping core blocks are how co-location interferes on a CPU host

    def share_grid(self, hardware: dict) -> np.ndarray:
        return share_grid(100.0 / host_cores(hardware))

    def lowest_usable_share(self, lowest_profiled: float, hardware: dict) -> float:
        """Measured whole-core points only: below them the fitted surface is pure extrapolation."""
        return lowest_profiled

    def check_share(self, share: float) -> None:
        check_percentage(share)

    def host_cpus(self, hardware: dict) -> list[int]:
        """The cores a plan for this host numbers its pins from."""
        return list(range(host_cores(hardware)))

    def launch(self, share: float, host_cpus: Sequence[int], first: int = 0) -> Launch:
        """The k cores from position ``first`` of ``host_cpus`` (wrapping) and thread caps of k."""
        host_cpus = list(host_cpus)
        k = cores_for_share(share, len(host_cpus))
        cpus = sorted(host_cpus[(first + i) % len(host_cpus)] for i in range(k))
        return Launch(env={name: str(k) for name in THREAD_CAPS}, cpus=cpus, threads=k)

    def configure_model(self, cfg: ModelConfig, instances: int, launch: Launch) -> ModelConfig:
        set_instance_group(cfg, instances, "KIND_CPU")
        if THREADS_PARAMETER in cfg.parameters and launch.threads:
            set_parameter(cfg, THREADS_PARAMETER, launch.threads)
        return cfg

    def start_daemon(self, base: Path) -> dict[str, str]:
        return {}

    def stop_daemon(self, base: Path) -> None:
        pass

    def describe_hardware(self) -> dict:
        return {**cpu_hardware(), "backend": self.name}


BACKEND = CpuHost()
