"""A running server (``--server URL``): models are loaded there if needed; shares cannot be enforced, so only 100 %
is allowed; co-located runs put both models on that one server."""

from __future__ import annotations

import contextlib
from pathlib import Path

from igniter.errors import UserError
from igniter.profiling.backends import WorkloadContext
from igniter.backends.hardware import cpu_hardware, gpu_hardware, load_pynvml
from igniter.profiling.sysmetrics import CombinedSampler, CpuSampler, NvmlSampler
from igniter.triton.client import TritonClient
from igniter.triton.server import Endpoints


class RemoteBackend:
    name = "remote"

    def __init__(self, url: str, gpu: bool = False, connect_timeout_s: float = 3.0):
        self.url = url
        self.endpoints = Endpoints.from_url(url)
        self.kind = "gpu" if gpu else "cpu"
        self.exclusive_shares = gpu   # pair designs as on the local backend of the same kind
        self.connect_timeout_s = connect_timeout_s

    def __enter__(self) -> "RemoteBackend":
        with TritonClient.connect(self.endpoints, timeout_s=self.connect_timeout_s):
            pass
        return self

    def __exit__(self, *exc) -> None:
        pass

    def describe_hardware(self) -> dict:
        hw = gpu_hardware(load_pynvml()) if self.kind == "gpu" else cpu_hardware()
        hw["server"] = self.url
        hw["note"] = "hardware of the profiling host; the server is remote"
        return hw

    def check_shares(self, shares: list[float]) -> None:
        if any(s != 100 for s in shares):
            raise UserError("shares cannot be enforced on a running server (--server)",
                            "profile with --shares 100, or drop --server to let igniter start servers with shares")

    @contextlib.contextmanager
    def start_workload(self, repo: Path, model: str, share: float, batch: int | None = None):
        with TritonClient.connect(self.endpoints, timeout_s=self.connect_timeout_s) as client:
            if not client.is_ready(model):
                client.load(model)
        yield WorkloadContext(model=model, share=share, endpoints=self.endpoints, batch=batch, info={"remote": self.url})

    def kernel_metrics(self, repo: Path, model: str, batch: int) -> dict:
        return {}   # ncu observes only processes it launches; a remote server is not one

    def sampler(self, contexts):
        return CombinedSampler(NvmlSampler(load_pynvml())) if self.kind == "gpu" else CpuSampler()

    def per_workload(self, figures: dict, ctx: WorkloadContext) -> dict:
        return {k: v for k, v in figures.items() if k not in ("nvml_samples", "memory_mb_by_pgid")}
