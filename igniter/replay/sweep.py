"""p99 truth: single emulated servers (no interference) over batch x utilisation, measured p99 vs the queueing model.

A sweep point is one server: preferred batch b, batch latency L(n) for the n samples Triton's batcher actually put
in the batch (from the perf model's solo prediction of one model at one share), max queue delay D as the planner
sets it ((b-1)/rate, times ``delay_factor``), Poisson arrivals at rate u * b / L(b) for utilisation u. The points of
one batch size run at once on separate servers (independent: no shared emulated GPU), at a time scale that makes
every batch hold ``REAL_MS_PER_SAMPLE`` x b real ms, so each server gets about u x 1000 / REAL_MS_PER_SAMPLE real
req/s whatever b is.

Host stalls: every server's latency includes the real path (client, gRPC, Triton, python backend) / K, and on a
shared 2-core host that path stalls for tens to hundreds of real ms now and then. ``at_once`` runs the points in
groups (fewer servers and requests/s on the host at a time), and each group's zero-latency probe (run.py's
calibration server, same client, same time) measures the path meanwhile: its p50 / K, which the emulation adds but
a GPU's batch time would not, is subtracted from the point's measured p99 (``measured_net_p99_ms``; the error is
computed on it), and its p99 / K is the size of the stalls the point's tail can carry (``overhead_p99_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from igniter.model import Member
from igniter.provisioning import queueing
from igniter.replay.emulator import PlannedServer, constant_tables
from igniter.replay.run import ReplayOptions, run_replay

REAL_MS_PER_SAMPLE = 40.0


def solo_latency(perf_model, model: str, share: float, batch: int) -> list[float]:
    """L(n) for n = 1..batch, ms."""
    preds = perf_model.predict_sets([[Member(model, n, share)] for n in range(1, batch + 1)])
    return [p[0].latency_ms for p in preds]


@dataclass(frozen=True)
class Point:
    batch: int
    utilisation: float
    delay_factor: float = 1.0


def sweep(perf_model, model: str, share: float, points: list[Point], workdir: Path, duration_s: float,
          say: Callable[[str], None] = lambda m: None, seed: int = 0, at_once: int | None = None,
          real_ms_per_sample: float = REAL_MS_PER_SAMPLE) -> list[dict]:
    """The points in groups of ``at_once`` (all at once by default), one after another; within a group each point
    has its own server (own emulated GPU, own time scale)."""
    latency = {b: solo_latency(perf_model, model, share, b) for b in {p.batch for p in points}}
    size = at_once or len(points)
    rows = []
    for first in range(0, len(points), size):
        group = points[first:first + size]
        say(f"sweep: points {first + 1}-{first + len(group)} of {len(points)}")
        rows += _sweep_group(latency, model, share, group, first, workdir / f"group-{first // size}", duration_s,
                             say, seed + first, real_ms_per_sample)
    return rows


def _sweep_group(latency: dict, model: str, share: float, points: list[Point], first: int, workdir: Path,
                 duration_s: float, say, seed: int, real_ms_per_sample: float) -> list[dict]:
    servers, scales = [], {}
    for i, p in enumerate(points, start=first):
        full = latency[p.batch][-1]
        rate = p.utilisation * p.batch / full * 1000.0
        delay = int(queueing.max_queue_delay_us(p.batch, rate) * p.delay_factor)
        name = f"p{i}-b{p.batch}-u{p.utilisation:g}-d{p.delay_factor:g}"
        servers.append(PlannedServer(name=name, gpu=f"g{i}", model=model, workload=name, batch=p.batch, share=share,
                                     max_queue_delay_us=delay, rate=rate, slo_ms=1e9,
                                     predicted_latency_ms=full, predicted_p99_ms=0.0))
        scales[name] = real_ms_per_sample * p.batch / full
    opts = ReplayOptions(plan=None, perf_model=None, workdir=workdir, time_scale=real_ms_per_sample,
                         duration_s=duration_s, seed=seed, server_scales=scales, servers=servers,
                         tables=constant_tables(servers, lambda s, n: latency[s.batch][n - 1]))
    result = run_replay(opts, say)
    probe = result["overhead"]
    rows = []
    for s, p in zip(servers, points):
        measured = next(r for r in result["workloads"] if r["name"] == s.workload)
        model_p99 = float(queueing.p99_latency_ms(s.predicted_latency_ms, s.batch, s.rate))
        net = measured["measured_p99_ms"] - probe["real_p50_ms"] / scales[s.name]
        rows.append({"name": s.name, "batch": s.batch, "utilisation": p.utilisation, "delay_factor": p.delay_factor,
                     "rate": round(s.rate, 3), "latency_ms": round(s.predicted_latency_ms, 4),
                     "max_queue_delay_us": s.max_queue_delay_us, "time_scale": round(scales[s.name], 3),
                     "predicted_p99_ms": model_p99, "measured_p50_ms": measured["measured_p50_ms"],
                     "measured_p99_ms": measured["measured_p99_ms"], "measured_net_p99_ms": net,
                     "requests": measured["requests"], "failed": measured["failed"],
                     "overhead_ms": probe["real_p50_ms"] / scales[s.name],
                     "overhead_p99_ms": probe["real_p99_ms"] / scales[s.name],
                     "probe_real_p99_ms": probe["real_p99_ms"], "group": first,
                     "path_per_batch_real_ms": probe["per_batch_real_ms"],
                     # the point's own arrivals (run.schedule): an oracle can replay exactly this trace
                     "arrivals": {"rate_rps": s.rate / scales[s.name], "seed": seed + len(rows),
                                  "warmup_s": opts.warmup_s, "duration_s": duration_s},
                     "load_average": float(Path("/proc/loadavg").read_text().split()[0]),
                     "error": model_p99 / net - 1.0})
    return rows


def error_summary(rows: list[dict], max_utilisation: float = 0.8) -> dict:
    """Median |error| over all points, and the most optimistic error at utilisation <= max_utilisation."""
    errors = np.array([r["error"] for r in rows])
    low = [r["error"] for r in rows if r["utilisation"] <= max_utilisation + 1e-9]
    return {"median_abs_error": float(np.median(np.abs(errors))) if len(errors) else float("nan"),
            "most_optimistic": float(min(low)) if low else float("nan"), "points": len(rows)}

