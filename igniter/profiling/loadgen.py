"""Load generation against Triton: open-loop (constant / Poisson arrivals at a target rate) and closed-loop
(fixed concurrency), asyncio + grpc.aio (requests serialised once, replies not decoded).

Semantics (shared by profiling, the demo and apply's replay):
- one *request* carries one batch of ``batch`` samples; latency is that of one batch request (ms);
- open loop: request ``i`` is *scheduled* at ``t0 + a_i`` (``a_i`` the arrival process) and its latency is measured
  from the scheduled time, not from when the generator got round to sending it, so a slow server (or a slow
  generator) shows up as latency instead of silently lowering the offered rate (no coordinated omission);
- closed loop: ``concurrency`` workers each send the next request as soon as the previous one returns; latency is
  from send to response;
- requests scheduled (open) or sent (closed) during the first ``warmup_s`` are run but excluded from the result;
- bounded in time (``duration_s`` after warm-up, plus ``drain_s`` for requests in flight, then they are cancelled
  and counted as failed) and in count (``max_requests``);
- ``throughput_rps`` = samples per second = ok requests x batch / measured window (``requests_per_s`` is requests/s).

The core coroutines take an ``infer`` coroutine function, so they are tested without a server; ``triton_infer``
builds one against a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import gc
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np

from igniter.errors import UserError

InferFn = Callable[[], Awaitable[object]]
ARRIVALS = ("poisson", "constant")


@dataclass
class LoadResult:
    """What one generator measured. ``latencies_ms``: one entry per successful request in the measured window."""

    latencies_ms: np.ndarray
    sent: int
    ok: int
    failed: int
    duration_s: float
    achieved_rps: float  # successful requests per second in the window (requests, not samples)
    batch: int = 1
    model: str = ""
    offered_rps: float | None = None  # open loop: the target request rate
    errors: list[str] = field(default_factory=list)  # first few failure messages
    summary: dict | None = None  # a generator that reports percentiles instead of raw latencies (perf_analyzer)
    # open loop: when each request was scheduled (s from the window's start): ok ones aligned with latencies_ms
    scheduled_s: np.ndarray | None = None
    failed_scheduled_s: np.ndarray | None = None
    # open loop: how late the generator got round to sending each request of the window (ms past its schedule)
    send_lag_ms: np.ndarray | None = None

    @property
    def throughput_rps(self) -> float:
        """Samples (inferences) per second."""
        return self.achieved_rps * self.batch

    def percentile(self, q: float) -> float:
        if self.summary is not None and f"p{q:g}" in self.summary:
            return self.summary[f"p{q:g}"]
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")

    @property
    def mean_ms(self) -> float:
        if self.summary is not None and "mean" in self.summary:
            return self.summary["mean"]
        return float(np.mean(self.latencies_ms)) if len(self.latencies_ms) else float("nan")


_GC_LOCK = threading.Lock()
_gc_holders = [0, None]   # generators running, the thresholds they replaced


@contextlib.contextmanager
def no_full_collections():
    """While load runs, no full (generation 2) garbage collection: on this 2-core host one took 73-97 ms of the
    client's event loop, in which no request was sent or completed, and showed as the run's p99 (BENCHMARKS.md
    "The load generator's own tail"). Objects alive at the start are frozen out of the collector and the
    young generations still collect cycles; the old thresholds come back when the last generator ends."""
    with _GC_LOCK:
        if _gc_holders[0] == 0:
            _gc_holders[1] = gc.get_threshold()
            gc.collect()
            gc.freeze()
            gc.set_threshold(_gc_holders[1][0], _gc_holders[1][1], 1 << 30)
        _gc_holders[0] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_holders[0] -= 1
            if _gc_holders[0] == 0:
                gc.set_threshold(*_gc_holders[1])
                gc.unfreeze()


def _without_full_collections(coroutine_function):
    @functools.wraps(coroutine_function)
    async def wrapper(*args, **kwargs):
        with no_full_collections():
            return await coroutine_function(*args, **kwargs)
    return wrapper


def arrival_offsets(rate_rps: float, horizon_s: float, arrival: str = "poisson", seed: int = 0,
                    max_requests: int | None = None) -> np.ndarray:
    """Scheduled send offsets (s from start) of an arrival process at ``rate_rps`` over ``horizon_s``."""
    if rate_rps <= 0:
        raise UserError(f"request rate {rate_rps} is not positive", "give a rate above 0 requests/s")
    if arrival not in ARRIVALS:
        raise UserError(f"unknown arrival process {arrival!r}", f"use one of {', '.join(ARRIVALS)}")
    n = int(math.ceil(rate_rps * horizon_s * 1.5 + 10))
    if max_requests is not None:
        n = min(n, max_requests)
    if arrival == "constant":
        offsets = np.arange(n) / rate_rps
    else:
        offsets = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_rps, n))
        offsets -= offsets[0] if n else 0.0  # the first request goes at once
    return offsets[offsets < horizon_s]


@_without_full_collections
async def open_loop(infer: InferFn, rate_rps: float, duration_s: float, arrival: str = "poisson", seed: int = 0,
                    warmup_s: float = 0.0, max_requests: int | None = None, drain_s: float = 5.0,
                    batch: int = 1, model: str = "", offsets: np.ndarray | None = None) -> LoadResult:
    """Send on the arrival schedule regardless of responses; latency from each request's scheduled time.
    ``offsets``: a schedule of its own (s from start, sorted; e.g. a rate trace's) instead of the rate's."""
    if offsets is None:
        offsets = arrival_offsets(rate_rps, warmup_s + duration_s, arrival, seed, max_requests)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    records: list[tuple[float, float | None, str | None]] = []  # (scheduled, done or None, error)

    tasks, lags = [], []
    for offset in offsets:
        scheduled = t0 + float(offset)
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(loop.time() - scheduled)
        tasks.append(asyncio.ensure_future(_timed(infer, scheduled, records)))
    end = t0 + warmup_s + duration_s
    await _drain(tasks, max(end - loop.time(), 0.0) + drain_s)
    result = _summarise(records, t0 + warmup_s, end, len(tasks), batch, model, offered=rate_rps, by_schedule=True)
    offsets = np.asarray(offsets, dtype=float)
    result.send_lag_ms = np.asarray(lags)[(offsets >= warmup_s) & (offsets < warmup_s + duration_s)] * 1e3
    return result


@_without_full_collections
async def closed_loop(infer: InferFn, concurrency: int, duration_s: float, warmup_s: float = 0.0,
                      max_requests: int | None = None, drain_s: float = 5.0, batch: int = 1,
                      model: str = "") -> LoadResult:
    """``concurrency`` workers, each sending its next request when the previous one returns."""
    if concurrency < 1:
        raise UserError(f"concurrency {concurrency} is below 1", "use at least one outstanding request")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    start, end = t0 + warmup_s, t0 + warmup_s + duration_s
    records: list[tuple[float, float | None, str | None]] = []
    budget = [max_requests if max_requests is not None else math.inf]

    async def worker() -> None:
        while loop.time() < end and budget[0] > 0:
            budget[0] -= 1
            await _timed(infer, loop.time(), records)

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await _drain(tasks, warmup_s + duration_s + drain_s)
    return _summarise(records, start, end, len(records), batch, model, offered=None, by_schedule=False)


async def _timed(infer: InferFn, start: float, records: list) -> None:
    """One request; records (start, done or None, error). Latency counts from ``start`` (the scheduled time in
    open loop), so a slow server shows as latency, not as a lower send rate."""
    loop = asyncio.get_running_loop()
    try:
        await infer()
        records.append((start, loop.time(), None))
    except asyncio.CancelledError:
        records.append((start, None, "cancelled: still in flight at the end of the run"))
        raise
    except Exception as err:  # noqa: BLE001 - every failure is counted, the run goes on
        records.append((start, None, _err_text(err)))


async def _drain(tasks: list[asyncio.Future], timeout_s: float) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def _summarise(records, start: float, end: float, sent_total: int, batch: int, model: str, offered: float | None,
               by_schedule: bool) -> LoadResult:
    """Keep what was scheduled/sent after warm-up. Open loop: every request scheduled in the window counts (its
    latency may run past the window). Closed loop: requests that completed inside the window count for throughput."""
    window = [r for r in records if start <= r[0] < end]
    if not by_schedule:  # closed loop: completions within the window define throughput and latency
        window = [r for r in window if r[1] is None or r[1] <= end]
    ok = [r for r in window if r[1] is not None]
    failed = [r for r in window if r[1] is None]
    latencies = np.array([(done - sched) * 1e3 for sched, done, _ in ok], dtype=float)
    duration = max(end - start, 1e-9)
    errors = list(dict.fromkeys(r[2] for r in failed))[:5]
    return LoadResult(latencies_ms=latencies, sent=len(window), ok=len(ok), failed=len(failed), duration_s=duration,
                      achieved_rps=len(ok) / duration, batch=batch, model=model, offered_rps=offered, errors=errors,
                      scheduled_s=np.array([r[0] - start for r in ok]) if by_schedule else None,
                      failed_scheduled_s=np.array([r[0] - start for r in failed]) if by_schedule else None)


def _err_text(err: BaseException) -> str:
    message = getattr(err, "details", None) or getattr(err, "message", None)   # grpc's, tritonclient's
    text = message() if callable(message) else str(err)
    return f"{type(err).__name__}: {text}"[:300]


# -- against a real Triton server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """One generator of a (possibly co-located) run. ``endpoint``: the server's gRPC host:port."""

    endpoint: str
    model: str
    batch: int = 1
    mode: str = "closed"  # "closed" | "open"
    concurrency: int = 1
    rate_rps: float | None = None  # open loop: requests per second
    arrival: str = "poisson"
    seed: int = 0
    timeout_s: float = 30.0


MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


@contextlib.asynccontextmanager
async def triton_infer(endpoint: str, model: str, batch: int, seed: int = 0, timeout_s: float = 30.0):
    """Yield an ``infer()`` coroutine function sending one ``batch``-sample request of random data to ``model``.

    The request is serialised once and sent as raw bytes on a grpc.aio channel, and the reply is not decoded:
    tritonclient's aio ``infer()`` builds and parses protobufs per call, which on a 2-core host gave the path's
    p99 at 300 req/s 2-3x the raw call's (21.8-27.4 against 8.4-9.6 ms, BENCHMARKS.md "The load generator's own
    tail"), time the client spends on the cores it measures. A failed request still raises (grpc status)."""
    import grpc  # noqa: PLC0415 - heavy import
    from tritonclient.grpc._utils import _get_inference_request  # noqa: PLC0415
    from tritonclient.utils import InferenceServerException  # noqa: PLC0415

    from igniter.triton.client import TritonClient  # noqa: PLC0415
    from igniter.triton.server import Endpoints  # noqa: PLC0415

    sync = TritonClient(Endpoints(http="", grpc=endpoint), timeout_s=timeout_s)
    try:
        inputs = sync.make_inputs(model, batch, seed)
    except InferenceServerException as err:
        raise UserError(f"cannot read the config of model {model!r} at {endpoint}: {err.message()}",
                        "check the model is loaded on that server") from err
    finally:
        sync.close()
    payload = _get_inference_request(model_name=model, inputs=inputs, model_version="", request_id="", outputs=None,
                                     sequence_id=0, sequence_start=False, sequence_end=False, priority=0,
                                     timeout=None, parameters=None).SerializeToString()
    channel = grpc.aio.insecure_channel(endpoint)
    call = channel.unary_unary(MODEL_INFER)   # no (de)serialisers: bytes in, bytes out

    async def infer():
        return await call(payload, timeout=timeout_s)

    try:
        yield infer
    finally:
        await channel.close()


async def _run_spec(spec: LoadSpec, duration_s: float, warmup_s: float, max_requests: int | None) -> LoadResult:
    async with triton_infer(spec.endpoint, spec.model, spec.batch, spec.seed, spec.timeout_s) as infer:
        if spec.mode == "open":
            if not spec.rate_rps:
                raise UserError(f"open-loop load for {spec.model!r} has no rate", "give rate_rps > 0")
            return await open_loop(infer, spec.rate_rps, duration_s, spec.arrival, spec.seed, warmup_s, max_requests,
                                   batch=spec.batch, model=spec.model)
        if spec.mode != "closed":
            raise UserError(f"unknown load mode {spec.mode!r}", "use 'open' or 'closed'")
        return await closed_loop(infer, spec.concurrency, duration_s, warmup_s, max_requests, batch=spec.batch,
                                 model=spec.model)


def run_concurrent(specs: list[LoadSpec], duration_s: float, warmup_s: float = 0.0,
                   max_requests: int | None = None) -> list[LoadResult]:
    """Run several generators at once in one event loop (a co-located run); results in the order of ``specs``."""

    async def main():
        return await asyncio.gather(*(_run_spec(s, duration_s, warmup_s, max_requests) for s in specs))

    return list(asyncio.run(main()))


# -- perf_analyzer --------------------------------------------------------------------------------------------------


def perf_analyzer_path() -> Path | None:
    found = shutil.which("perf_analyzer") or str(Path(sys.executable).parent / "perf_analyzer")
    return Path(found) if found and Path(found).exists() else None


def _perf_analyzer_env() -> dict[str, str]:
    """The binary in the tritonclient wheel needs libb64.so.0d and libcudart.so.12: the nvidia-pytriton wheel carries
    both under hashed names, so link them under their sonames in a private directory."""
    env = dict(os.environ)
    try:
        import pytriton  # noqa: PLC0415
    except ImportError:
        return env
    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    links = Path(tempfile.gettempdir()) / f"igniter-pa-libs-{os.getuid()}"
    links.mkdir(exist_ok=True)
    for pattern, soname in (("libb64-*.so.0d", "libb64.so.0d"), ("libcudart-*.so.12*", "libcudart.so.12")):
        for src in sorted(libs.glob(pattern))[:1]:
            dest = links / soname
            if not dest.exists():
                with contextlib.suppress(FileExistsError):
                    dest.symlink_to(src)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(links), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def perf_analyzer_command(binary: Path, spec: LoadSpec, duration_s: float, csv_path: Path) -> list[str]:
    cmd = [str(binary), "-m", spec.model, "-u", spec.endpoint, "-i", "grpc", "-b", str(spec.batch),
           "--measurement-mode", "time_windows", "--measurement-interval", str(max(int(duration_s * 1000), 100)),
           "-f", str(csv_path), "--max-trials", "3", "-s", "99"]
    if spec.mode == "open":
        cmd += ["--request-rate-range", f"{spec.rate_rps:g}",
                "--request-distribution", "poisson" if spec.arrival == "poisson" else "constant"]
    else:
        cmd += ["--concurrency-range", str(spec.concurrency)]
    return cmd


def parse_perf_analyzer_csv(text: str, spec: LoadSpec, duration_s: float) -> LoadResult:
    """perf_analyzer's -f CSV: latencies in microseconds, 'Inferences/Second' counts samples."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise UserError("perf_analyzer wrote no measurements", "run it by hand to see why, or use --loadgen builtin")
    row = rows[-1]
    us = lambda key: float(row[key]) / 1e3 if row.get(key) not in (None, "") else float("nan")  # noqa: E731
    samples_per_s = float(row["Inferences/Second"])
    summary = {"mean": us("Avg latency"), "p50": us("p50 latency"), "p90": us("p90 latency"),
               "p99": us("p99 latency")}
    requests_per_s = samples_per_s / spec.batch
    ok = int(round(requests_per_s * duration_s))
    return LoadResult(latencies_ms=np.array([], dtype=float), sent=ok, ok=ok, failed=0, duration_s=duration_s,
                      achieved_rps=requests_per_s, batch=spec.batch, model=spec.model, offered_rps=spec.rate_rps,
                      summary=summary)


def require_perf_analyzer() -> Path:
    binary = perf_analyzer_path()
    if binary is None:
        raise UserError("perf_analyzer is not on PATH", "pip install tritonclient[all]==2.51.0 or use --loadgen builtin")
    return binary


def run_perf_analyzer(specs: list[LoadSpec], duration_s: float, warmup_s: float = 0.0) -> list[LoadResult]:
    """Run one perf_analyzer per spec at the same time (co-located runs); warm-up is its own stabilisation."""
    binary = require_perf_analyzer()
    env = _perf_analyzer_env()
    with tempfile.TemporaryDirectory(prefix="igniter-pa-") as tmp:
        procs = []
        for i, spec in enumerate(specs):
            path = Path(tmp) / f"{i}.csv"
            log = open(Path(tmp) / f"{i}.log", "wb")
            procs.append((spec, path, log, subprocess.Popen(perf_analyzer_command(binary, spec, duration_s, path),
                                                            stdout=log, stderr=subprocess.STDOUT, env=env)))
        results = []
        for spec, path, log, proc in procs:
            try:
                code = proc.wait(timeout=duration_s * 10 + warmup_s + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            log.close()
            if code != 0 or not path.exists():
                tail = (Path(log.name).read_text(errors="replace").strip().splitlines() or ["(no output)"])[-1]
                raise UserError(f"perf_analyzer failed for {spec.model!r} (exit {code}): {tail}",
                                "run perf_analyzer by hand against the server, or use --loadgen builtin")
            results.append(parse_perf_analyzer_csv(path.read_text(), spec, duration_s))
    return results


def measure(specs: list[LoadSpec], duration_s: float, warmup_s: float, loadgen: str = "builtin") -> list[LoadResult]:
    if loadgen == "perf_analyzer":
        return run_perf_analyzer(specs, duration_s, warmup_s)
    if loadgen != "builtin":
        raise UserError(f"unknown load generator {loadgen!r}", "use builtin or perf_analyzer")
    return run_concurrent(specs, duration_s, warmup_s)
