"""GPU profiling backend under NVIDIA MPS: the backend runs its own MPS control daemon (a private temp dir) and one
Triton per workload, launched as igniter.backends.mps launches a planned server (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE =
share, KIND_GPU on device 0 of CUDA_VISIBLE_DEVICES).

- System metrics: a pynvml thread samples SM clock, power, utilisation and memory during each measurement.
- Kernel metrics (L2 and DRAM throughput, % of peak): Nsight Compute observes only processes it launches and
  serialises kernels, so it never runs inside a measurement. When ``ncu`` is on PATH, ``kernel_metrics`` starts one
  extra solo server of the model under ``ncu --csv``, sends NCU_REQUESTS requests of the batch, stops the server
  (only tritonserver: ncu writes its report when its target exits) and parses the CSV: one ncu pass per
  (model, batch), whose figures the runner writes to every share's solo row (the kernels' demand per request does
  not depend on the SM share; its rate does, which the perf model applies).
All edges (pynvml, subprocess, shutil.which, the server factory, the request sender) are injectable, so this module
imports and is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from igniter.backends.hardware import PROC, load_pynvml
from igniter.backends.mps import BACKEND as MPS
from igniter.backends.mps import MPS_CONTROL, mps_dirs_env, quit_mps_daemon, start_mps_daemon
from igniter.errors import UserError
from igniter.profiling.backends import WorkloadContext, loaded_server
from igniter.profiling.sysmetrics import NvmlSampler, group_processes
from igniter.triton.config import read_config
from igniter.triton.server import ServerOptions

NCU = "ncu"
NCU_METRICS = {"lts__t_sectors.avg.pct_of_peak_sustained_elapsed": "l2_util_pct",
               "dram__throughput.avg.pct_of_peak_sustained_elapsed": "dram_util_pct"}
NCU_DURATION = "gpu__time_duration.sum"     # per kernel: the weight of its figures
TIME_UNITS_NS = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9}   # ncu scales units per value
NCU_REQUESTS = 20                 # requests per ncu pass: every kernel of the model, a few times
NCU_STARTUP_TIMEOUT_S = 900.0     # ncu replays every kernel of the server's start-up too
NCU_REPORT_TIMEOUT_S = 300.0      # ncu writes its report after its target exits
TRITONSERVER = "tritonserver"


class MpsDaemon:
    """An MPS control daemon in a private pipe/log directory (the profiler's own, gone when it stops)."""

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


def send_requests(server, model: str, batch: int, count: int) -> None:
    """``count`` inferences of ``batch`` samples, one after another (the ncu pass's workload)."""
    from igniter.triton.client import TritonClient  # noqa: PLC0415

    with TritonClient.connect(server) as client:
        inputs = client.make_inputs(model, batch)
        for _ in range(count):
            client.infer(model, inputs)


class MpsBackend:
    kind = MPS.kind
    name = MPS.name
    resources = MPS
    exclusive_shares = MPS.exclusive_shares

    def __init__(self, gpu_index: int = 0, log_dir: Path | None = None, nvml=None, daemon: MpsDaemon | None = None,
                 server_factory=None, which=shutil.which, send=send_requests):
        self.gpu_index = gpu_index
        self.log_dir = log_dir
        self._nvml = nvml
        self.daemon = daemon or MpsDaemon()
        self._server_factory = server_factory or loaded_server
        self._which = which
        self._send = send

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
        return MPS.describe_hardware(self.gpu_index, self.nvml)

    def check_shares(self, shares: list[float]) -> None:
        for share in shares:
            MPS.check_share(share)

    def options(self, repo: Path, model: str, share: float, prefix: list[str] | None = None) -> ServerOptions:
        env = {**self.daemon.env, **MPS.launch(share).env, "CUDA_VISIBLE_DEVICES": str(self.gpu_index)}
        log = (self.log_dir / f"{model}-s{share:g}.log") if self.log_dir else None
        return ServerOptions(repo=Path(repo), models=[], env=env, log_path=log, gpu=True,
                             command_prefix=prefix or [],
                             startup_timeout_s=NCU_STARTUP_TIMEOUT_S if prefix else ServerOptions.startup_timeout_s)

    @staticmethod
    def model_config(repo: Path, model: str, share: float = 100.0):
        return MPS.configure_model(read_config(Path(repo) / model / "config.pbtxt"), 1, MPS.launch(share))

    @contextlib.contextmanager
    def start_workload(self, repo: Path, model: str, share: float, batch: int | None = None):
        options = self.options(repo, model, share)
        with self._server_factory(options, model, self.model_config(repo, model, share)) as server:
            yield WorkloadContext(model=model, share=share, endpoints=server.endpoints, batch=batch, server=server,
                                  info={"env": MPS.launch(share).env})

    def kernel_metrics(self, repo: Path, model: str, batch: int) -> dict:
        """L2 / DRAM throughput (% of peak, over the model's kernels weighted by duration) of ``model`` at ``batch`` from one ncu
        pass over a solo server at 100 %; {} when ncu is not on PATH (the columns then stay empty)."""
        ncu = self._which(NCU)
        if ncu is None:
            return {}
        with tempfile.TemporaryDirectory(prefix="igniter-ncu-") as tmp:
            report = Path(tmp) / "ncu.csv"
            prefix = [ncu, "--target-processes", "all", "--csv", "--page", "details",
                      "--metrics", ",".join([*NCU_METRICS, NCU_DURATION]), "--log-file", str(report)]
            with self._server_factory(self.options(repo, model, 100.0, prefix), model,
                                      self.model_config(repo, model)) as server:
                self._send(server, model, batch, NCU_REQUESTS)
                stop_target(server)
            text = report.read_text(errors="replace") if report.exists() else ""
        found = parse_ncu_csv(text)
        if not found:
            raise UserError(f"ncu reported no L2/DRAM metrics for {model!r} at batch {batch}",
                            "check that ncu can profile this GPU (it needs the driver's profiling permission: "
                            "NVreg_RestrictProfilingToAdminUsers=0), or remove ncu from PATH to profile without them")
        return found

    def sampler(self, contexts: list[WorkloadContext]) -> NvmlSampler:
        return NvmlSampler(self.nvml, self.gpu_index)

    def per_workload(self, figures: dict, ctx: WorkloadContext) -> dict:
        return {k: v for k, v in figures.items() if k != "nvml_samples"}


def stop_target(server, proc: Path = PROC, timeout_s: float = NCU_REPORT_TIMEOUT_S) -> None:
    """End an ncu pass the way that keeps its report: SIGTERM only the tritonserver in the server's process group
    (ncu prints its report when its target exits; signalled itself, it would die without one), then wait for the
    group leader (ncu) to exit. The server's own stop then finds nothing left, or kills what still runs."""
    process = getattr(server, "process", None)
    if process is None:
        return
    for pid in group_members(process.pid, TRITONSERVER, proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)


def group_members(pgid: int, name: str, proc: Path = PROC) -> list[int]:
    """Pids of the processes named ``name`` in process group ``pgid`` (from /proc/<pid>/stat)."""
    return [pid for pid, comm, _ in group_processes(pgid, proc) if comm == name]


def parse_ncu_csv(text: str) -> dict:
    """Each wanted metric over the kernels in ncu's ``--csv --page details`` output (==PROF== lines, then a header
    with "ID", "Metric Name", "Metric Unit" and "Metric Value", one row per (kernel launch, metric); values may carry
    thousands separators), weighted by the kernels' durations (a GEMM counts for more than a 1 us elementwise
    kernel); a plain mean where a duration is missing."""
    start = text.find('"ID"')
    per_kernel: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO(text[start:] if start >= 0 else "")):
        name = row.get("Metric Name", "")
        try:
            value = float(str(row.get("Metric Value", "")).replace(",", ""))
        except ValueError:
            continue
        if name == NCU_DURATION and row.get("Metric Unit") in TIME_UNITS_NS:
            per_kernel.setdefault(row.get("ID", ""), {})["duration_ns"] = value * TIME_UNITS_NS[row["Metric Unit"]]
        elif name in NCU_METRICS:
            per_kernel.setdefault(row.get("ID", ""), {})[NCU_METRICS[name]] = value
    out = {}
    for column in NCU_METRICS.values():
        kernels = [k for k in per_kernel.values() if column in k]
        if not kernels:
            continue
        weights = [k.get("duration_ns", 0.0) for k in kernels]
        if not all(w > 0 for w in weights):
            weights = [1.0] * len(kernels)
        out[column] = sum(k[column] * w for k, w in zip(kernels, weights)) / sum(weights)
    return out
