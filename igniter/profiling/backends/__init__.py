"""Profiling backends: a workload at its share while it is measured, plus the samplers that watch it.

How a server gets its share (launch env, pinned cores, thread caps, MPS daemon, hardware description) is
igniter.backends' (the same for profiled, planned and deployed servers); this adds what only profiling needs:
- ``cpu``   (backends.cpu):  one local Triton per workload, igniter.backends.cpu's launch, /proc sampler;
- ``mps``   (backends.mps):  one local Triton per workload under a private MPS daemon, NVML sampler, ncu pass;
- ``remote``(backends.remote): a running server (--server URL); shares cannot be enforced, so only 100 %.

Usage::

    with get_backend("auto") as backend:
        hw = backend.describe_hardware()
        with backend.start_workload(repo, "convnet", share=50, batch=4) as ctx:
            ctx.endpoints.grpc ...
        sampler = backend.sampler([ctx, ...]); sampler.start(); ...; figures = sampler.stop()
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager, Protocol

from igniter import backends
from igniter.backends.hardware import load_pynvml
from igniter.errors import UserError
from igniter.profiling.sysmetrics import Sampler
from igniter.triton.server import Endpoints, LocalServer

BACKENDS = ("auto", *sorted(backends.BACKENDS))   # the CLI's --backend choices


@dataclass
class WorkloadContext:
    """A running workload: where to send its requests and what share it got."""

    model: str
    share: float
    endpoints: Endpoints
    batch: int | None = None
    server: LocalServer | None = None
    info: dict = field(default_factory=dict)  # backend specifics: cpus, threads, env

    @property
    def pgid(self) -> int | None:
        """Process group of a local server (server + backend stubs), for per-workload memory."""
        return self.server.process.pid if self.server is not None and self.server.process is not None else None


class ResourceBackend(Protocol):
    kind: str  # "cpu" | "gpu" (hardware.json's kind)
    name: str  # "cpu" | "mps" | "remote"
    exclusive_shares: bool  # co-located shares add up to at most 100 % (igniter.backends)

    def __enter__(self) -> "ResourceBackend": ...

    def __exit__(self, *exc) -> None: ...

    def describe_hardware(self) -> dict: ...

    def start_workload(self, repo: Path, model: str, share: float, batch: int | None = None) -> ContextManager[WorkloadContext]: ...

    def sampler(self, contexts: list[WorkloadContext]) -> Sampler: ...

    def per_workload(self, figures: dict, ctx: WorkloadContext) -> dict: ...

    def check_shares(self, shares: list[float]) -> None: ...

    def kernel_metrics(self, repo: Path, model: str, batch: int) -> dict: ...


def gpu_available() -> bool:
    try:
        nvml = load_pynvml()
        return nvml.nvmlDeviceGetCount() > 0
    except Exception:  # noqa: BLE001 - no driver, no GPU
        return False


def get_backend(name: str = "auto", server_url: str | None = None, **kwargs) -> ResourceBackend:
    if server_url:
        from igniter.profiling.backends.remote import RemoteBackend  # noqa: PLC0415

        return RemoteBackend(server_url, gpu=(name == "mps") or (name == "auto" and gpu_available()))
    if name == "auto":
        name = backends.DEFAULT_FOR_KIND["gpu" if gpu_available() else "cpu"]
    profilers = _profilers()
    if name not in profilers:
        raise UserError(f"unknown resource backend {name!r}", f"use one of {', '.join(BACKENDS)}")
    return profilers[name](**kwargs)


def _profilers() -> dict:
    """Profiling backend class per igniter.backends name (imported on use: the MPS one pulls in NVML helpers)."""
    from igniter.profiling.backends.cpu import CpuBackend  # noqa: PLC0415
    from igniter.profiling.backends.mps import MpsBackend  # noqa: PLC0415

    return {b.name: b for b in (CpuBackend, MpsBackend)}


@contextlib.contextmanager
def loaded_server(options, model: str, config=None, connect_timeout_s: float = 30.0):
    """Start a LocalServer with no models, load ``model`` with a config override, yield the server."""
    from igniter.triton.client import TritonClient  # noqa: PLC0415

    with LocalServer(options) as server:
        with TritonClient.connect(server, timeout_s=connect_timeout_s) as client:  # closed before the server stops
            client.load(model, config)
        yield server
