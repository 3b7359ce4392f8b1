#!/usr/bin/env python3
"""What the instance count leaves on the table on this host: the demo models on one whole 2-core host (share 100)
served as 1 instance x 2 threads (what igniter plans: one instance per server) against 2 instances x 1 thread,
on a real Triton, closed loop; writes the `## Instances: one or two per server` section of BENCHMARKS.md.

Per model and batch, three runs: 1 instance at 1 outstanding request (how the profiles measure), 1 instance at 2
outstanding requests (the second queues behind the first), 2 instances at 2 outstanding requests (both
instances busy). Each row: samples/s and the per-request (= per-batch) latency, mean and p99. The server is
launched as igniter launches a planned server at that share (pinned cores, thread caps); only the instance group
count and the model's ``threads`` parameter differ. Run it under the measurement lock:
``flock /tmp/igniter-measure.lock .venv/bin/python scripts/bench_instances.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igniter.backends.cpu import BACKEND as CPU  # noqa: E402
from igniter.profiling import loadgen  # noqa: E402
from igniter.profiling.backends import loaded_server  # noqa: E402
from igniter.profiling.backends.cpu import CpuBackend  # noqa: E402
from igniter.triton.client import TritonClient  # noqa: E402
from igniter.triton.config import driven_fields, read_config, set_parameter  # noqa: E402
from igniter.triton.demo_zoo import ensure_demo_repo  # noqa: E402

from benchmarks_md import write_section  # noqa: E402  (scripts/, on sys.path when run as a script)

SECTION = "## Instances: one or two per server"
SHARE = 100.0
LAYOUTS = ((1, 2, (1, 2)), (2, 1, (2,)))   # (instances, threads each, outstanding requests measured)


def measure_layout(repo: Path, model: str, instances: int, threads: int, batches: list[int],
                   concurrencies: tuple[int, ...], duration_s: float, warmup_s: float) -> list[dict]:
    backend = CpuBackend()
    launch = backend.allocate(SHARE)
    cfg = CPU.configure_model(read_config(repo / model / "config.pbtxt"), instances, launch)
    set_parameter(cfg, "threads", threads)
    rows = []
    with loaded_server(backend.options(repo, model, SHARE, launch), model, cfg) as server:
        with TritonClient.connect(server) as client:
            running = driven_fields(client.config(model))
        if running["instances"] != instances:
            raise SystemExit(f"{model}: Triton runs {running['instances']} instances, asked for {instances}")
        for batch in batches:
            for concurrency in concurrencies:
                spec = loadgen.LoadSpec(server.endpoints.grpc, model, batch, concurrency=concurrency)
                [result] = loadgen.measure([spec], duration_s, warmup_s)
                rows.append({"model": model, "batch": batch, "instances": instances, "threads": threads,
                             "concurrency": concurrency, "samples_per_s": result.throughput_rps,
                             "mean_ms": result.mean_ms, "p99_ms": result.percentile(99.0)})
                print(f"{model} b{batch} {instances}x{threads} c{concurrency}: {rows[-1]['samples_per_s']:.0f} "
                      f"samples/s, mean {result.mean_ms:.2f} ms", file=sys.stderr, flush=True)
    return rows


def section(rows: list[dict], load: tuple[float, float, float], note: str) -> str:
    lines = [SECTION, "",
             f"Measured by scripts/bench_instances.py on {platform.node() or 'this host'} (2-core AMD EPYC VM, no GPU; "
             f"load average before the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}). {note}", "",
             "One whole host (share 100, both cores pinned), closed loop; latency = one request of one batch.", "",
             "| model | batch | instances x threads | outstanding | samples/s | mean ms | p99 ms |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['instances']} x {r['threads']} | {r['concurrency']} | "
                     f"{r['samples_per_s']:.0f} | {r['mean_ms']:.2f} | {r['p99_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="tinynet,convnet,mlp")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--duration", type=float, default=2.5)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--note", default="", help="what else shared the cores")
    args = parser.parse_args()
    repo = ROOT / "triton_repo"
    ensure_demo_repo(repo)
    load = os.getloadavg()
    batches = [int(b) for b in args.batches.split(",")]
    rows = [row for model in args.models.split(",") for instances, threads, concurrencies in LAYOUTS
            for row in measure_layout(repo, model, instances, threads, batches, concurrencies, args.duration,
                                      args.warmup)]
    rows.sort(key=lambda r: (r["model"], r["batch"], r["instances"], r["concurrency"]))
    write_section(SECTION, section(rows, load, args.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
