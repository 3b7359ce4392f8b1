"""CPU profiling backend: one Triton process per co-located workload, launched exactly as igniter.backends.cpu
launches a planned server at the same share (pinned cores, thread caps, the model's ``threads`` parameter)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from igniter.backends import Launch
from igniter.backends.cpu import BACKEND as CPU
from igniter.profiling.backends import WorkloadContext, loaded_server
from igniter.profiling.sysmetrics import CpuSampler
from igniter.triton.config import read_config
from igniter.triton.server import ServerOptions


class CpuBackend:
    kind = CPU.kind
    name = CPU.name
    resources = CPU
    exclusive_shares = CPU.exclusive_shares

    def __init__(self, cpus: list[int] | None = None, log_dir: Path | None = None):
        import os  # noqa: PLC0415

        self.cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        self.log_dir = log_dir
        self._cursor = 0
        self._active = 0

    def __enter__(self) -> "CpuBackend":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def describe_hardware(self) -> dict:
        return {**CPU.describe_hardware(), "cores": len(self.cpus)}

    def check_shares(self, shares: list[float]) -> None:
        for share in shares:
            CPU.check_share(share)

    def allocate(self, share: float) -> Launch:
        """The next block of cores for a workload (wrapping: co-located shares may overlap)."""
        if self._active == 0:
            self._cursor = 0
        launch = CPU.launch(share, self.cpus, self._cursor)
        self._cursor = (self._cursor + len(launch.cpus)) % len(self.cpus)
        return launch

    def options(self, repo: Path, model: str, share: float, launch: Launch) -> ServerOptions:
        log = (self.log_dir / f"{model}-s{share:g}-c{'_'.join(map(str, launch.cpus))}.log") if self.log_dir else None
        return ServerOptions(repo=Path(repo), models=[], env=dict(launch.env), cpus=launch.cpus, log_path=log,
                             gpu=False)

    @staticmethod
    def model_config(repo: Path, model: str, launch: Launch):
        return CPU.configure_model(read_config(Path(repo) / model / "config.pbtxt"), 1, launch)

    @contextlib.contextmanager
    def start_workload(self, repo: Path, model: str, share: float, batch: int | None = None):
        launch = self.allocate(share)
        self._active += 1
        try:
            with loaded_server(self.options(repo, model, share, launch), model,
                               self.model_config(repo, model, launch)) as server:
                yield WorkloadContext(model=model, share=share, endpoints=server.endpoints, batch=batch, server=server,
                                      info={"cpus": launch.cpus, "threads": launch.threads})
        finally:
            self._active -= 1

    def kernel_metrics(self, repo: Path, model: str, batch: int) -> dict:
        return {}   # no per-kernel counters on a CPU host

    def sampler(self, contexts: list[WorkloadContext]) -> CpuSampler:
        return CpuSampler([c.pgid for c in contexts])

    def per_workload(self, figures: dict, ctx: WorkloadContext) -> dict:
        """Host-wide figures plus this workload's own server memory (RSS of its process group)."""
        out = {k: v for k, v in figures.items() if k != "memory_mb_by_pgid"}
        by_pgid = figures.get("memory_mb_by_pgid") or {}
        if ctx.pgid in by_pgid:
            out["memory_mb"] = by_pgid[ctx.pgid]
        return out
