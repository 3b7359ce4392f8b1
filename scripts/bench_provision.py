"""Provisioning benchmark: ilp vs igniter greedy vs interference-blind ffd -> `## Provisioning` in BENCHMARKS.md.

    python scripts/bench_provision.py --perf-model /tmp/v100.model.json [--write]

Uses the fitted V100 model when given (igniter import-profiles --format igniter ../shared/data/igniter-v100 ...;
igniter fit ...); without one it falls back to tests/fake_perf_model.py and says so in the table title.
Every plan is re-checked with the full perf model + queueing model (column "SLO misses").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import pulp  # noqa: E402

from igniter.provisioning import bounded, greedy_igniter, ilp, patterns, solvers, solve  # noqa: E402
from igniter.provisioning.candidates import build_problem  # noqa: E402
from igniter.provisioning.plan import build_plan, gap  # noqa: E402
from igniter.provisioning.strategy import cost  # noqa: E402
from igniter.provisioning.workloads import (Workload, WorkloadSet, default_catalog, known_models,  # noqa: E402
                                            load_workloads)

from benchmarks_md import write_section  # noqa: E402  (scripts/, on sys.path when run as a script)


def random_set(models: list[str], n: int, seed: int) -> WorkloadSet:
    rng = random.Random(seed)
    return WorkloadSet(tuple(Workload(f"w{i}", rng.choice(models), round(rng.uniform(10, 400), 1),
                                      round(rng.uniform(40, 200), 1)) for i in range(n)))


def run_case(label: str, ws: WorkloadSet, types, latency_model: str, time_limit: float) -> list[dict]:
    t0 = time.perf_counter()
    problem = build_problem(ws, types, latency_model)
    build_s = time.perf_counter() - t0
    rows = []
    for name in ("ilp", "igniter", "ffd"):
        t0 = time.perf_counter()
        a = bounded(problem, solve(problem, name, time_limit)[0], time_limit)   # as `igniter provision` does
        secs = time.perf_counter() - t0
        totals = build_plan(problem, a, name).totals
        rows.append({"set": label, "latency": latency_model, "strategy": name, "gpus": len(a.gpus),
                     "cost": cost(problem, a.gpus), "share_lb": problem.share_lower_bound(), "lb": a.lower_bound,
                     "solve_s": secs, "bound_s": a.details.get("bound_seconds"), "build_s": build_s,
                     "bound_lp": a.details.get("bound_lp"), "converged": a.details.get("bound_converged"),
                     "misses": sum(1 for m in totals.misses if m.server), "status": totals.status})
        print(rows[-1], flush=True)
    best = max(r["lb"] for r in rows)   # every strategy's bound holds for the same instance: report the best
    for r in rows:
        r["lb"] = best
        r["gap"] = None if r["status"] == "infeasible" else gap(r["cost"], best)
    return rows


def solver_comparison(types) -> str:
    """CBC against HiGHS on the same pulp models: the exact path's integer set-cover master (12-workload set,
    queueing, every packing enumerated), the whole-instance packing ILP (12-workload set, half-slo) on the
    greedy's slots and on 5 slots (can 5 GPUs do?), and the ilp strategy end to end with each back end."""
    ws = load_workloads(ROOT / "examples" / "workloads-12.yaml", known_models(types))
    lines = ["| model | size | CBC s | CBC result | HiGHS s | HiGHS result |", "|---|---|---|---|---|---|"]
    pq = build_problem(ws, types, "queueing")
    kinds = patterns.kinds_of(pq)
    packings = patterns.enumerate_packings(pq, kinds, time.monotonic() + 60)
    cells = []
    for backend in solvers.BACKENDS:
        prob, _, _ = patterns._master_model(pq, kinds, packings, integer=True)
        t0 = time.perf_counter()
        solvers.solve(prob, 60, backend=backend)
        cells += [f"{time.perf_counter() - t0:.2f}", f"{pulp.LpStatus[prob.status]} {pulp.value(prob.objective):g}"]
    lines.append(f"| set-cover master, 12-workload queueing | {len(packings)} packings, {len(kinds)} kinds | "
                 + " | ".join(cells) + " |")
    ph = build_problem(ws, types, "half-slo")
    warm = greedy_igniter.solve(ph).gpus
    items = sorted([s for g in warm for s in g.servers], key=lambda s: (-s.option.share, s.workload, s.replica))
    for label, slots, start in (("greedy's slots, warm start", ilp._slots(ph, warm), warm), ("5 slots", [0] * 5, None)):
        cells = []
        for backend in solvers.BACKENDS:
            solvers.DEFAULT_BACKEND = backend
            t0 = time.perf_counter()
            try:
                found, status = ilp.pack_ilp(ph, items, slots, start, [], 60.0)
                result = f"{status}" + (f", {len(found)} GPUs" if found else "")
            except solvers.SolverFailed as e:
                result = f"solver failed ({e})"[:60]
            cells += [f"{time.perf_counter() - t0:.2f}", result]
        solvers.DEFAULT_BACKEND = "cbc"
        lines.append(f"| packing ILP, 12-workload half-slo, {label} | {len(items)} servers x {len(slots)} slots | "
                     + " | ".join(cells) + " |")
    for lm, limit in (("queueing", 60.0), ("half-slo", 60.0)):
        cells = []
        problem = build_problem(ws, types, lm)
        for backend in solvers.BACKENDS:
            solvers.DEFAULT_BACKEND = backend
            a, secs = solve(problem, "ilp", limit)
            cells += [f"{secs:.2f}", f"{len(a.gpus)} GPUs, {a.status} ({a.details.get('mode')})"]
        solvers.DEFAULT_BACKEND = "cbc"
        lines.append(f"| ilp strategy end to end, 12-workload {lm}, --time-limit {limit:g} | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cli_seconds(perf_model: str, n: int, out_parent: str | None = None, repeats: int = 3) -> list[str]:
    """Wall time of a fresh `igniter provision` process (import, load, build, solve, write) on random n, its
    plan written under out_parent (the disk's speed matters: one directory and two files per server), each
    with the 1-minute load average before it and the plan's GPUs and bound."""
    times = []
    with tempfile.TemporaryDirectory(dir=out_parent) as tmp:
        ws = random_set(["alexnet", "resnet50", "ssd", "vgg19"], n, n)
        path = Path(tmp) / "workloads.yaml"
        path.write_text(yaml.safe_dump({"workloads": [{"name": w.name, "model": w.model, "rate": w.rate,
                                                       "slo_ms": w.slo_ms} for w in ws.workloads]}))
        for r in range(repeats):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "igniter", "provision", "--workloads", str(path),
                                   "--perf-model", perf_model, "--out", str(Path(tmp) / f"plan{r}"), "--json"],
                                  check=True, capture_output=True, text=True)
            out = json.loads(done.stdout)
            times.append(f"{time.perf_counter() - t0:.2f} s (load {load:.1f}; {out['gpus']} GPUs, bound "
                         f"{out['lower_bound']:g})")
    return times


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), CPU {cpu}, Python {platform.python_version()}"


