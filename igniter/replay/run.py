"""Replay a plan on local Triton servers serving emulated models, and measure the p99 it delivers.

The plan's servers are started by the deployment stage (Deployer, attached: they stop with this process) from an
emulated copy of the plan (emulator.py); each server gets open-loop Poisson arrivals at its planned rate / K (or a
rate trace's), single-sample requests over real gRPC, latency measured from each request's scheduled time
(loadgen.open_loop: no coordinated omission). One more server, ``calibration``, serves a zero-latency model at
CALIBRATION_RPS through the same client at the same time: its latency is the residual overhead of the real path
(client, gRPC, Triton, python backend) under this run's load, reported real and divided by K; its Triton compute
time per batch (the hand-over to the python stub and back, no sleep) is measured live and left out of every
emulated hold (emulator.py, "The path's own time").
Every time in the result is unscaled (divided by K); attainment counts failed requests as misses.

Steps (trace.Step, times unscaled from the start of traffic): a load step multiplies every rate of the schedule
from its time on; an interference step writes its GPU's slowdown factor into the emulated devices' shared file at
its time (real T x K), which every server on that GPU reads within a slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from igniter.deployment.apply import Deployer
from igniter.deployment.report import write_html_report
from igniter.deployment.state import load_state
from igniter.errors import UserError
from igniter.profiling.loadgen import LoadResult, arrival_offsets, open_loop, triton_infer
from igniter.provisioning.traces import load_trace
from igniter.replay.emulator import (EmulatedDevices, PlannedServer, constant_tables, latency_tables, read_plan,
                                     write_emulated_plan)
from igniter.replay.trace import RateTrace, Step, constant_trace, rate_trace, trace_offsets, with_load_steps
from igniter.triton.metrics import scrape

CALIBRATION = PlannedServer(name="calibration", gpu="calibration", model="calibration", workload="calibration",
                            batch=1, share=100.0, max_queue_delay_us=0, rate=0.0, slo_ms=math.inf,
                            predicted_latency_ms=0.0, predicted_p99_ms=0.0)
CALIBRATION_RPS = 20.0   # real req/s of the zero-latency probe
OVERHEAD_EVERY_S = 2.0   # real s between scrapes of the probe's per-batch path time
OVERHEAD_WINDOW = 6      # scrapes the per-batch path time is averaged over (the last 10 s)
MIN_PROBE_BATCHES = 20   # fewer probe batches in the window: keep the previous measurement
PROGRESS_EVERY_S = 5.0

Say = Callable[[str], None]


@dataclass
class ReplayOptions:
    plan: Path | None               # plan.json (or its directory); None: ``servers`` given directly (the sweep)
    perf_model: Path | None
    workdir: Path
    time_scale: float = 10.0
    duration_s: float = 60.0        # real seconds of measured traffic (emulated: duration / K)
    warmup_s: float = 3.0           # real seconds before the measured window
    trace: Path | None = None
    seed: int = 0
    tables: dict | None = None      # latency tables to use instead of the perf model's (the sweep)
    server_scales: dict[str, float] | None = None  # a K of their own for some servers (the sweep)
    servers: list[PlannedServer] | None = None      # instead of a plan file (the sweep)
    load_steps: list[Step] = field(default_factory=list)    # --load-step
    interference: list[Step] = field(default_factory=list)  # --interference

    def scale(self, server: PlannedServer) -> float:
        return (self.server_scales or {}).get(server.name, self.time_scale)


def run_replay(opts: ReplayOptions, say: Say = lambda m: None) -> dict:
    if not (opts.time_scale > 0 and math.isfinite(opts.time_scale)):
        raise UserError(f"time scale {opts.time_scale} is not a positive number", "give e.g. --time-scale 10")
    servers = opts.servers if opts.servers is not None else read_plan(opts.plan)
    if opts.tables is None:
        from igniter.provisioning.workloads import load_perf_model  # noqa: PLC0415 - heavy (xgboost)
        tables = latency_tables(load_perf_model(opts.perf_model), servers)
    else:
        tables = opts.tables
    tables.update(constant_tables([CALIBRATION], lambda s, n: 0.0))
    trace = offered_trace(opts, servers)
    check_interference(opts.interference, servers)
    devices = EmulatedDevices(opts.workdir / "devices")
    plan_path = write_emulated_plan(servers + [CALIBRATION], tables, opts.workdir / "emulated", opts.scale, devices)
    deployer = Deployer(opts.workdir / "state.json", detached=False, progress=lambda m: say(f"apply: {m.strip()}"))
    started = time.monotonic()
    try:
        deployer.stop_all()
        deployer.apply(plan_path)
        deployed = load_state(opts.workdir / "state.json").servers
        grpc = {name: s.grpc for name, s in deployed.items()}
        say(f"replay: {len(servers)} servers, {opts.duration_s:g} s (emulated {opts.duration_s / opts.time_scale:g} s"
            f" at K = {opts.time_scale:g})")
        tracker = PathTracker(deployed[CALIBRATION.name].metrics, devices.overhead_file)
        results = asyncio.run(_drive(servers, grpc, trace, opts, devices, say, tracker))
    finally:
        deployer.stop_all()
    pipeline = {s.name: tables[s.name].get("pipeline_ms", 0.0) for s in servers}
    result = summarise(servers, results[:-1], results[-1], opts, pipeline)
    result["overhead"]["per_batch_real_ms"] = tracker.mean_ms()
    result["seconds"] = round(time.monotonic() - started, 1)
    opts.workdir.mkdir(parents=True, exist_ok=True)
    (opts.workdir / "result.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    save_requests(opts.workdir / "requests.npz", servers + [CALIBRATION], results, opts,
                  {**pipeline, CALIBRATION.name: 0.0})
    result["report"] = str(write_html_report(opts.workdir / "report.html", result, "igniter replay"))
    return result


def offered_trace(opts: ReplayOptions, servers: list[PlannedServer]) -> RateTrace | None:
    """The rates the clients send: the trace's (or the plan's), times the load steps; None: the plan's, unstepped."""
    rates = _workload_rates(servers)
    trace = rate_trace(load_trace(opts.trace), rates) if opts.trace else None
    if opts.load_steps:
        trace = with_load_steps(trace or constant_trace(rates), opts.load_steps)
    return trace


