"""hardware.json auto-detection: the GPU through pynvml (name, SM count, max SM clock, power limit, memory) or the CPU
host from /proc (model name, cores usable by this process, memory)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

PROC = Path("/proc")

# CUDA cores per SM by NVML architecture id (nvmlDeviceGetArchitecture): NVML gives cores, not SMs.
_CORES_PER_SM = {2: 192, 3: 128, 4: 128, 5: 64, 6: 64, 7: 64, 8: 128, 9: 128}  # kepler..hopper, ada=8 hopper=9
_SM_COUNT_BY_NAME = {"V100": 80, "A100": 108, "A30": 56, "H100 PCIe": 114, "H100": 132, "H200": 132, "T4": 40,
                     "A10": 72, "L4": 58, "L40S": 142, "P100": 56}


def cpu_hardware(proc: Path = PROC) -> dict:
    name = platform.processor() or platform.machine()
    try:
        for line in (proc / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_mb = None
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
                break
    except OSError:
        pass
    return {"kind": "cpu", "name": name, "cores": cpu_count(), "memory_mb": memory_mb, "source": "measured"}


def cpu_count() -> int:
    """Cores this process may run on (its affinity), which is what a CPU share is a percentage of."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def load_pynvml():
    """The pynvml module, initialised; raises RuntimeError when there is no NVIDIA driver."""
    import pynvml  # noqa: PLC0415

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        raise RuntimeError(f"NVML unavailable: {err}") from err
    return pynvml


def gpu_hardware(nvml, index: int = 0) -> dict:
    """Describe GPU ``index`` through an initialised pynvml module (tests pass a fake)."""
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    name = _text(nvml.nvmlDeviceGetName(h))
    out = {"kind": "gpu", "name": name, "sm_count": _sm_count(nvml, h, name),
           "max_clock_mhz": _try(lambda: int(nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM))),
           "tdp_w": _try(lambda: nvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0),
           "memory_mb": _try(lambda: int(nvml.nvmlDeviceGetMemoryInfo(h).total // 2**20)),
           "gpu_index": index, "source": "measured"}
    out["driver"] = _try(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
    out["host_cpu"] = cpu_hardware()["name"]
    return out


def _sm_count(nvml, handle, name: str) -> int | None:
    cores = _try(lambda: int(nvml.nvmlDeviceGetNumGpuCores(handle)))
    arch = _try(lambda: int(nvml.nvmlDeviceGetArchitecture(handle)))
    if cores and arch in _CORES_PER_SM:
        per_sm = 64 if ("A100" in name or "A30" in name) else _CORES_PER_SM[arch]  # GA100 has 64/SM
        return cores // per_sm
    for key in sorted(_SM_COUNT_BY_NAME, key=len, reverse=True):
        if key in name:
            return _SM_COUNT_BY_NAME[key]
    return None


def _try(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - an unsupported NVML query leaves the field unknown
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
