"""The profiling driver: solo grid + pair design, measured through a resource backend, stored run by run.

Measurement of one run (solo: one workload; pair: two co-located workloads, loaded at the same time):
1. warm-up: each workload runs closed loop for ``warmup_s`` (discarded; also excluded from the Triton metrics);
2. ``repeats`` times: scrape Triton metrics, start the system sampler, drive every workload for ``duration_s``
   (builtin: closed loop, concurrency 1, one request = one batch of ``batch`` samples, all workloads in one event
   loop; or perf_analyzer), stop the sampler, scrape again;
3. row per workload: latency_* from the pooled per-request latencies of all repeats (ms per batch request),
   throughput_rps = samples/s (mean over repeats), *_std = spread of the per-repeat values, queue_ms / compute_ms =
   Triton's per-request averages over the measured windows, system figures from the sampler.
Each finished run is appended to the store atomically before the next starts; runs whose keys are already stored
are skipped, so a killed profile resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from igniter.errors import UserError
from igniter.profiling import loadgen
from igniter.profiling.backends import ResourceBackend, WorkloadContext
from igniter.profiling.design import Member, PairRun, pair_design, solo_grid
from igniter.profiling.store import PAIR_KEY, SOLO_KEY, ProfileStore, run_key
from igniter.triton import metrics as tmetrics


@dataclass
class ProfileSpec:
    repo: Path
    models: list[str]
    batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    shares: list[float] = field(default_factory=lambda: [50.0, 100.0])
    pairs: int | None = None  # None: 2 x number of models
    duration_s: float = 3.0
    repeats: int = 1
    warmup_s: float = 1.0
    seed: int = 0
    loadgen: str = "builtin"
    concurrency: int = 1

    @property
    def n_pairs(self) -> int:
        return 2 * len(self.models) if self.pairs is None else self.pairs


def plan(spec: ProfileSpec, exclusive_shares: bool) -> tuple[list[Member], list[PairRun]]:
    return (solo_grid(spec.models, spec.batches, spec.shares),
            pair_design(spec.models, spec.batches, spec.shares, spec.n_pairs if len(spec.models) > 1 else 0,
                        spec.seed, gpu=exclusive_shares))


class Progress:
    """One status line on stderr per finished run: count, what, elapsed and ETA."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.stream = stream or sys.stderr
        self.enabled = enabled

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        bar = "#" * int(20 * self.done / max(self.total, 1))
        print(f"[{bar:<20}] {self.done}/{self.total} {label}  elapsed {elapsed:.0f}s  ETA {eta:.0f}s",
              file=self.stream, flush=True)


def _warmup(contexts: list[WorkloadContext], batches: list[int], spec: ProfileSpec) -> None:
    if spec.warmup_s > 0:
        specs = [loadgen.LoadSpec(c.endpoints.grpc, c.model, b, concurrency=spec.concurrency, seed=spec.seed)
                 for c, b in zip(contexts, batches)]
        loadgen.run_concurrent(specs, spec.warmup_s)


def _scrape(ctx: WorkloadContext):
    if not ctx.endpoints.metrics:
        return None
    try:
        return tmetrics.scrape(ctx.endpoints.metrics).models.get(ctx.model)
    except UserError:
        return None


def measure(backend: ResourceBackend, contexts: list[WorkloadContext], batches: list[int], spec: ProfileSpec) -> list[dict]:
    """Measure co-located workloads (one for solo); one figures dict per workload, in store column names."""
    _warmup(contexts, batches, spec)
    specs = [loadgen.LoadSpec(c.endpoints.grpc, c.model, b, concurrency=spec.concurrency, seed=spec.seed + i)
             for i, (c, b) in enumerate(zip(contexts, batches))]
    per_repeat: list[list[loadgen.LoadResult]] = []
    figures: list[list[dict]] = [[] for _ in contexts]
    before = [_scrape(c) for c in contexts]
    for _ in range(spec.repeats):
        sampler = backend.sampler(contexts)
        sampler.start()
        results = loadgen.measure(specs, spec.duration_s, 0.0, spec.loadgen)
        system = sampler.stop()
        per_repeat.append(results)
        for i, ctx in enumerate(contexts):
            figures[i].append(backend.per_workload(system, ctx))
    after = [_scrape(c) for c in contexts]
    rows = []
    for i, ctx in enumerate(contexts):
        runs = [rep[i] for rep in per_repeat]
        rows.append(_row(ctx, batches[i], runs, figures[i], before[i], after[i]))
    return rows


