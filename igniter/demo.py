"""The embedded end-to-end demo: profile -> fit -> provision -> apply -> replay the planned rates -> report.

Runs on a CPU-only host against real local Triton servers with the demo model zoo. Every figure it prints is
measured in this run (or read from the profiles it reused, which it says).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from igniter.deployment.apply import Deployer
from igniter.deployment.report import write_html_report
from igniter.deployment.state import load_state
from igniter.model import PerfModel
from igniter.ownership import make_owned_dir
from igniter.profiling.backends import get_backend
from igniter.backends.hardware import cpu_hardware
from igniter.profiling.loadgen import LoadResult, LoadSpec, run_concurrent
from igniter.profiling.runner import ProfileSpec, run_profile
from igniter.profiling.store import ProfileStore
from igniter.provisioning import run as provision
from igniter.provisioning.plan import Plan, read_launch, read_plan, write_plan
from igniter.provisioning.summary import worst_p99
from igniter.replay import breakdown
from igniter.replay.calibrate import calibrate_store
from igniter.triton.demo_zoo import DEMO_MODELS, ensure_demo_repo

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION_RATES = [20.0, 150.0, 300.0, 600.0]   # req/s: the shipped store's, around the demo's 300 per host


@dataclass
class DemoOptions:
    workdir: Path = Path(".igniter/demo")
    repo: Path = ROOT / "triton_repo"
    profiles: Path = ROOT / "profiles" / "cpu-2core"
    workloads: Path = ROOT / "examples" / "demo_workloads.yaml"
    duration_s: float = 20.0
    warmup_s: float = 2.0
    strategy: str = "ilp"


def hardware_matches(stored: dict, here: dict) -> bool:
    return all(stored.get(k) == here.get(k) for k in ("kind", "name", "cores"))


def obtain_profiles(opts: DemoOptions, say: Callable[[str], None]) -> tuple[Path, str]:
    """Reuse the shipped profiles when they were measured on this machine class, else profile briefly now."""
    shipped = ProfileStore(opts.profiles)
    if (opts.profiles / "hardware.json").exists() and hardware_matches(shipped.read_hardware(), cpu_hardware()):
        say(f"profiles: reusing {opts.profiles} (measured on this machine class)")
        return opts.profiles, "reused"
    out = opts.workdir / "profiles"
    say(f"profiles: this machine differs from {opts.profiles}; profiling briefly into {out}")
    spec = ProfileSpec(repo=opts.repo, models=[m.name for m in DEMO_MODELS], batches=[1, 2, 4, 8], shares=[50.0, 100.0],
                       pairs=4, duration_s=1.5, warmup_s=0.5)
    with get_backend("cpu") as backend:
        run_profile(spec, ProfileStore(out), backend)
    # without it every predicted p99 would leave out the client, front door and gRPC hops (several ms here)
    say(f"calibrate: this host's request path at {', '.join(f'{r:g}' for r in CALIBRATION_RATES)} req/s")
    calibrate_store(out, CALIBRATION_RATES, 5.0, opts.workdir / "calibration", say, warmup_s=1.0)
    return out, "measured now"


def replay(plan: Plan, state_path: Path, opts: DemoOptions) -> tuple[dict[str, list], dict]:
    """Open-loop Poisson arrivals at every workload's planned rate, all at once, sent where its clients send: its
    front door, which splits them over the replicas by the planned weights; single-sample requests. The one result
    stands for the whole workload: its other replicas add their plan entries (rate, predicted p99), no traffic.
    Also returns where the time and the CPU went (``where_time_went``)."""
    state = load_state(state_path)
    endpoints = state.endpoints_by_workload()
    replicas: dict[str, list] = {}
    for _, entry in plan.servers():
        replicas.setdefault(entry.workload, []).append(entry)
    names = sorted(replicas)
    specs = [LoadSpec(endpoints[name]["grpc"], replicas[name][0].model, 1, "open",
                      rate_rps=sum(e.rate for e in replicas[name]), seed=i) for i, name in enumerate(names)]
    servers = {name: [(state.servers[e.name].grpc, e.model, state.servers[e.name].pid) for e in replicas[name]]
               for name in names}
    door = state.frontdoor.pid if state.frontdoor else None
    before = _readings(servers, door)
    results = run_concurrent(specs, opts.duration_s, opts.warmup_s)
    split = where_time_went(before, _readings(servers, door))
    return ({name: [(replicas[name][0], result)] + [(entry, _no_traffic(result)) for entry in replicas[name][1:]]
             for name, result in zip(names, results)}, split)


def _readings(servers: dict[str, list[tuple[str, str, int | None]]], door_pid: int | None) -> dict:
    return {"counters": {name: [breakdown.read_counters(grpc, model) for grpc, model, _ in replicas]
                         for name, replicas in servers.items()},
            "cpu_s": {"servers": sum(breakdown.group_cpu_s(pid) for reps in servers.values() for *_, pid in reps),
                      "front_door": breakdown.group_cpu_s(door_pid), "load_generator": breakdown.own_cpu_s()},
            "host_s": breakdown.host_busy_s()}


def where_time_went(before: dict, after: dict) -> dict:
    """Per workload Triton's mean queue and compute ms per request; per party the cores it kept busy on average
    over the run (servers with their python stubs, front door, load generator, everything else on the host)."""
    wall = max(after["host_s"][1] - before["host_s"][1], 1e-9)
    cores = {party: (after["cpu_s"][party] - before["cpu_s"][party]) / wall for party in before["cpu_s"]}
    cores["other"] = (after["host_s"][0] - before["host_s"][0]) / wall - sum(cores.values())
    return {"workloads": {name: breakdown.split_ms(before["counters"][name], after["counters"][name])
                          for name in before["counters"]},
            "cores_busy": {party: round(value, 3) for party, value in cores.items()}}


def _no_traffic(result: LoadResult) -> LoadResult:
    return LoadResult(np.array([], dtype=float), 0, 0, 0, result.duration_s, 0.0, batch=result.batch, model=result.model)


def summarise(by_workload: dict[str, list]) -> list[dict]:
    rows = []
    for name, runs in sorted(by_workload.items()):
        entry = runs[0][0]
        latencies = np.concatenate([r.latencies_ms for _, r in runs]) if runs else np.array([])
        sent = sum(r.ok + r.failed for _, r in runs)
        failed = sum(r.failed for _, r in runs)
        within = int(np.sum(latencies <= entry.slo_ms))
        lags = [r.send_lag_ms for _, r in runs if r.send_lag_ms is not None]
        rows.append({
            "name": name, "model": entry.model, "rate": sum(e.rate for e, _ in runs),
            "slo_ms": entry.slo_ms, "replicas": len(runs), "batch": entry.batch, "share": entry.share,
            "predicted_p99_ms": worst_p99([e.predicted_p99_ms for e, _ in runs]),
            "measured_p99_ms": _p99(latencies),
            "measured_mean_ms": float(np.mean(latencies)) if len(latencies) else math.nan,
            "measured_p99_interval_ms": [v if math.isfinite(v) else None   # None: too few requests to bound it
                                         for v in breakdown.quantile_interval(latencies, 0.99)],
            "attainment": within / sent if sent else 0.0, "requests": sent, "failed": failed,
            "send_lag_p99_ms": _p99(np.concatenate([np.array([])] + lags)),
        })
    return rows


def _p99(values: np.ndarray) -> float:
    return float(np.percentile(values, 99)) if len(values) else math.nan


SEND_LAG_WARN_MS = 10.0   # the load generator's send lag p99 on a quiet 2-core host: 1.6-2.4 ms (BENCHMARKS.md)


def measurement_warnings(rows: list[dict]) -> list[str]:
    """What makes this run's measured latencies say more about the host than about the plan: the load generator
    sending late (the host stalled the client, and every request in the stall waited for it)."""
    late = [f"{r['name']} {r['send_lag_p99_ms']:.1f} ms" for r in rows if r["send_lag_p99_ms"] > SEND_LAG_WARN_MS]
    if not late:
        return []
    return [f"the load generator fell behind its schedule (send lag p99: {', '.join(late)}): the host stalled the "
            "client, and the measured latencies include the stall; rerun on a quieter host"]


def cores_pinned(plan_dir: Path) -> int:
    """Cores the plan pins servers to (from the launch specs the servers were started with)."""
    launches = (read_launch(p) for p in sorted((plan_dir / "triton_repo").glob("*/launch.json")))
    return sum(len(launch.cpus or []) for launch in launches)


def own_workdir(workdir: Path) -> Path:
    """The demo's work directory, made (or reused) by igniter: it writes only into a directory it made."""
    return make_owned_dir(workdir, "igniter demo", "demo work directory",
                          "choose a new --workdir (the demo writes only into a directory it made)")