def check_interference(steps: list[Step], servers: list[PlannedServer]) -> None:
    gpus = sorted({s.gpu for s in servers})
    for step in steps:
        if step.gpu not in gpus:
            raise UserError(f"--interference names GPU {step.gpu!r}, which the plan does not use",
                            f"name one of the plan's GPUs: {', '.join(gpus)}", "--interference")


async def inject(steps: list[Step], devices: EmulatedDevices, k: float, say: Say) -> None:
    """Each interference step's factor written at its time (real T x K from now)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for step in sorted(steps, key=lambda s: s.at_s):
        await asyncio.sleep(max(t0 + step.at_s * k - loop.time(), 0.0))
        devices.set_slowdown(step.gpu, step.factor)
        say(f"replay: interference on {step.gpu}: batches x {step.factor:g} from {step.at_s:g} s")


def _workload_rates(servers: list[PlannedServer]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for s in servers:
        rates[s.workload] = rates.get(s.workload, 0.0) + s.rate
    return rates


def schedule(server: PlannedServer, servers: list[PlannedServer], trace: RateTrace | None, opts: ReplayOptions,
             seed: int) -> np.ndarray:
    """Real-time send offsets of one server: its planned rate (or its part of the trace's) / K."""
    horizon = opts.warmup_s + opts.duration_s
    k = opts.scale(server)
    if trace is None:
        return arrival_offsets(server.rate / k, horizon, "poisson", seed)
    workload_rate = _workload_rates(servers)[server.workload]
    part = server.rate / workload_rate if workload_rate > 0 else 0.0
    return trace_offsets(trace.times_s * k, trace.rates[server.workload] * part / k, horizon, seed)


class PathTracker:
    """The path's real time per batch on the zero-latency probe (Triton's compute time per execution: nothing but
    the hand-over to the python stub and back), over the last OVERHEAD_WINDOW scrapes, written where every
    emulated backend reads it (emulator.OVERHEAD_FILE) so its holds leave it out."""

    def __init__(self, metrics: str, path: Path):
        self.metrics, self.path = metrics, path
        self.history: list[tuple[float, float]] = []   # (cumulative compute us, cumulative executions)
        self.measured: list[float] = []

    def totals(self) -> tuple[float, float]:
        m = next(iter(scrape(self.metrics).models.values()))
        return m.compute_input_us + m.compute_infer_us + m.compute_output_us, m.exec_count

    def update(self, totals: tuple[float, float]) -> None:
        self.history = (self.history + [totals])[-OVERHEAD_WINDOW:]
        (us0, n0), (us1, n1) = self.history[0], self.history[-1]
        if n1 - n0 >= MIN_PROBE_BATCHES:
            self.measured.append((us1 - us0) / (n1 - n0) / 1000.0)
            with open(self.path, "r+b") as fh:
                fh.write(struct.pack("d", self.measured[-1]))

    def mean_ms(self) -> float:
        return float(np.mean(self.measured)) if self.measured else math.nan


def probe_offsets(opts: ReplayOptions, seed: int) -> np.ndarray:
    """The zero-latency probe's real send offsets: Poisson at CALIBRATION_RPS over warm-up and window."""
    return arrival_offsets(CALIBRATION_RPS, opts.warmup_s + opts.duration_s, "poisson", seed)


async def track_path(tracker: PathTracker) -> None:
    """Every OVERHEAD_EVERY_S, the probe's per-batch path time into the emulated devices' file (until cancelled)."""
    loop = asyncio.get_running_loop()
    while tracker.metrics:   # a server without a metrics endpoint: nothing to measure, nothing left out
        await asyncio.sleep(OVERHEAD_EVERY_S)
        with contextlib.suppress(UserError, OSError):   # a missed scrape keeps the last measurement
            tracker.update(await loop.run_in_executor(None, tracker.totals))


async def _drive(servers: list[PlannedServer], grpc: dict[str, str], trace: RateTrace | None, opts: ReplayOptions,
                 devices: EmulatedDevices, say: Say, tracker: PathTracker) -> list[LoadResult]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    total = opts.warmup_s + opts.duration_s

    async def one(server: PlannedServer, offsets: np.ndarray) -> LoadResult:
        async with triton_infer(grpc[server.name], server.model, 1, 0) as infer:
            return await open_loop(infer, 1.0, opts.duration_s, warmup_s=opts.warmup_s, offsets=offsets,
                                   model=server.model)

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            done = loop.time() - t0
            say(f"replay: {min(done, total):.0f}/{total:.0f} s, ETA {max(total - done, 0):.0f} s")

    plans = [(s, schedule(s, servers, trace, opts, opts.seed + i)) for i, s in enumerate(servers)]
    plans.append((CALIBRATION, probe_offsets(opts, opts.seed + len(servers))))
    background = [asyncio.ensure_future(progress()), asyncio.ensure_future(track_path(tracker)),
                  asyncio.ensure_future(inject(opts.interference, devices, opts.time_scale, say))]
    try:
        return list(await asyncio.gather(*(one(s, o) for s, o in plans)))
    finally:
        for task in background:
            task.cancel()


def save_requests(path: Path, servers: list[PlannedServer], results: list[LoadResult], opts: ReplayOptions,
                  pipeline_ms: dict[str, float]) -> None:
    """Every measured request, per workload (replicas together; the probe's as ``calibration``), unscaled:
    ``<workload>.sent_s`` (when it was scheduled, s from the measured window's start) and ``<workload>.latency_ms``
    (NaN: failed), so an interval or a later analysis needs no rerun."""
    arrays: dict[str, list[np.ndarray]] = {}
    for s, r in zip(servers, results):
        k = opts.scale(s)
        ok_at = r.scheduled_s if r.scheduled_s is not None else np.full(len(r.latencies_ms), np.nan)
        failed_at = r.failed_scheduled_s if r.failed_scheduled_s is not None else np.full(r.failed, np.nan)
        arrays.setdefault(f"{s.workload}.sent_s", []).append(np.concatenate([ok_at, failed_at]) / k)
        arrays.setdefault(f"{s.workload}.latency_ms", []).append(
            np.concatenate([r.latencies_ms / k + pipeline_ms[s.name], np.full(len(failed_at), np.nan)]))
    np.savez_compressed(path, **{key: np.concatenate(parts) for key, parts in arrays.items()})


def summarise(servers: list[PlannedServer], results: list[LoadResult], calibration: LoadResult,
              opts: ReplayOptions, pipeline_ms: dict[str, float]) -> dict:
    """Per workload (replicas together); a request's latency is measured / K + its server's pipeline delay."""
    k = opts.time_scale
    by_workload: dict[str, list] = {}
    for s, r in zip(servers, results):
        by_workload.setdefault(s.workload, []).append((s, r))
    rows = []
    for name, runs in sorted(by_workload.items()):
        first = runs[0][0]
        latencies = np.concatenate([r.latencies_ms / opts.scale(s) + pipeline_ms[s.name] for s, r in runs])
        requests = sum(r.ok + r.failed for _, r in runs)
        failed = sum(r.failed for _, r in runs)
        measured = lambda q: float(np.percentile(latencies, q)) if len(latencies) else math.nan  # noqa: E731
        rows.append({"name": name, "model": first.model, "rate": round(sum(s.rate for s, _ in runs), 4),
                     "slo_ms": first.slo_ms, "replicas": len(runs), "batch": first.batch, "share": first.share,
                     "predicted_p99_ms": max(s.predicted_p99_ms for s, _ in runs),
                     "measured_p50_ms": measured(50), "measured_p99_ms": measured(99),
                     "attainment": float(np.sum(latencies <= first.slo_ms)) / requests if requests else 0.0,
                     "requests": requests, "failed": failed,
                     "errors": sorted({e for _, r in runs for e in r.errors})[:3]})
    return {"gpus": len({s.gpu for s in servers}), "servers": len(servers), "time_scale": k,
            "duration_s": opts.duration_s, "emulated_duration_s": opts.duration_s / k,
            "trace": str(opts.trace) if opts.trace else None, "workloads": rows,
            "load_steps": [{"factor": x.factor, "at_s": x.at_s} for x in opts.load_steps],
            "interference": [{"gpu": x.gpu, "factor": x.factor, "at_s": x.at_s} for x in opts.interference],
            "attainment_min": min((r["attainment"] for r in rows), default=0.0),
            "overhead": probe_summary(calibration, k)}


def probe_summary(calibration: LoadResult, k: float) -> dict:
    """The zero-latency probe's latency: the real path's, real and / K."""
    overhead = calibration.latencies_ms
    pct = lambda q: float(np.percentile(overhead, q)) if len(overhead) else math.nan  # noqa: E731
    return {"real_p50_ms": pct(50), "real_p99_ms": pct(99), "unscaled_p50_ms": pct(50) / k,
            "unscaled_p99_ms": pct(99) / k, "requests": calibration.ok + calibration.failed}