def _row(ctx: WorkloadContext, batch: int, runs: list[loadgen.LoadResult], system: list[dict], before, after) -> dict:
    ok = sum(r.ok for r in runs)
    failed = sum(r.failed for r in runs)
    if ok == 0:
        reason = next((e for r in runs for e in r.errors), "no request completed within the run")
        raise UserError(f"model {ctx.model!r} (batch {batch}, share {ctx.share:g}) answered no request: {reason}",
                        "check the model loads and infers (igniter infer --model NAME), or give a longer --duration")
    if all(r.summary is None for r in runs):
        pooled = np.concatenate([r.latencies_ms for r in runs])
        lat = {"latency_mean_ms": float(pooled.mean()), "latency_p50_ms": float(np.percentile(pooled, 50)),
               "latency_p90_ms": float(np.percentile(pooled, 90)), "latency_p99_ms": float(np.percentile(pooled, 99))}
    else:  # percentiles reported by perf_analyzer: average them over repeats
        lat = {f"latency_{k}_ms": float(np.mean([r.mean_ms if k == "mean" else r.percentile(float(k[1:])) for r in runs]))
               for k in ("mean", "p50", "p90", "p99")}
    tput = [r.throughput_rps for r in runs]
    means = [r.mean_ms for r in runs]
    row = {"model": ctx.model, "batch": int(batch), "share": float(ctx.share),
           "throughput_rps": float(np.mean(tput)), **lat,
           "repeats": len(runs),
           "latency_mean_ms_std": float(np.std(means, ddof=1)) if len(runs) > 1 else 0.0,
           "throughput_rps_std": float(np.std(tput, ddof=1)) if len(runs) > 1 else 0.0,
           "requests": ok, "failures": failed, "duration_s": float(sum(r.duration_s for r in runs))}
    if after is not None:
        window = tmetrics.interval(before, after)
        for key in ("queue_ms", "compute_ms"):
            if not math.isnan(window[key]):
                row[key] = float(window[key])
    for key in sorted({k for s in system for k in s}):
        values = [s[key] for s in system if isinstance(s.get(key), (int, float))]
        if values:
            row[key] = float(max(values) if key == "memory_mb" else np.mean(values))
    return row


def run_profile(spec: ProfileSpec, store: ProfileStore, backend: ResourceBackend,
                progress: Progress | None = None, on_row: Callable[[str, dict], None] | None = None) -> dict:
    """Profile everything not yet in ``store``; returns {"solo_runs", "pair_runs", "skipped", "seconds", "out"}."""
    started = time.monotonic()
    backend.check_shares(spec.shares)
    _hardware(store, backend)
    solo, pairs = plan(spec, exclusive_shares=backend.exclusive_shares)
    done_solo, done_pairs = store.done_keys("solo"), store.done_keys("pairs")
    solo_todo = [m for m in solo if run_key({"model": m.model, "batch": m.batch, "share": m.share}, SOLO_KEY) not in done_solo]
    pairs_todo = [p for p in pairs if not all(_pair_key(k) in done_pairs for k in p.rows_keys())]
    skipped = len(solo) - len(solo_todo) + len(pairs) - len(pairs_todo)
    progress = progress or Progress(len(solo_todo) + len(pairs_todo))
    progress.total = len(solo_todo) + len(pairs_todo)
    solo_runs = pair_runs = 0
    kernel: dict[tuple[str, int], dict] = {}   # (model, batch) -> kernel metrics: one pass each, not per share
    for (model, share), members in itertools.groupby(solo_todo, key=lambda m: (m.model, m.share)):
        group = list(members)
        for member in group:   # before the measured server starts: the pass runs a server of its own
            if (model, member.batch) not in kernel:
                kernel[(model, member.batch)] = backend.kernel_metrics(spec.repo, model, member.batch)
        with backend.start_workload(spec.repo, model, share) as ctx:
            for member in group:
                row = measure(backend, [ctx], [member.batch], spec)[0]
                row.update(kernel[(model, member.batch)])
                row["run_id"] = f"solo:{model}/b{member.batch}/s{share:g}"
                store.append_solo(row)
                solo_runs += 1
                if on_row:
                    on_row("solo", row)
                progress.step(f"solo {model} batch={member.batch} share={share:g}")
    for run in pairs_todo:
        with contextlib.ExitStack() as stack:
            contexts = [stack.enter_context(backend.start_workload(spec.repo, m.model, m.share, m.batch))
                        for m in run.members]
            rows = measure(backend, contexts, [m.batch for m in run.members], spec)
        a, b = rows
        for row, partner in ((a, run.b), (b, run.a)):
            row.update(partner=partner.model, partner_batch=partner.batch, partner_share=float(partner.share),
                       run_id=run.run_id)
        store.append_pair_rows([a, b])
        pair_runs += 1
        if on_row:
            on_row("pair", a)
        progress.step(f"pair {run.a.model}(b{run.a.batch},s{run.a.share:g}) + {run.b.model}(b{run.b.batch},s{run.b.share:g})")
    return {"solo_runs": solo_runs, "pair_runs": pair_runs, "skipped": skipped,
            "kernel_metric_passes": sum(1 for found in kernel.values() if found),
            "seconds": round(time.monotonic() - started, 2), "out": str(store.dir)}


def _pair_key(key: tuple) -> tuple:
    return run_key(dict(zip(PAIR_KEY, key)), PAIR_KEY)


def _hardware(store: ProfileStore, backend: ResourceBackend) -> None:
    hw = backend.describe_hardware()
    path = store.dir / "hardware.json"
    if path.exists():
        old = store.read_hardware()
        if (old.get("kind"), old.get("name")) != (hw.get("kind"), hw.get("name")):
            raise UserError(f"{path} holds profiles of other hardware ({old.get('name')!r}, this is {hw.get('name')!r})",
                            "profile into a new --out directory")
        return
    store.write_hardware(hw)
