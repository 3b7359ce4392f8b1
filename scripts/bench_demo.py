#!/usr/bin/env python
"""The CPU demo's predicted vs measured p99, repeated, with where the time went; writes BENCHMARKS.md's
"Demo: predicted vs measured p99, where the time went" section.

    python scripts/bench_demo.py [--runs 3] [--duration 20] [--profiles DIR] [--note TEXT]

Each run is a fresh igniter demo (igniter.demo.run_demo, as `igniter demo` runs it) on the given profile store
(default: the shipped profiles/cpu-2core; give a calibrated copy to measure the path terms). Run it at normal
priority under the measurement lock; every row says the load average and the cores other programs kept busy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmarks_md import write_section  # noqa: E402

from igniter.demo import DemoOptions, run_demo  # noqa: E402

HEADING = "## Demo: predicted vs measured p99, where the time went"


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def measure(args) -> list[dict]:
    runs = []
    for i in range(args.runs):
        before = load_average()
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as work:
            result = run_demo(DemoOptions(workdir=Path(work) / "demo", profiles=args.profiles,
                                          duration_s=args.duration))
            own = Path(work) / "demo" / "profiles" / "hardware.json"   # a host unlike the store's: its own
            if own.exists():
                result["calibration"] = json.loads(own.read_text()).get("path_overhead", [])
        result["load_before"], result["load_after"] = before, load_average()
        runs.append(result)
        print(f"demo run {i + 1}/{args.runs}: " + ", ".join(
            f"{w['name']} {w['predicted_p99_ms']:.1f}/{w['measured_p99_ms']:.1f} ms" for w in result["workloads"])
            + f"; other programs {result['cores_busy']['other']:.2f} cores", file=sys.stderr)
    return runs


def _ms(value: float) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def render(args, runs: list[dict]) -> str:
    hardware = json.loads((args.profiles / "hardware.json").read_text())
    rows = runs[0].get("calibration", hardware.get("path_overhead", []))
    calibration = "; ".join(f"{r['rate_rps']:g} req/s: p50 {r['p50_ms']:.2f}, p99 {r['p99_ms']:.2f} ms, CPU "
                            f"{r.get('cpu_ms_per_request', math.nan):.2f} ms/request (load {r.get('load_average', '?')})"
                            for r in rows) or "none"
    if "calibration" in runs[0]:
        calibration = (f"each run profiled and calibrated this host afresh (the store names another machine); "
                       f"run 1's: {calibration}")
    lines = [HEADING, "",
             f"`python scripts/bench_demo.py --runs {args.runs} --duration {args.duration:g}"
             + (f" --profiles {args.profiles.name}" if args.profiles != DemoOptions.profiles else "")
             + f"` on {runs[0]['machine']} (VM, no GPU), Python {sys.version.split()[0]}, under the measurement lock. "
             f"{args.note} Each run is a fresh igniter demo (examples/demo_workloads.yaml: vision = convnet and "
             "ranking = mlp, 150 req/s each, SLO 25 ms), its traffic through the front door from igniter's load "
             f"generator on the same 2 cores. Path calibration of the store: {calibration}; so path term "
             f"{runs[0]['path_overhead_ms']:.2f} ms and slowdown {runs[0]['path_slowdown']:.3f} at the host's rate "
             "(each run's in the path column). error = predicted / measured - 1; the p99 interval is the "
             "order-statistic 95 % "
             "interval of the run's measured p99; queue and compute are Triton's means per request; cores: what the "
             "servers (with their python stubs), the front door, the load generator and every other program kept "
             "busy on average over the run.", "",
             "| run | load before / after | hosts | path ms / slowdown | workload | predicted p99 ms | "
             "measured p99 ms (95 % interval) | error | Triton queue + compute ms | send lag p99 ms | attainment | "
             "requests | cores: servers / door / load generator / other |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs, start=1):
        cores = r["cores_busy"]
        share = (f"{cores['servers']:.2f} / {cores['front_door']:.2f} / {cores['load_generator']:.2f} / "
                 f"{cores['other']:.2f}")
        for w in r["workloads"]:
            low, high = w["measured_p99_interval_ms"]
            lines.append(f"| {i} | {r['load_before']} / {r['load_after']} | {r['hosts']} | "
                         f"{r['path_overhead_ms']:.2f} / {r['path_slowdown']:.3f} | {w['name']} | "
                         f"{w['predicted_p99_ms']:.1f} | {w['measured_p99_ms']:.1f} ({_ms(low)}-{_ms(high)}) | "
                         f"{(w['predicted_p99_ms'] / w['measured_p99_ms'] - 1) * 100:+.0f} % | "
                         f"{_ms(w.get('server_queue_ms'))} + {_ms(w.get('server_compute_ms'))} | "
                         f"{_ms(w['send_lag_p99_ms'])} | {w['attainment'] * 100:.2f} % | {w['requests']} | {share} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--profiles", type=Path, default=DemoOptions.profiles)
    parser.add_argument("--note", default="", help="a sentence on what else shared the cores")
    parser.add_argument("--raw", type=Path, default=None, help="also write the runs' JSON here")
    parser.add_argument("--heading", default=HEADING, help="a BENCHMARKS.md heading of its own")
    args = parser.parse_args()
    runs = measure(args)
    if args.raw:
        args.raw.write_text(json.dumps(runs, indent=1, default=float))
    text = render(args, runs)
    write_section(args.heading, text.replace(HEADING, args.heading, 1))
    print(text)


if __name__ == "__main__":
    main()
