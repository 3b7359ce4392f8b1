"""Replay benchmarks (issue #11): p99 truth on Triton's dynamic batcher, and iGniter's 12 workloads replayed.

    python scripts/bench_replay.py sweep  [--duration 240]   # single emulated servers, batch x utilisation
    python scripts/bench_replay.py twelve [--duration 150 --time-scale 30]
    python scripts/bench_replay.py demo   [--runs 3 --duration 20]         # igniter demo's p99 error

Each writes its own BENCHMARKS.md section. The V100 perf model is fitted from ../shared/data/igniter-v100.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igniter.backends.hardware import cpu_hardware  # noqa: E402
from igniter.replay.sweep import Point, error_summary, solo_latency, sweep  # noqa: E402
from scripts.benchmarks_md import write_section  # noqa: E402
from tests.batcher_sim import p99 as simulated_p99  # noqa: E402
from tests.batcher_sim import simulate  # noqa: E402
from igniter.profiling.loadgen import arrival_offsets  # noqa: E402

V100 = ROOT.parent / "shared" / "data" / "igniter-v100"
IGNITER = [str(Path(sys.executable).parent / "igniter")]


def machine(load: list[str] | None = None) -> str:
    hw = cpu_hardware()
    load = load or open("/proc/loadavg").read().split()[:3]
    return (f"{hw['name']}, {hw['cores']} cores, no GPU; load average at the end {' '.join(load)} "
            f"(other engineers' work shared the cores unless that is near 0); {platform.python_version()}")


def fit_v100(work: Path) -> Path:
    model = work / "v100.json"
    if not model.exists():
        subprocess.run(IGNITER + ["import-profiles", "--format", "igniter", str(V100), "--out", str(work / "v100")],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(IGNITER + ["fit", "--profiles", str(work / "v100"), "--out", str(model)], check=True,
                       stdout=subprocess.DEVNULL)
    return model


def run_sweep(args, work: Path) -> None:
    from igniter.model import PerfModel

    pm = PerfModel.load(fit_v100(work))
    points = [Point(b, u) for b in args.batches for u in args.utilisations for _ in range(args.repeats)]
    started = time.monotonic()
    rows = sweep(pm, "resnet50", 50.0, points, work / "sweep", args.duration,
                 say=lambda m: print(m, file=sys.stderr) if not m.startswith("apply") else None,
                 at_once=args.at_once, real_ms_per_sample=args.ms_per_sample)
    for r in rows:
        latency = solo_latency(pm, "resnet50", 50.0, r["batch"])
        r["simulated_p99_ms"] = simulated_p99(r["batch"], r["rate"], r["max_queue_delay_us"] / 1000.0, latency,
                                              requests=200_000, seed=r["batch"])
        r["same_trace_p99_ms"] = same_trace_p99(r, latency)
        r["error_vs_simulation"] = r["predicted_p99_ms"] / r["simulated_p99_ms"] - 1.0
        r["error_raw"] = r["predicted_p99_ms"] / r["measured_p99_ms"] - 1.0
        r["simulation_vs_measured"] = r["simulated_p99_ms"] / r["measured_net_p99_ms"] - 1.0
    (work / "sweep.json").write_text(json.dumps(rows, indent=1))
    if args.repeats > 1:
        write_repeats_section(rows, args, time.monotonic() - started, work, pm)
    else:
        write_sweep_section(rows, args, time.monotonic() - started)


TRACE_SETS = 200   # simulated sets of R independent traces per point: the sampling band of a pooled p99


def pooled_net_p99(work: Path, rows: list[dict], args) -> tuple[float, int]:
    """The p99 of all of a point's traces' requests together (each request's latency minus its group's probe
    p50 / K, as the net p99), from each group's requests.npz; and how many requests that is."""
    latencies = []
    for r in rows:
        group = work / "sweep" / f"group-{r['group'] // args.at_once}"
        latency = np.load(group / "requests.npz")[f"{r['name']}.latency_ms"]
        latencies.append(np.nan_to_num(latency, nan=np.inf) - r["overhead_ms"])
    pooled = np.concatenate(latencies)
    return float(np.percentile(pooled, 99)), len(pooled)


