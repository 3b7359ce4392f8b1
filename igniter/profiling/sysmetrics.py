"""System metrics sampled during a measurement: host CPU utilisation and server memory (CPU hosts, from /proc, no
psutil), GPU SM clock / power / utilisation / memory through pynvml (GPU hosts, a sampling thread).

A sampler is used as ``sampler.start(); ...; figures = sampler.stop()``; figures use the profile store's column names
(cpu_util_pct, memory_mb, sm_clock_mhz, power_w, gpu_util_pct). Absent figures are simply missing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol

from igniter.backends.hardware import PROC


class Sampler(Protocol):
    def start(self) -> None: ...

    def stop(self) -> dict: ...


def read_cpu_times(proc: Path = PROC) -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat (iowait counts as idle)."""
    with open(proc / "stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    fields += [0.0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]  # guest is already inside user
    idle_all = idle + iowait
    total = user + nice + system + idle_all + irq + softirq + steal
    return total - idle_all, total


def group_processes(pgid: int, proc: Path = PROC) -> Iterator[tuple[int, str, list[str]]]:
    """(pid, name, the stat fields after the name) of each live process in process group ``pgid``, from
    /proc/<pid>/stat (a name may itself hold ')': the fields start after the last one)."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        rest = stat[stat.rfind(")") + 1:].split()
        if len(rest) > 2 and rest[2] == str(pgid):  # state, ppid, pgrp, ...
            yield int(entry.name), stat[stat.find("(") + 1:stat.rfind(")")], rest


def group_rss_mb(pgid: int, proc: Path = PROC) -> float:
    """Resident memory (MB) of every process in process group ``pgid`` (a server and its backend stubs)."""
    total_kb = 0
    for pid, _, _ in group_processes(pgid, proc):
        try:
            for line in (proc / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
        except (OSError, IndexError, ValueError):
            continue
    return total_kb / 1024.0


class PeriodicSampler:
    """Calls ``sample()`` every ``period_s`` on a daemon thread; ``reduce(samples)`` makes the figures."""

    def __init__(self, sample: Callable[[], dict], reduce: Callable[[list[dict]], dict], period_s: float = 0.2):
        self._sample, self._reduce, self.period_s = sample, reduce, period_s
        self._samples: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._samples, self._stop = [], threading.Event()
        self._take()
        self._thread = threading.Thread(target=self._loop, name="igniter-sampler", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        try:
            self._samples.append(self._sample())
        except Exception:  # noqa: BLE001 - a lost sample must not break a measurement
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._take()

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._take()
        return self._reduce(self._samples) if self._samples else {}


class CpuSampler:
    """Host CPU utilisation (% of all cores busy) over the window, and peak RSS of the given server process groups."""

    def __init__(self, pgids: list[int] | None = None, proc: Path = PROC, period_s: float = 0.25):
        self.pgids = [p for p in (pgids or []) if p]
        self.proc = proc
        self._begin: tuple[float, float] | None = None
        self._rss = PeriodicSampler(self._sample_rss, self._peak, period_s) if self.pgids else None

    def _sample_rss(self) -> dict:
        return {pgid: group_rss_mb(pgid, self.proc) for pgid in self.pgids}

    @staticmethod
    def _peak(samples: list[dict]) -> dict:
        return {pgid: max(s.get(pgid, 0.0) for s in samples) for pgid in samples[0]}

    def start(self) -> None:
        self._begin = read_cpu_times(self.proc)
        if self._rss:
            self._rss.start()

    def stop(self) -> dict:
        busy1, total1 = read_cpu_times(self.proc)
        busy0, total0 = self._begin or (busy1, total1)
        out: dict = {}
        if total1 > total0:
            out["cpu_util_pct"] = 100.0 * (busy1 - busy0) / (total1 - total0)
        if self._rss:
            out["memory_mb_by_pgid"] = self._rss.stop()
        return out


class NvmlSampler:
    """SM clock (MHz), power (W), GPU utilisation (%) and memory used (MB) of one GPU, sampled on a thread."""

    def __init__(self, nvml, index: int = 0, period_s: float = 0.1):
        self.nvml = nvml
        self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
        self._sampler = PeriodicSampler(self._sample, self._reduce, period_s)

    def _sample(self) -> dict:
        nv, h = self.nvml, self.handle
        return {
            "sm_clock_mhz": float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            "power_w": nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "gpu_util_pct": float(nv.nvmlDeviceGetUtilizationRates(h).gpu),
            "memory_mb": nv.nvmlDeviceGetMemoryInfo(h).used / 2**20,
        }

    @staticmethod
    def _reduce(samples: list[dict]) -> dict:
        keys = samples[0].keys()
        out = {k: sum(s[k] for s in samples) / len(samples) for k in keys}
        out["memory_mb"] = max(s["memory_mb"] for s in samples)  # peak, not mean
        out["nvml_samples"] = len(samples)
        return out

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> dict:
        return self._sampler.stop()


class CombinedSampler:
    def __init__(self, *samplers: Sampler):
        self.samplers = samplers

    def start(self) -> None:
        for s in self.samplers:
            s.start()

    def stop(self) -> dict:
        out: dict = {}
        for s in self.samplers:
            out.update(s.stop())
        return out


def monotonic() -> float:
    return time.monotonic()
