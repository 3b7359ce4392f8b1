"""GPU backend under NVIDIA MPS: the backend starts its own MPS control daemon and one Triton per workload with
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE = share (the workload's fraction of the SMs), models loaded with KIND_GPU.

- Daemon: ``nvidia-cuda-mps-control -d`` with CUDA_MPS_PIPE_DIRECTORY / CUDA_MPS_LOG_DIRECTORY in a private temp dir,
  stopped with ``quit`` on its stdin (subprocess input=, no shell). Servers get the same two variables.
- System metrics: a pynvml thread samples SM clock, power, utilisation and memory during each measurement.
- L2 / DRAM utilisation: Nsight Compute is needed (``ncu``); it can only observe kernels of processes it launches,
  so it is not run inside a measurement (it serialises kernels and would distort latency). ``ncu_metrics`` records
  None unless ``ncu`` is on PATH and IGNITER_NCU_CMD names a command line that profiles a model
  (e.g. ``ncu --target-processes all --metrics lts__t_sectors.avg.pct_of_peak_sustained_elapsed,
  dram__throughput.avg.pct_of_peak_sustained_elapsed --csv <client>``), whose CSV it then parses.
All edges (pynvml, subprocess, shutil.which) are injectable, so this module imports and is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from igniter.errors import UserError
from igniter.profiling.backends import WorkloadContext, loaded_server
from igniter.profiling.hardware import gpu_hardware
from igniter.profiling.sysmetrics import NvmlSampler, load_pynvml
from igniter.triton.config import read_config, set_instance_group
from igniter.triton.server import ServerOptions

MPS_CONTROL = "nvidia-cuda-mps-control"
NCU_METRICS = {"lts__t_sectors.avg.pct_of_peak_sustained_elapsed": "l2_util_pct",
               "dram__throughput.avg.pct_of_peak_sustained_elapsed": "dram_util_pct"}


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


class MpsDaemon:
    """An MPS control daemon in a private pipe/log directory."""

    def __init__(self, run=subprocess.run, which=shutil.which, base_dir: Path | None = None):
        self._run, self._which = run, which
        self.base_dir = base_dir
        self.pipe_dir: Path | None = None
        self.log_dir: Path | None = None
        self.env: dict[str, str] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.running = False

    def start(self) -> None:
        missing = (f"{MPS_CONTROL} is not on PATH", "install the NVIDIA driver utilities or use --backend cpu")
        if self._which(MPS_CONTROL) is None:  # before making the temp dir
            raise UserError(*missing)
        self._tmp = tempfile.TemporaryDirectory(prefix="igniter-mps-", dir=self.base_dir)
        self.env = mps_dirs_env(Path(self._tmp.name))
        self.pipe_dir, self.log_dir = (Path(self.env[k]) for k in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"))
        try:
            start_mps_daemon(self.env, missing, self._run, self._which)
        except BaseException:
            self._cleanup()
            raise
        self.running = True

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                quit_mps_daemon(self.env, self._run, self._which)
            self.running = False
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class MpsBackend:
    kind = "gpu"
    name = "mps"

    def __init__(self, gpu_index: int = 0, log_dir: Path | None = None, nvml=None, daemon: MpsDaemon | None = None,
                 server_factory=None):
        self.gpu_index = gpu_index
        self.log_dir = log_dir
        self._nvml = nvml
        self.daemon = daemon or MpsDaemon()
        self._server_factory = server_factory or loaded_server

    @property
    def nvml(self):
        if self._nvml is None:
            try:
                self._nvml = load_pynvml()
            except RuntimeError as err:
                raise UserError(f"no usable NVIDIA GPU: {err}", "use --backend cpu on hosts without a GPU") from err
        return self._nvml

    def __enter__(self) -> "MpsBackend":
        self.nvml  # noqa: B018 - fail early without a driver
        self.daemon.start()
        return self

    def __exit__(self, *exc) -> None:
        self.daemon.stop()

    def describe_hardware(self) -> dict:
        hw = gpu_hardware(self.nvml, self.gpu_index)
        hw["backend"] = "mps"
        return hw

    def check_shares(self, shares: list[float]) -> None:
        for share in shares:
            if not 0 < share <= 100:
                raise UserError(f"share {share:g} is not a percentage in (0, 100]", "give shares like 25,50,100")

    def options(self, repo: Path, model: str, share: float) -> ServerOptions:
        env = {**self.daemon.env, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": f"{share:g}",
               "CUDA_VISIBLE_DEVICES": str(self.gpu_index)}
        log = (self.log_dir / f"{model}-s{share:g}.log") if self.log_dir else None
        return ServerOptions(repo=Path(repo), models=[], env=env, log_path=log, gpu=True)

    @staticmethod
    def model_config(repo: Path, model: str):
        cfg = read_config(Path(repo) / model / "config.pbtxt")
        return set_instance_group(cfg, 1, "KIND_GPU", gpus=[0])  # device 0 of CUDA_VISIBLE_DEVICES

    @contextlib.contextmanager
    def start_workload(self, repo: Path, model: str, share: float, batch: int | None = None):
        options = self.options(repo, model, share)
        with self._server_factory(options, model, self.model_config(repo, model)) as server:
            yield WorkloadContext(model=model, share=share, endpoints=server.endpoints, batch=batch, server=server,
                                  info={"env": {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": f"{share:g}"}})

    def sampler(self, contexts: list[WorkloadContext]) -> NvmlSampler:
        return NvmlSampler(self.nvml, self.gpu_index)

    def per_workload(self, figures: dict, ctx: WorkloadContext) -> dict:
        return {k: v for k, v in figures.items() if k != "nvml_samples"}


def ncu_metrics(model: str, batch: int, which=shutil.which, run=subprocess.run, env=None) -> dict:
    """L2 / DRAM utilisation (% of peak) from Nsight Compute, or None for each when ncu or the command is absent."""
    env = os.environ if env is None else env
    empty = {v: None for v in NCU_METRICS.values()}
    command = env.get("IGNITER_NCU_CMD")
    if which("ncu") is None or not command:
        return empty
    argv = [a.format(model=model, batch=batch) for a in shlex.split(command)]
    try:
        result = run(argv, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return empty
    return {**empty, **parse_ncu_csv(result.stdout)}


def parse_ncu_csv(text: str) -> dict:
    """Mean of each wanted metric over the kernels in ncu's --csv output (rows: "Metric Name","Metric Value")."""
    start = text.find('"ID"')
    rows = csv.DictReader(io.StringIO(text[start:] if start >= 0 else text))
    values: dict[str, list[float]] = {}
    for row in rows:
        name = NCU_METRICS.get(row.get("Metric Name", ""))
        if name:
            with contextlib.suppress(ValueError, TypeError):
                values.setdefault(name, []).append(float(str(row.get("Metric Value", "")).replace(",", "")))
    return {k: sum(v) / len(v) for k, v in values.items() if v}