def pooled_band(row: dict, latency: list[float], traces: int, sets: int = TRACE_SETS) -> tuple[float, float]:
    """2.5 and 97.5 % quantiles of (pooled p99 of ``traces`` independent Poisson traces as long as the point's
    window) / (stationary p99), by the batcher simulation (tests/batcher_sim.py, no host, not the model under
    test): how far a finite measurement's p99 strays from the stationary one by chance alone."""
    a, k = row["arrivals"], row["time_scale"]
    delay = row["max_queue_delay_us"] / 1000.0
    rng = np.random.default_rng(10_000 + row["batch"])
    horizon_ms = (a["warmup_s"] + a["duration_s"]) * 1000.0 / k
    start_ms = a["warmup_s"] * 1000.0 / k
    ratios = []
    for _ in range(sets):
        pooled = []
        for _ in range(traces):
            arrivals = np.cumsum(rng.exponential(1000.0 / row["rate"], int(row["rate"] * horizon_ms / 1000 * 1.3) + 50))
            arrivals = arrivals[arrivals < horizon_ms]
            pooled.append(simulate(arrivals, row["batch"], delay, latency)[arrivals >= start_ms])
        ratios.append(np.percentile(np.concatenate(pooled), 99) / row["simulated_p99_ms"])
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def write_repeats_section(rows: list[dict], args, seconds: float, work: Path, pm) -> None:
    """Each (batch, utilisation) sent several independent Poisson traces (seeds) at once. The measured p99 of all
    of them together, and the interval it gives the stationary p99 (what the model predicts): the pooled p99 over
    the simulated band of a pooled p99 (pooled_band). The model is really optimistic at a point only if it lies
    below that interval's lower end."""
    lines = [args.heading or "## Replay: p99 truth, repeated traces", "",
             f"`python scripts/bench_replay.py sweep --batches {' '.join(map(str, args.batches))} --utilisations "
             f"{' '.join(f'{u:g}' for u in args.utilisations)} --repeats {args.repeats} --duration {args.duration:g} "
             f"--at-once {args.at_once} --ms-per-sample {args.ms_per_sample:g}` on {machine()}; {seconds:.0f} s; "
             "the load average (1 min) at each group's end in the last column. The same emulated server as the "
             f"sweep (resnet50 at 50 % on the V100 model, D = (b-1)/rate), each point sent {args.repeats} "
             "independent Poisson traces (own seeds, own servers, at the same time). `net`: measured minus the "
             "group's probe p50 / K. `pooled`: the p99 of all the point's requests together. `interval`: the 95 % "
             "interval of the stationary p99 that the pooled p99 gives, [pooled / q97.5, pooled / q2.5], where q "
             f"are the quantiles of pooled p99 / stationary p99 over {TRACE_SETS} simulated sets of "
             f"{args.repeats} traces of the same length (tests/batcher_sim.py: the finite trace's own spread, no "
             "host). `same-trace sim`: the simulation on the very arrivals sent, pooled: net pooled vs it is the "
             "host's part. Verdict: `optimistic` if the model p99 is below the interval, `pessimistic` above it, "
             "`within` otherwise.", "",
             "| batch | util | K | requests (all traces) | model p99 | stationary sim p99 | net p99 per trace | "
             "pooled net p99 | interval | pooled same-trace sim p99 | model vs pooled | host part | verdict | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["batch"], r["utilisation"]) for r in rows})
    for b, u in keys:
        rs = [r for r in rows if (r["batch"], r["utilisation"]) == (b, u)]
        latency = solo_latency(pm, "resnet50", 50.0, b)
        pooled, n = pooled_net_p99(work, rs, args)
        lo, hi = pooled_band(rs[0], latency, len(rs))
        interval = (pooled / hi, pooled / lo)
        same = pooled_same_trace_p99(rs, latency)
        model = rs[0]["predicted_p99_ms"]
        verdict = "optimistic" if model < interval[0] else "pessimistic" if model > interval[1] else "within"
        per_trace = ", ".join(f"{r['measured_net_p99_ms']:.1f}" for r in rs)
        loads = ", ".join(sorted({f"{r['load_average']:.1f}" for r in rs}))
        lines.append(f"| {b} | {u:g} | {rs[0]['time_scale']:.1f} | {n} | {model:.1f} | {rs[0]['simulated_p99_ms']:.1f} "
                     f"| {per_trace} | {pooled:.1f} | "
                     f"[{interval[0]:.1f}, {interval[1]:.1f}] | {same:.1f} | {(model / pooled - 1) * 100:+.0f} % | "
                     f"{(pooled / same - 1) * 100:+.0f} % | {verdict} | "
                     f"{loads} |")
    write_section(lines[0], "\n".join(lines) + "\n")


def pooled_same_trace_p99(rows: list[dict], latency: list[float]) -> float:
    """same_trace_p99 over all the point's traces together."""
    pooled = []
    for row in rows:
        a = row["arrivals"]
        offsets = arrival_offsets(a["rate_rps"], a["warmup_s"] + a["duration_s"], "poisson", a["seed"])
        sim = simulate(offsets * 1000.0 / row["time_scale"], row["batch"], row["max_queue_delay_us"] / 1000.0, latency)
        pooled.append(sim[(offsets >= a["warmup_s"]) & (offsets < a["warmup_s"] + a["duration_s"])])
    return float(np.percentile(np.concatenate(pooled), 99))


def rerender_sweep(args, work: Path) -> None:
    """The section again from a finished sweep's WORKDIR/sweep.json (e.g. after adding a column): a row from an
    older sweep gets what it lacks from its group's result.json and its arrivals from (index, rate / K)."""
    from igniter.model import PerfModel

    pm = PerfModel.load(work / "v100.json")
    rows = json.loads((work / "sweep.json").read_text())
    for i, r in enumerate(rows):
        group = json.loads((work / "sweep" / f"group-{r['group'] // args.at_once}" / "result.json").read_text())
        r.setdefault("path_per_batch_real_ms", group["overhead"].get("per_batch_real_ms", float("nan")))
        r.setdefault("arrivals", {"rate_rps": r["rate"] / r["time_scale"], "seed": i, "warmup_s": 3.0,
                                  "duration_s": args.duration})
        r["same_trace_p99_ms"] = same_trace_p99(r, solo_latency(pm, "resnet50", 50.0, r["batch"]))
    (work / "sweep.json").write_text(json.dumps(rows, indent=1))
    if args.repeats > 1:
        write_repeats_section(rows, args, args.seconds, work, pm)
    else:
        write_sweep_section(rows, args, args.seconds, args.load.split() if args.load else None)


def same_trace_p99(row: dict, latency: list[float]) -> float:
    """The batcher simulation (tests/batcher_sim.py) on the very arrivals the point was sent (run.schedule's
    Poisson offsets, real s -> unscaled ms), over its measured window: what the finite trace alone gives, no host."""
    a = row["arrivals"]
    offsets = arrival_offsets(a["rate_rps"], a["warmup_s"] + a["duration_s"], "poisson", a["seed"])
    latencies = simulate(offsets * 1000.0 / row["time_scale"], row["batch"], row["max_queue_delay_us"] / 1000.0,
                         latency)
    window = (offsets >= a["warmup_s"]) & (offsets < a["warmup_s"] + a["duration_s"])
    return float(np.percentile(latencies[window], 99))


def write_sweep_section(rows: list[dict], args, seconds: float, load: list[str] | None = None) -> None:
    """The BENCHMARKS.md section of a sweep's rows (sweep.json); `load` is each group's at its end, ``load`` the
    load average at the end of the run (default: now)."""
    net = error_summary(rows)
    raw = error_summary([{**r, "error": r["error_raw"]} for r in rows])
    simulated = error_summary([{**r, "error": r["error_vs_simulation"]} for r in rows])
    sim_measured = error_summary([{**r, "error": r["simulation_vs_measured"]} for r in rows])
    host = [r["measured_net_p99_ms"] / r["same_trace_p99_ms"] - 1.0 for r in rows]
    trace = error_summary([{**r, "error": r["predicted_p99_ms"] / r["same_trace_p99_ms"] - 1.0} for r in rows])
    by_util = {u: [abs(r["error"]) for r in rows if r["utilisation"] == u]
               for u in sorted({r["utilisation"] for r in rows})}
    by_batch = {b: [abs(r["error"]) for r in rows if r["batch"] == b] for b in sorted({r["batch"] for r in rows})}
    firsts = [r for i, r in enumerate(rows) if r["group"] == i]   # each group's first row
    group_loads = ", ".join(f"{r['load_average']:.1f}" for r in firsts)
    per_batch = ", ".join(f"{r['path_per_batch_real_ms']:.2f}" for r in firsts)
    per_batch = "not measured (the run predates it; nothing was left out)" if "nan" in per_batch else per_batch + " ms"
    groups = len(firsts)
    lines = [getattr(args, "heading", None) or "## Replay: p99 truth on Triton's dynamic batcher", "",
             f"`python scripts/bench_replay.py sweep --duration {args.duration:g} --at-once {args.at_once} "
             f"--ms-per-sample {args.ms_per_sample:g}` on {machine(load)}; {seconds:.0f} s; "
             f"load average (1 min) at the end of each group: {group_loads}; the path's real time per batch "
             f"measured on the probe and left out of every hold (run.py PathTracker), mean per group: {per_batch}.",
             "",
             "One real tritonserver per point (python-backend emulated accelerator, "
             "igniter/triton/emulated_backend.py), Triton's own dynamic batcher (preferred batch = max batch = b, "
             "max queue delay D = (b-1)/rate as the planner sets it), Poisson arrivals over real gRPC from one asyncio "
             f"client; the {len(rows)} points in {groups} groups of {args.at_once} run one group after another (each group's "
             "points at once on separate emulated GPUs, with its own zero-latency probe). Batch latency L(n) of the n "
             "samples Triton actually batched: the V100 perf model's resnet50 at 50 % share. Each point has its own "
             f"time scale K (a batch of b holds {args.ms_per_sample:g} x b real ms), times are unscaled. "
             "`model`: igniter/provisioning/queueing.py; `simulated`: a discrete-event simulation of the batcher "
             "(tests/batcher_sim.py, 200k requests); `net p99` = measured p99 - the probe's p50 / K (the real path "
             "that the emulation adds and a GPU's batch time would not); `probe p99 / K`: the real path's p99 in the "
             "same group at the same time, scaled like the point: the size of the host stalls its tail can carry.", "",
             f"Model vs measured (net): median |error| {net['median_abs_error'] * 100:.1f} %, most optimistic at "
             f"utilisation <= 0.8: {net['most_optimistic'] * 100:+.1f} % (raw, nothing subtracted: "
             f"{raw['median_abs_error'] * 100:.1f} %, {raw['most_optimistic'] * 100:+.1f} %). Model vs simulation: "
             f"median |error| {simulated['median_abs_error'] * 100:.1f} %, most optimistic at utilisation <= 0.8: "
             f"{simulated['most_optimistic'] * 100:+.1f} %. Simulation vs measured (net), the same batcher semantics "
             f"without host: median |error| {sim_measured['median_abs_error'] * 100:.1f} %, most optimistic "
             f"{sim_measured['most_optimistic'] * 100:+.1f} %.", "",
             "Where the error comes from, per point: `same-trace sim` is the batcher simulation on the very arrivals "
             "the point was sent (its Poisson seed, its measured window): what the finite trace alone gives, no host. "
             f"Measured (net) vs same-trace sim, the host's part: median {statistics.median(host) * 100:+.1f} %, "
             f"{min(host) * 100:+.1f} % to {max(host) * 100:+.1f} %. Model vs same-trace sim, the model's part plus "
             f"the finite trace's: median |error| {trace['median_abs_error'] * 100:.1f} %, most optimistic at "
             f"utilisation <= 0.8: {trace['most_optimistic'] * 100:+.1f} %.", "",
             "Median |model vs measured (net)| by utilisation: "
             + ", ".join(f"{u:g}: {statistics.median(v) * 100:.0f} %" for u, v in by_util.items())
             + "; by batch: " + ", ".join(f"{b}: {statistics.median(v) * 100:.0f} %" for b, v in by_batch.items()) + ".", "",
             "| batch | util | L(b) ms | D ms | K | requests | model p99 | simulated p99 | same-trace sim p99 "
             "| measured p50 | measured p99 | net p99 | probe p99 / K | model vs net | model vs simulated "
             "| net vs same-trace | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['utilisation']:g} | {r['latency_ms']:.2f} | "
                     f"{r['max_queue_delay_us'] / 1000:.2f} | {r['time_scale']:.1f} | {r['requests']} | "
                     f"{r['predicted_p99_ms']:.1f} | {r['simulated_p99_ms']:.1f} | {r['same_trace_p99_ms']:.1f} | "
                     f"{r['measured_p50_ms']:.1f} | {r['measured_p99_ms']:.1f} | {r['measured_net_p99_ms']:.1f} | "
                     f"{r['overhead_p99_ms']:.2f} | {r['error'] * 100:+.0f} % | {r['error_vs_simulation'] * 100:+.0f} % "
                     f"| {(r['measured_net_p99_ms'] / r['same_trace_p99_ms'] - 1) * 100:+.0f} % "
                     f"| {r['load_average']:.1f} |")
    write_section(lines[0], "\n".join(lines) + "\n")


def provision(work: Path, model: Path, name: str, latency_model: str, slo_factor: float = 1.0) -> Path:
    """A plan of the 12 workloads (WORKDIR/plan-NAME, kept: a rerun replays it); slo_factor > 1 plans against
    looser SLOs (fewer GPUs); plan.json then carries the true SLOs again so the replay counts attainment against
    them."""
    if (work / f"plan-{name}" / "plan.json").exists():   # a rerun replays the very plan (the ILP may differ)
        return work / f"plan-{name}" / "plan.json"
    workloads = yaml.safe_load((ROOT / "examples" / "workloads-12.yaml").read_text())
    true_slo = {w["name"]: w["slo_ms"] for w in workloads["workloads"]}
    for w in workloads["workloads"]:
        w["slo_ms"] = w["slo_ms"] * slo_factor
    path = work / f"workloads-{name}.yaml"
    path.write_text(yaml.safe_dump(workloads))
    out = work / f"plan-{name}"
    command = IGNITER + ["provision", "--workloads", str(path), "--perf-model", str(model), "--out", str(out),
                         "--latency-model", latency_model, "--json"]
    for attempt in range(4):   # the bundled CBC sometimes exits with an error at its time limit (PulpSolverError)
        if subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            break
    else:
        raise SystemExit(f"provision failed four times: {' '.join(command)}")
    plan = json.loads((out / "plan.json").read_text())
    for g in plan["gpus"]:
        for s in g["servers"]:
            s["slo_ms"] = true_slo[s["workload"]]
    (out / "plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True))
    return out / "plan.json"


def twelve_plans(args) -> list[tuple[str, str, float]]:
    plans = ([("half-slo", "half-slo", 1.0), ("queueing", "queueing", 1.0)]
             + [(f"queueing-slo-x{f:g}", "queueing", f) for f in args.slo_factors])
    return [p for p in plans if args.plans is None or p[0] in args.plans]


def run_twelve(args, work: Path) -> None:
    from igniter.replay.emulator import read_plan
    from igniter.replay.run import ReplayOptions, run_replay

    model = fit_v100(work)
    results = []
    for name, latency_model, factor in twelve_plans(args):
        plan_path = provision(work, model, name, latency_model, factor)
        scales = gpu_scales(read_plan(plan_path), args) if args.real_rps_per_gpu else None
        print(f"{name}: replaying {plan_path}" + (f", K per GPU {scales}" if scales else ""), file=sys.stderr)
        result = run_replay(ReplayOptions(plan=plan_path, perf_model=model, workdir=work / f"replay-{name}",
                                          time_scale=args.time_scale, duration_s=args.duration, seed=args.seed,
                                          server_scales=scales),
                            lambda m: print(m, file=sys.stderr) if "ETA" in m else None)
        result["load_average"] = open("/proc/loadavg").read().split()[:3]
        result["server_scales"] = scales
        (work / f"replay-{name}" / "result.json").write_text(json.dumps(result, indent=1, default=float))
        results.append(result)
    (work / "twelve.json").write_text(json.dumps(results, indent=1, default=float))
    if args.real_rps_per_gpu:   # its oracle simulates minutes of CPU: `twelve-render` at low priority, unlocked
        print(f"kept in {work}; render with: python scripts/bench_replay.py twelve-render --real-rps-per-gpu "
              f"{args.real_rps_per_gpu:g} ...", file=sys.stderr)
    else:
        write_twelve_section(args, work, results)


STALL_REAL_MS = 25.0   # a host stall the per-GPU time scale keeps small (the probe's real p99 on a busy host)
STALL_SHARE = 0.05     # ... at most this share of the GPU's tightest SLO, unscaled


def gpu_scales(servers, args) -> dict[str, float]:
    """A time scale K per emulated GPU (its servers share it: partners interfere in real time), so that each GPU
    gets at most --real-rps-per-gpu real requests/s but never a K so small that a real host stall of STALL_REAL_MS
    is over STALL_SHARE of the GPU's tightest SLO: low-rate GPUs then send more real requests than one K for all
    would give them, and the attainment of every workload gets a usable number of requests."""
    by_gpu: dict[str, list] = {}
    for s in servers:
        by_gpu.setdefault(s.gpu, []).append(s)
    k_of_gpu = {g: max(STALL_REAL_MS / (STALL_SHARE * min(s.slo_ms for s in v)),
                       sum(s.rate for s in v) / args.real_rps_per_gpu) for g, v in by_gpu.items()}
    return {s.name: round(k_of_gpu[s.gpu], 3) for s in servers}


def attainment_interval(latency_ms: np.ndarray, sent_s: np.ndarray, slo_ms: float, chunks: int = 10) -> dict:
    """Attainment (failures count as misses) with two 95 % intervals: Wilson's binomial one on the requests (as if
    independent), and batch means over ``chunks`` equal spans of the window (t on chunks - 1 degrees of freedom),
    which also carries the correlation of nearby requests (a burst misses many at once)."""
    from scripts.mutation_sample import wilson

    within = np.nan_to_num(latency_ms, nan=np.inf) <= slo_ms
    low, high = wilson(int(within.sum()), len(within))
    edges = np.linspace(np.nanmin(sent_s), np.nanmax(sent_s) + 1e-9, chunks + 1)
    which = np.clip(np.searchsorted(edges, sent_s, side="right") - 1, 0, chunks - 1)
    means = np.array([within[which == c].mean() for c in range(chunks) if np.any(which == c)])
    half = 2.262 * means.std(ddof=1) / np.sqrt(len(means)) if len(means) > 1 else np.inf  # t(0.975, 9)
    return {"attainment": float(within.mean()), "wilson": (low, high), "requests": int(len(within)),
            "batch_means": (float(means.mean() - half), float(min(means.mean() + half, 1.0)))}


def verdict(interval: tuple[float, float], goal: float = 0.99) -> str:
    low, high = interval
    return "meets" if low >= goal else "misses" if high < goal else "undecided"


def write_attainment_section(args, work: Path) -> None:
    """The plans' runs (WORKDIR/replay-<plan>/result.json and requests.npz) with per-workload intervals."""
    plans = [p for p in twelve_plans(args) if (work / f"replay-{p[0]}" / "requests.npz").exists()]
    results = {n: json.loads((work / f"replay-{n}" / "result.json").read_text()) for n, *_ in plans}
    requests = {n: np.load(work / f"replay-{n}" / "requests.npz") for n, *_ in plans}
    lines = [args.heading or "## Replay: the fewest GPUs for 99 % on every one of the 12 workloads, by measurement", "",
             f"`python scripts/bench_replay.py twelve --duration {args.duration:g} --real-rps-per-gpu "
             f"{args.real_rps_per_gpu:g} --seed {args.seed} --slo-factors {' '.join(f'{f:g}' for f in args.slo_factors)}"
             " --plans ...` "
             "(one plan per locked run), 2-core AMD EPYC VM, no GPU; the load average at each run's end is in the "
             "first table (other engineers' work shared the cores where it is over 1).", "",
             "Plans by the ILP (`igniter provision`, default queueing model) from examples/workloads-12.yaml with the "
             "V100 perf model fitted on ../shared/data/igniter-v100; `queueing-slo-xF`: planned against every SLO x F "
             "(the model's SLO margin loosened until the ILP needs fewer GPUs) and measured against the true SLOs. "
             "Replayed with `igniter replay` (Triton's dynamic batcher, real gRPC, Poisson arrivals at the planned "
             "rates, emulated batch times with interference while partners are busy, the path's per-batch time left "
             "out of the holds). Each emulated GPU has its own time scale K (bench_replay.gpu_scales: at most "
             f"{args.real_rps_per_gpu:g} real req/s per GPU, K >= {STALL_REAL_MS:g} ms / ({STALL_SHARE:g} x the GPU's "
             "tightest SLO)), so low-rate workloads get enough requests; times unscaled. Attainment: requests within "
             "SLO / requests sent in the window (failures count as misses), with 95 % intervals: Wilson (binomial on "
             "the requests) and batch means (10 equal spans of the window; wider, it carries the correlation of "
             "nearby requests). Verdict on the binomial interval: `meets` (lower end >= 99 %), `misses` (upper end "
             "< 99 %), `undecided`.", "",
             "| plan | GPUs | servers | real s | workloads meeting / missing / undecided | worst attainment "
             "| probe p50 / p99 real ms | path per batch, real ms | load average at the end |",
             "|---|---|---|---|---|---|---|---|---|"]
    cells: dict[str, dict[str, str]] = {}
    for name, *_ in plans:
        r, req = results[name], requests[name]
        oracle = plan_oracle(work, name, r, args)
        verdicts = []
        for w in r["workloads"]:
            iv = attainment_interval(req[f"{w['name']}.latency_ms"], req[f"{w['name']}.sent_s"], w["slo_ms"])
            verdicts.append(verdict(iv["wilson"]))
            ks = sorted({v for k, v in (r.get("server_scales") or {}).items()   # server names: gpuN-<workload>-rM
                         if k.split("-", 1)[1].rsplit("-", 1)[0] == w["name"]})
            cells.setdefault(w["name"], {})[name] = (
                f"{w['predicted_p99_ms']:.1f} / {w['measured_p99_ms']:.1f}, {iv['attainment'] * 100:.2f} % "
                f"[{iv['wilson'][0] * 100:.2f}, {iv['wilson'][1] * 100:.2f}] "
                f"(bm [{iv['batch_means'][0] * 100:.2f}, {iv['batch_means'][1] * 100:.2f}]), {iv['requests']} req, "
                f"K {'/'.join(f'{k:.0f}' for k in ks)}: **{verdicts[-1]}**")
            o = oracle.get(w["name"])
            if o:
                cells[w["name"]][name] += (f" [sim: same-trace {o['same_p99']:.1f}, {o['same_att'] * 100:.2f} %; "
                                           f"stationary {o['stat_p99']:.1f}, {o['stat_att'] * 100:.2f} % "
                                           f"(bm [{o['stat_batch_means'][0] * 100:.2f}, "
                                           f"{o['stat_batch_means'][1] * 100:.2f}])"
                                           + (f"; same-trace + probe {o['host_att'] * 100:.2f} %" if "host_att" in o
                                              else "") + "]")
        lines.append(f"| {name} | {r['gpus']} | {r['servers']} | {r['duration_s']:g} | "
                     f"{verdicts.count('meets')} / {verdicts.count('misses')} / {verdicts.count('undecided')} | "
                     f"{r['attainment_min'] * 100:.2f} % | {r['overhead']['real_p50_ms']:.2f} / "
                     f"{r['overhead']['real_p99_ms']:.2f} | {r['overhead'].get('per_batch_real_ms', float('nan')):.2f} "
                     f"| {' '.join(r['load_average'])} |")
    lines += ["", "Per workload: predicted / measured p99 ms, attainment [Wilson 95 %] (bm [batch-means 95 %]), "
              "requests, the K of its GPU(s): verdict; [sim: ...] is the simulation of each emulated GPU as a whole "
              "(tests/batcher_sim.simulate_gpu: Triton's batcher semantics, the replay's holds with interference while "
              "partners are busy, no host) on the very arrivals the replay sent and stationary "
              f"({STATIONARY_REQUESTS:,} "
              "requests on the GPU's slowest server): what the trace and the plan give without this host's stalls; "
              "`same-trace + probe`: the same-trace simulation plus, per request, an independent draw of the "
              "zero-latency probe's real latency in that run / K (the host's path and stalls as the probe met them): "
              "what the measurement should read if the host alone makes the difference.", "",
              "| workload | SLO ms | " + " | ".join(n for n, *_ in plans) + " |", "|---|---|" + "---|" * len(plans)]
    first = results[plans[0][0]]["workloads"]
    for w in first:
        lines.append(f"| {w['name']} | {w['slo_ms']:g} | " + " | ".join(cells[w["name"]].get(n, "-") for n, *_ in plans)
                     + " |")
    write_section(lines[0], "\n".join(lines) + "\n")


STATIONARY_REQUESTS = int(os.environ.get("IGNITER_BENCH_STATIONARY", 100_000))  # the stationary oracle's
# simulated requests on each GPU's slowest server (more: a tighter interval, minutes more CPU)


def plan_oracle(work: Path, name: str, result: dict, args) -> dict[str, dict]:
    """Every workload: the batcher simulation of each emulated GPU as a whole (tests/batcher_sim.simulate_gpu:
    its servers' batchers, holds from the same latency tables as the replay's, slowed by the partners busy at the
    time), on the very arrivals the replay sent (run.schedule: seed = --seed + the server's index, its own K) and
    stationary (STATIONARY_REQUESTS on the GPU's slowest server): the trace's and the plan's attainment and p99
    without this host. The replay's per-request pipeline delay (latency - hold) is added to both."""
    from igniter.model import PerfModel
    from igniter.replay.emulator import latency_tables, read_plan
    from tests.batcher_sim import simulate_gpu

    servers = read_plan(work / f"plan-{name}" / "plan.json")
    tables = latency_tables(PerfModel.load(work / "v100.json"), servers)
    scales = result.get("server_scales") or {}
    seed = getattr(args, "seed", 0)
    index = {s.name: i for i, s in enumerate(servers)}
    kept = work / f"replay-{name}" / "requests.npz"
    probe = np.load(kept).get("calibration.latency_ms") if kept.exists() else None
    probe = probe[np.isfinite(probe)] * result["time_scale"] if probe is not None else None   # real ms again
    draw = np.random.default_rng(7)
    same: dict[str, list] = {}
    hosted: dict[str, list] = {}
    stationary_at: dict[str, list] = {}
    stationary: dict[str, list] = {}
    for gpu in sorted({s.gpu for s in servers}):
        on_gpu = [s for s in servers if s.gpu == gpu]
        horizon_ms = STATIONARY_REQUESTS / min(s.rate for s in on_gpu) * 1000.0
        rng = np.random.default_rng(index[on_gpu[0].name])
        windows, traces, long_runs = [], [], []
        for s in on_gpu:
            k = scales.get(s.name, result["time_scale"])
            offsets = arrival_offsets(s.rate / k, 3.0 + args.duration, "poisson", seed + index[s.name])
            windows.append((offsets >= 3.0) & (offsets < 3.0 + args.duration))
            traces.append(offsets * 1000.0 / k)
            arrivals = np.cumsum(rng.exponential(1000.0 / s.rate, int(s.rate * horizon_ms / 1000 * 1.2) + 100))
            long_runs.append(arrivals[arrivals < horizon_ms])
        spec = lambda s, a: {  # noqa: E731
            "arrivals_ms": a, "batch": s.batch, "delay_ms": s.max_queue_delay_us / 1000.0,
            "table": tables[s.name]["latency_ms"], "partners": tables[s.name]["partners"]}
        for s, w, got in zip(on_gpu, windows, simulate_gpu([spec(s, a) for s, a in zip(on_gpu, traces)])):
            same.setdefault(s.workload, []).append(got[w] + tables[s.name]["pipeline_ms"])
            if probe is not None and len(probe):   # + the path as the probe met it at the time, scaled like s
                k = scales.get(s.name, result["time_scale"])
                hosted.setdefault(s.workload, []).append(same[s.workload][-1] + draw.choice(probe, int(w.sum())) / k)
        for s, a, got in zip(on_gpu, long_runs, simulate_gpu([spec(s, a) for s, a in zip(on_gpu, long_runs)])):
            kept_part = a >= 0.02 * horizon_ms
            stationary.setdefault(s.workload, []).append(got[kept_part] + tables[s.name]["pipeline_ms"])
            stationary_at.setdefault(s.workload, []).append(a[kept_part])
    out = {}
    slo = {s.workload: s.slo_ms for s in servers}
    for workload in same:
        same_all, stat_all = np.concatenate(same[workload]), np.concatenate(stationary[workload])
        out[workload] = {"same_p99": float(np.percentile(same_all, 99)),
                         "same_att": float(np.mean(same_all <= slo[workload])),
                         "stat_p99": float(np.percentile(stat_all, 99)),
                         "stat_att": float(np.mean(stat_all <= slo[workload])), "stat_requests": len(stat_all),
                         "stat_batch_means": attainment_interval(stat_all, np.concatenate(stationary_at[workload]),
                                                                 slo[workload])["batch_means"]}
        if workload in hosted:
            out[workload]["host_att"] = float(np.mean(np.concatenate(hosted[workload]) <= slo[workload]))
    return out


def write_twelve_section(args, work: Path, results: list[dict]) -> None:
    plans = twelve_plans(args)
    oracles = {name: plan_oracle(work, name, r, args) for (name, *_), r in zip(plans, results)}
    lines = [args.heading or "## Replay: iGniter's 12 workloads on emulated V100s", "",
             f"`python scripts/bench_replay.py twelve --duration {args.duration:g} --time-scale {args.time_scale:g} "
             f"--slo-factors {' '.join(f'{f:g}' for f in args.slo_factors)}"
             + (f" --plans {' '.join(args.plans)}" if args.plans else "") + "` on "
             f"{machine(results[-1].get('load_average'))}.", "",
             "Plans by the ILP from examples/workloads-12.yaml with the V100 perf model fitted on "
             "../shared/data/igniter-v100; `half-slo` is iGniter's p99 = 2 x L rule, `queueing` our model (the "
             "default), `queueing-slo-xF` our model planning against SLOs x F (fewer GPUs) and measured against the "
             "true SLOs. Replayed with `igniter replay` (Poisson arrivals at the planned rates, emulated batch times "
             "with interference from busy partners on the same emulated GPU, the path's per-batch time left out of the "
             "holds); times unscaled; attainment = share of requests within the SLO; "
             f"{args.duration / args.time_scale:g} emulated seconds per plan. The plans ran one after another.", "",
             "| plan | GPUs | servers | worst attainment | workloads >= 99 % | probe p50 / p99 ms (unscaled) "
             "| path per batch, real ms | load average at the end |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, *_), r in zip(plans, results):
        ok = sum(w["attainment"] >= 0.99 for w in r["workloads"])
        lines.append(f"| {name} | {r['gpus']} | {r['servers']} | {r['attainment_min'] * 100:.1f} % | "
                     f"{ok}/{len(r['workloads'])} | {r['overhead']['unscaled_p50_ms']:.2f} / "
                     f"{r['overhead']['unscaled_p99_ms']:.2f} | {r['overhead'].get('per_batch_real_ms', float('nan')):.2f} "
                     f"| {' '.join(r['load_average'])} |")
    lines += ["", "Per workload: predicted / measured p99 ms, measured attainment (requests); with "
              "`[sim: same-trace p99, attainment; stationary p99, attainment]`: the "
              "batcher simulation with the same emulated batch times on the very arrivals the replay sent, and over "
              "200k arrivals (no host; what the finite trace and the model give).", "",
              "| workload | SLO ms | " + " | ".join(f"{n}" for n, *_ in plans) + " |",
              "|---|---|" + "---|" * len(plans)]
    names = [w["name"] for w in results[0]["workloads"]]
    for wname in names:
        cells = []
        for (name, *_), r in zip(plans, results):
            w = next(x for x in r["workloads"] if x["name"] == wname)
            cell = (f"{w['predicted_p99_ms']:.1f} / {w['measured_p99_ms']:.1f}, {w['attainment'] * 100:.1f} % "
                    f"({w['requests']})")
            o = oracles[name].get(wname)
            if o:
                cell += (f" [sim: {o['same_p99']:.1f}, {o['same_att'] * 100:.1f} %; {o['stat_p99']:.1f}, "
                         f"{o['stat_att'] * 100:.2f} %]")
            cells.append(cell)
        slo = results[0]["workloads"][names.index(wname)]["slo_ms"]
        lines.append(f"| {wname} | {slo:g} | " + " | ".join(cells) + " |")
    write_section(lines[0], "\n".join(lines) + "\n")


def run_demo(args, work: Path) -> None:
    """`igniter demo --json` ``--runs`` times, one after another, at normal priority; the load average beside each."""
    hardware = json.loads((ROOT / "profiles" / "cpu-2core" / "hardware.json").read_text())
    runs = []
    for i in range(args.runs):
        before = open("/proc/loadavg").read().split()[0]
        out = subprocess.run(IGNITER + ["demo", "--duration", f"{args.duration:g}", "--workdir", str(work / f"demo-{i}"),
                                        "--json"], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"igniter demo failed: {out.stderr[-2000:]}")
        result = json.loads(out.stdout)
        result["load_before"], result["load_after"] = before, open("/proc/loadavg").read().split()[0]
        runs.append(result)
        print(f"demo run {i + 1}/{args.runs}: " + ", ".join(
            f"{w['name']} {w['predicted_p99_ms']:.1f}/{w['measured_p99_ms']:.1f} ms" for w in result["workloads"])
            + f"; load {result['load_before']} -> {result['load_after']}", file=sys.stderr)
    (work / "demo.json").write_text(json.dumps(runs, indent=1, default=float))
    calibration = ", ".join(f"{r['rate_rps']:g} req/s: p50 {r['p50_ms']:.2f} / p99 {r['p99_ms']:.2f} ms "
                            f"(load {r.get('load_average', float('nan')):.1f})" for r in hardware.get("path_overhead", []))
    lines = ["## Replay: the CPU demo, predicted vs measured p99", "",
             f"`python scripts/bench_replay.py demo --runs {args.runs} --duration {args.duration:g}` on {machine()}. "
             "Each run is a fresh `igniter demo --json` (examples/demo_workloads.yaml: vision = convnet and ranking = "
             "mlp at 150 req/s each, SLO 25 ms; shipped profiles profiles/cpu-2core), its traffic through the front "
             "door (Caddy) from igniter's load generator on the same 2 cores; error = predicted / measured - 1. "
             "The predicted p99 includes the path term (queueing.path_overhead_ms at the host's 300 req/s) from the "
             f"calibration in profiles/cpu-2core/hardware.json: {calibration or 'none'}.", "",
             "| run | load average before / after | hosts | path term ms | workload | predicted p99 ms | measured p99 ms "
             "| error | attainment | requests | failed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs, start=1):
        for w in r["workloads"]:
            lines.append(f"| {i} | {r['load_before']} / {r['load_after']} | {r['hosts']} | {r['path_overhead_ms']:.2f} "
                         f"| {w['name']} | {w['predicted_p99_ms']:.1f} | {w['measured_p99_ms']:.1f} | "
                         f"{(w['predicted_p99_ms'] / w['measured_p99_ms'] - 1) * 100:+.0f} % | "
                         f"{w['attainment'] * 100:.2f} % | {w['requests']} | {w['failed']} |")
    write_section(lines[0], "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["sweep", "sweep-render", "twelve", "twelve-render", "demo"])
    parser.add_argument("--duration", type=float, default=None, help="real seconds of measured traffic per run")
    parser.add_argument("--time-scale", type=float, default=30.0)
    parser.add_argument("--slo-factors", type=float, nargs="*", default=[1.5])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3, help="demo: how many demo runs")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="sweep: batch sizes")
    parser.add_argument("--utilisations", type=float, nargs="+", default=[0.2, 0.5, 0.8, 0.95],
                        help="sweep: utilisations")
    parser.add_argument("--repeats", type=int, default=1, help="sweep: independent traces per point")
    parser.add_argument("--seconds", type=float, default=0.0, help="sweep-render: the sweep's wall time")
    parser.add_argument("--load", default="", help="sweep-render: the load average at the sweep's end")
    parser.add_argument("--heading", default="", help="sweep-render: a BENCHMARKS.md heading of its own")
    parser.add_argument("--real-rps-per-gpu", type=float, default=0.0,
                        help="twelve: a time scale per emulated GPU giving it at most this many real req/s "
                             "(gpu_scales; 0: --time-scale for all) and the attainment section with intervals")
    parser.add_argument("--seed", type=int, default=0, help="twelve: seed of the arrival processes")
    parser.add_argument("--plans", nargs="*", default=None, help="twelve: only these plans (default: all)")
    parser.add_argument("--at-once", type=int, default=8, help="sweep: points measured at the same time")
    parser.add_argument("--ms-per-sample", type=float, default=40.0,
                        help="sweep: real ms a batch holds per sample (sets each point's K)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "sweep":
        args.duration = args.duration or 240.0
        run_sweep(args, work)
    elif args.what == "sweep-render":
        args.duration = args.duration or 240.0
        rerender_sweep(args, work)
    elif args.what == "twelve-render":
        args.duration = args.duration or 150.0
        if args.real_rps_per_gpu:
            write_attainment_section(args, work)
        else:
            write_twelve_section(args, work, json.loads((work / "twelve.json").read_text()))
    elif args.what == "demo":
        args.duration = args.duration or 20.0
        run_demo(args, work)
    else:
        args.duration = args.duration or 150.0
        run_twelve(args, work)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