def markdown(rows: list[dict], source: str, extra: str) -> str:
    lines = ["## Provisioning", "", f"Perf model: {source}. Machine: {machine()}, no GPU; other engineers' work "
             "shared the cores. MILPs: CBC via pulp, threads=2; the bound's LPs: HiGHS (highspy).", "",
             "`share lb` = interference-free share bound; `lb` = the best valid bound for the instance over the three "
             "runs (bounds.py: the relaxed set-cover LP by column generation, rounded up to whole GPUs, at least the "
             "share bound; the exact master's optimum where ilp proved it), the same for every strategy; "
             "gap = (cost - lb) / cost, none for a plan that is infeasible (SLO misses = servers whose p99 the full "
             "perf model + queueing model puts above the SLO); `bound LP` = the relaxed LP value the column generation "
             "reached (its optimum when converged; it stops early once the rounded bound cannot rise), for the "
             "strategy's own run; `solve s` includes the bound, `bound s` is its part (empty: not computed, the "
             "share bound is used). Every run at the default --time-limit 10.", "",
             "| set | latency model | strategy | GPUs | cost | share lb | lb | bound LP | gap | solve s | bound s | "
             "build s | SLO misses | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap_text = "none (infeasible)" if r["gap"] is None else f"{r['gap'] * 100:.1f} %"
        bound_s = "" if r["bound_s"] is None else f"{r['bound_s']:.2f}"
        lp = ("" if r["converged"] is None else "no LP in time" if r["bound_lp"] is None
              else f"{r['bound_lp']:.3f}" + ("" if r["converged"] else " (not converged)"))
        lines.append(f"| {r['set']} | {r['latency']} | {r['strategy']} | {r['gpus']} | {r['cost']:.2f} | "
                     f"{r['share_lb']:.2f} | {r['lb']:.2f} | {lp} | {gap_text} | {r['solve_s']:.2f} | {bound_s} | "
                     f"{r['build_s']:.2f} | {r['misses']} | {r['status']} |")
    return "\n".join(lines) + "\n\n" + extra.strip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--perf-model")
    ap.add_argument("--write", action="store_true", help="replace the Provisioning section of BENCHMARKS.md")
    ap.add_argument("--sizes", default="10,100,300,1000")
    ap.add_argument("--notes", default="", help="text appended under the table")
    ap.add_argument("--cli-size", type=int, default=1000, help="workloads of the end-to-end CLI timing (0: skip)")
    ap.add_argument("--solvers", action="store_true", help="add the CBC vs HiGHS comparison (about 3 minutes)")
    args = ap.parse_args()
    if args.perf_model:
        from igniter.model import PerfModel
        pm, source = PerfModel.load(args.perf_model), f"fitted on the iGniter V100 profiles ({args.perf_model})"
    else:
        from fake_perf_model import FakePerfModel
        pm, source = FakePerfModel(), "tests/fake_perf_model.py (analytical fake; no fitted model given)"
    types = default_catalog(pm)
    rows = []
    for label, f in (("12-workload (paper)", "workloads-12.yaml"), ("3-workload (paper)", "workloads-3.yaml")):
        ws = load_workloads(ROOT / "examples" / f, known_models(types))
        for lm in ("queueing", "half-slo"):
            rows += run_case(label, ws, types, lm, 10.0)   # the default --time-limit
    for n in [int(x) for x in args.sizes.split(",") if x]:
        rows += run_case(f"random {n} (seed {n})", random_set(sorted(known_models(types)), n, n), types, "queueing",
                         10.0)
    notes = args.notes
    if args.solvers:
        notes = ("**CBC against HiGHS** (same pulp models, wall time including pulp's model hand-over):\n\n"
                 + solver_comparison(types) + "\n\n" + notes)
    if args.perf_model and args.cli_size:
        where = [(tempfile.gettempdir(), "--out on the disk")] + [("/dev/shm", "--out on tmpfs /dev/shm")] * Path(
            "/dev/shm").is_dir()
        runs = "; ".join(f"{label}: {', '.join(cli_seconds(args.perf_model, args.cli_size, d))}"
                         for d, label in where)
        notes = (f"End to end, `igniter provision` (fresh process, default --time-limit 10, new --out) on random "
                 f"{args.cli_size} (seed {args.cli_size}), 3 runs each: {runs}.\n\n" + notes)
    section = markdown(rows, source, notes)
    print(section)
    if args.write:
        write_section("## Provisioning", section)


if __name__ == "__main__":
    main()
