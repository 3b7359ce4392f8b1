"""Provisioning benchmark: ilp vs igniter greedy vs interference-blind ffd -> `## Provisioning` in BENCHMARKS.md.

    python scripts/bench_provision.py --perf-model /tmp/v100.model.json [--write]

Uses the fitted V100 model when given (igniter import-profiles --format igniter ../shared/data/igniter-v100 ...;
igniter fit ...); without one it falls back to tests/fake_perf_model.py and says so in the table title.
Every plan is re-checked with the full perf model + queueing model (column "SLO misses").
"""

from __future__ import annotations

import argparse
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

from igniter.provisioning import STRATEGIES, solve  # noqa: E402
from igniter.provisioning.candidates import build_problem  # noqa: E402
from igniter.provisioning.plan import gap  # noqa: E402
from igniter.provisioning.strategy import cost, violations  # noqa: E402
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
        a, secs = solve(problem, name, time_limit)
        c = cost(problem, a.gpus)
        bad = violations(problem, a.gpus)
        rows.append({"set": label, "latency": latency_model, "strategy": name, "gpus": len(a.gpus), "cost": c,
                     "lb": a.lower_bound, "gap": gap(c, a.lower_bound), "solve_s": secs, "build_s": build_s,
                     "misses": len({(g, s) for g, s, _ in bad if s >= 0}), "status": a.status})
        print(rows[-1], flush=True)
    best = max(r["lb"] for r in rows)   # every strategy's bound holds for the same instance: report the best
    for r in rows:
        r["lb"], r["gap"] = best, gap(r["cost"], best)
    return rows


def cli_seconds(perf_model: str, n: int, out_parent: str | None = None, repeats: int = 3) -> list[float]:
    """Wall time of a fresh `igniter provision` process (import, load, build, solve, write) on random n, its
    plan written under out_parent (the disk's speed matters: one directory and two files per server)."""
    times = []
    with tempfile.TemporaryDirectory(dir=out_parent) as tmp:
        ws = random_set(["alexnet", "resnet50", "ssd", "vgg19"], n, n)
        path = Path(tmp) / "workloads.yaml"
        path.write_text(yaml.safe_dump({"workloads": [{"name": w.name, "model": w.model, "rate": w.rate,
                                                       "slo_ms": w.slo_ms} for w in ws.workloads]}))
        for r in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "igniter", "provision", "--workloads", str(path), "--perf-model",
                            perf_model, "--out", str(Path(tmp) / f"plan{r}")], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
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
    lines = ["## Provisioning", "", f"Perf model: {source}. Machine: {machine()}. CBC via pulp, threads=2.", "",
             "Times are the strategy's solve time (candidate tabulation, `build`, is listed separately; "
             "`lb` is the best valid bound for the instance (the exact set-cover master's optimum where ilp proved it, "
             "else the interference-free share bound), the same for every strategy; gap = (cost - lb) / cost; "
             "SLO misses = servers whose p99 the full perf model + queueing model puts above the SLO).", "",
             "| set | latency model | strategy | GPUs | cost | lb | gap | solve s | build s | SLO misses | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['latency']} | {r['strategy']} | {r['gpus']} | {r['cost']:.2f} | "
                     f"{r['lb']:.2f} | {r['gap'] * 100:.1f} % | {r['solve_s']:.2f} | {r['build_s']:.2f} | "
                     f"{r['misses']} | {r['status']} |")
    return "\n".join(lines) + "\n\n" + extra.strip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--perf-model")
    ap.add_argument("--write", action="store_true", help="replace the Provisioning section of BENCHMARKS.md")
    ap.add_argument("--sizes", default="10,100,300,1000")
    ap.add_argument("--notes", default="", help="text appended under the table")
    ap.add_argument("--cli-size", type=int, default=1000, help="workloads of the end-to-end CLI timing (0: skip)")
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
            rows += run_case(label, ws, types, lm, 20.0)
    for n in [int(x) for x in args.sizes.split(",") if x]:
        rows += run_case(f"random {n} (seed {n})", random_set(sorted(known_models(types)), n, n), types, "queueing",
                         4.0 if n >= 300 else 10.0)
    notes = args.notes
    if args.perf_model and args.cli_size:
        where = [(tempfile.gettempdir(), "--out on the disk")] + [("/dev/shm", "--out on tmpfs /dev/shm")] * Path(
            "/dev/shm").is_dir()
        runs = "; ".join(f"{label}: {', '.join(f'{t:.2f}' for t in cli_seconds(args.perf_model, args.cli_size, d))} s"
                         for d, label in where)
        notes = (f"End to end, `igniter provision` (fresh process, default --time-limit 10, new --out) on random "
                 f"{args.cli_size} (seed {args.cli_size}), 3 runs each: {runs}.\n\n" + notes)
    section = markdown(rows, source, notes)
    print(section)
    if args.write:
        write_section("## Provisioning", section)


if __name__ == "__main__":
    main()