def run_demo(opts: DemoOptions, say: Callable[[str], None] = lambda m: None) -> dict:
    started = time.monotonic()
    own_workdir(opts.workdir)
    ensure_demo_repo(opts.repo)
    profiles, profile_source = obtain_profiles(opts, say)

    say("fit: analytical interference model + learned residual")
    perf_model_path = opts.workdir / "perf_model.json"
    PerfModel.fit(profiles).save(perf_model_path)

    say(f"provision: {opts.workloads.name} with the {opts.strategy} strategy")
    problem, assignment, built, solve_s = provision(opts.workloads, perf_model_path, None, opts.strategy, 10.0,
                                                    src_repo=opts.repo)
    plan_dir = opts.workdir / "plan"
    write_plan(built, problem, plan_dir, opts.repo, {"strategy": opts.strategy, "solve_seconds": round(solve_s, 3)})
    plan = read_plan(plan_dir)   # what apply deploys: the plan as written

    state_path = opts.workdir / "state.json"
    deployer = Deployer(state_path, detached=False, progress=lambda m: say(f"apply: {m.strip()}"))
    try:
        deployer.stop_all()  # a previous interrupted demo's servers, if any
        apply_report = deployer.apply(plan_dir / "plan.json")
        say(f"replay: {opts.duration_s:g} s of Poisson arrivals at the planned rates")
        by_workload, split = replay(plan, state_path, opts)
        rows = [{**row, **split["workloads"].get(row["name"], {})} for row in summarise(by_workload)]
    finally:
        deployer.stop_all()
    hardware = cpu_hardware()
    path_ms, slowdown = problem.path_terms(0)
    total_requests = sum(r["requests"] for r in rows)
    result = {
        "workloads": rows,
        "attainment": sum(r["attainment"] * r["requests"] for r in rows) / total_requests if total_requests else 0.0,
        "hosts": plan.totals.gpus,
        "cores_used": cores_pinned(plan_dir),
        "cost": plan.totals.cost, "lower_bound": plan.totals.lower_bound, "gap": plan.totals.gap,
        "solve_seconds": round(solve_s, 3), "apply_seconds": apply_report["seconds"],
        # the path terms inside every predicted p99 (queueing.py)
        "path_overhead_ms": round(path_ms, 3), "path_slowdown": round(slowdown, 3),
        "cores_busy": split["cores_busy"],
        "warnings": measurement_warnings(rows),
        "profiles": f"{profiles} ({profile_source})", "machine": f"{hardware['name']}, {hardware['cores']} cores",
        "seconds": round(time.monotonic() - started, 1),
    }
    (opts.workdir / "result.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    result["report"] = str(write_html_report(opts.workdir / "report.html", result))
    return result
