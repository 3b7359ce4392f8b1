"""CPU backend: one Triton process per co-located workload, its share = share% of the host's cores.

A workload with share s on a host with C usable cores gets k = max(1, round(s/100 * C)) cores: the server process
(and its python-backend stubs, which inherit the affinity) is pinned to them (ServerOptions.cpus) and the model is
loaded with the config override ``parameters.threads = k`` (the demo models' onnxruntime intra-op threads) plus
OMP/OpenBLAS thread caps in the server's environment. Co-located workloads take consecutive core blocks that wrap
around, so shares may overlap (50+50 on 2 cores: one core each; 100+50: the second shares a core with the first) --
on a CPU host overlap is how interference is created and measured.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from igniter.errors import UserError
from igniter.profiling.backends import WorkloadContext, loaded_server
from igniter.profiling.hardware import cpu_hardware
from igniter.profiling.sysmetrics import CpuSampler
from igniter.triton.config import read_config, set_instance_group, set_parameter
from igniter.triton.server import ServerOptions


def cores_for_share(share: float, cores: int) -> int:
    if not 0 < share <= 100:
        raise UserError(f"share {share:g} is not a percentage in (0, 100]", "give shares like 25,50,100")
    return max(1, min(cores, int(round(share / 100.0 * cores))))


class CpuBackend:
    kind = "cpu"
    name = "cpu"

    def __init__(self, cpus: list[int] | None = None, log_dir: Path | None = None, threads_parameter: str = "threads"):
        import os  # noqa: PLC0415

        self.cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        self.log_dir = log_dir
        self.threads_parameter = threads_parameter
        self._cursor = 0
        self._active = 0

    def __enter__(self) -> "CpuBackend":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def describe_hardware(self) -> dict:
        hw = cpu_hardware()
        hw["cores"] = len(self.cpus)
        return hw

    def check_shares(self, shares: list[float]) -> None:
        for share in shares:
            cores_for_share(share, len(self.cpus))

    def allocate(self, share: float) -> list[int]:
        """The next block of cores for a workload (wrapping: co-located shares may overlap)."""
        if self._active == 0:
            self._cursor = 0
        k = cores_for_share(share, len(self.cpus))
        chosen = [self.cpus[(self._cursor + i) % len(self.cpus)] for i in range(k)]
        self._cursor = (self._cursor + k) % len(self.cpus)
        return sorted(chosen)

    def options(self, repo: Path, model: str, share: float, cpus: list[int]) -> ServerOptions:
        threads = str(len(cpus))
        log = (self.log_dir / f"{model}-s{share:g}-c{'_'.join(map(str, cpus))}.log") if self.log_dir else None
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        return ServerOptions(repo=Path(repo), models=[], env=env, cpus=cpus, log_path=log, gpu=False)

    def model_config(self, repo: Path, model: str, threads: int):
        cfg = read_config(Path(repo) / model / "config.pbtxt")
        set_instance_group(cfg, 1, "KIND_CPU")
        set_parameter(cfg, self.threads_parameter, threads)
        return cfg

    @contextlib.contextmanager
    def start_workload(self, repo: Path, model: str, share: float, batch: int | None = None):
        cpus = self.allocate(share)
        self._active += 1
        try:
            with loaded_server(self.options(repo, model, share, cpus), model,
                               self.model_config(repo, model, len(cpus))) as server:
                yield WorkloadContext(model=model, share=share, endpoints=server.endpoints, batch=batch, server=server,
                                      info={"cpus": cpus, "threads": len(cpus)})
        finally:
            self._active -= 1

    def sampler(self, contexts: list[WorkloadContext]) -> CpuSampler:
        return CpuSampler([c.pgid for c in contexts])

    def per_workload(self, figures: dict, ctx: WorkloadContext) -> dict:
        """Host-wide figures plus this workload's own server memory (RSS of its process group)."""
        out = {k: v for k, v in figures.items() if k != "memory_mb_by_pgid"}
        by_pgid = figures.get("memory_mb_by_pgid") or {}
        if ctx.pgid in by_pgid:
            out["memory_mb"] = by_pgid[ctx.pgid]
        return out
