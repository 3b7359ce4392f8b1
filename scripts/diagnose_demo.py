#!/usr/bin/env python
"""Where a demo request's time goes: apply the demo's plan, drive it like the demo, and split each workload's
latency into client send lag, Triton queue and compute (Triton's statistics), the rest of the path, and the CPU
every process took (client, front door, each server with its python stubs).

    python scripts/diagnose_demo.py [--duration 20] [--direct] [--loadgen builtin|perf_analyzer] [--json]

Run it under the measurement lock on a quiet host. --direct sends to the servers, not the front door.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igniter.deployment.apply import Deployer  # noqa: E402
from igniter.deployment.state import load_state  # noqa: E402
from igniter.demo import DemoOptions, obtain_profiles  # noqa: E402
from igniter.model import PerfModel  # noqa: E402
from igniter.profiling.loadgen import (LoadSpec, arrival_offsets, no_full_collections, run_perf_analyzer,  # noqa: E402
                                       triton_infer)
from igniter.provisioning import run as provision  # noqa: E402
from igniter.provisioning.plan import read_plan, write_plan  # noqa: E402
from igniter.replay.breakdown import TICK, group_cpu_s  # noqa: E402

def host_cpu() -> dict[str, float]:
    """Host CPU seconds by kind from /proc/stat (``nice``: what low-priority jobs, other people's here, took)."""
    values = [int(v) / TICK for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return dict(zip(["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"], values))


def triton_stats(endpoint: str, model: str) -> dict[str, float]:
    import tritonclient.grpc as grpcclient  # noqa: PLC0415

    client = grpcclient.InferenceServerClient(endpoint)
    try:
        stats = client.get_inference_statistics(model).model_stats[0]
    finally:
        client.close()
    infer = stats.inference_stats
    return {"count": infer.success.count, "success_ns": infer.success.ns, "queue_ns": infer.queue.ns,
            "input_ns": infer.compute_input.ns, "infer_ns": infer.compute_infer.ns,
            "output_ns": infer.compute_output.ns, "executions": stats.execution_count}


async def open_loop_traced(endpoint: str, model: str, rate: float, duration_s: float, warmup_s: float, seed: int):
    """The demo's open loop, recording each request's scheduled, sent and done times."""
    offsets = arrival_offsets(rate, warmup_s + duration_s, "poisson", seed)
    records: list[tuple[float, float, float | None]] = []
    async with triton_infer(endpoint, model, 1, seed) as infer:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def one(scheduled: float) -> None:
            sent = loop.time()
            try:
                await infer()
                records.append((scheduled - t0, sent - t0, loop.time() - t0))
            except Exception:  # noqa: BLE001
                records.append((scheduled - t0, sent - t0, None))

        tasks = []
        for offset in offsets:
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(t0 + float(offset))))
        await asyncio.wait(tasks, timeout=30)
    return [r for r in records if r[0] >= warmup_s]


def drive(targets: list[tuple[str, str, str, float]], duration_s: float, warmup_s: float) -> dict:
    async def main():
        return await asyncio.gather(*(open_loop_traced(ep, model, rate, duration_s, warmup_s, i)
                                      for i, (_, ep, model, rate) in enumerate(targets)))

    with no_full_collections():   # as the demo's own open loop runs
        return dict(zip([t[0] for t in targets], asyncio.run(main())))


def pct(values, q):
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--direct", action="store_true", help="send to the servers, bypassing the front door")
    parser.add_argument("--loadgen", default="builtin", choices=["builtin", "perf_analyzer"])
    parser.add_argument("--workloads", type=Path, default=DemoOptions.workloads)
    parser.add_argument("--profiles", type=Path, default=DemoOptions.profiles)
    args = parser.parse_args()
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="diagnose-demo-") as work:
        work = Path(work)
        opts = DemoOptions(workdir=work, profiles=args.profiles, workloads=args.workloads)
        profiles, _ = obtain_profiles(opts, say)
        PerfModel.fit(profiles).save(work / "perf_model.json")
        problem, _, built, _ = provision(args.workloads, work / "perf_model.json", None, "ilp", 10.0,
                                         src_repo=opts.repo)
        write_plan(built, problem, work / "plan", opts.repo, {"strategy": "ilp"})
        plan = read_plan(work / "plan")
        deployer = Deployer(work / "state.json", detached=False, progress=lambda m: None)
        try:
            deployer.apply(work / "plan" / "plan.json")
            state = load_state(work / "state.json")
            doors = state.endpoints_by_workload()
            entries = {e.workload: e for _, e in plan.servers() if e.replica == 0}
            servers = {name: (state.servers[e.name].grpc, state.servers[e.name].pid, e.model)
                       for name, e in entries.items()}
            targets = [(name, servers[name][0] if args.direct else doors[name]["grpc"], e.model,
                        sum(r.rate for r in plan.by_workload()[name])) for name, e in sorted(entries.items())]
            before = {n: (triton_stats(ep, m), group_cpu_s(pid)) for n, (ep, pid, m) in servers.items()}
            door_pid = state.frontdoor.pid if state.frontdoor else None
            door_cpu0 = group_cpu_s(os.getpgid(door_pid)) if door_pid else 0.0
            host0, client0, wall0 = host_cpu(), os.times(), time.monotonic()
            if args.loadgen == "perf_analyzer":
                specs = [LoadSpec(ep, model, 1, "open", rate_rps=rate, seed=i)
                         for i, (_, ep, model, rate) in enumerate(targets)]
                traced = dict(zip([t[0] for t in targets], run_perf_analyzer(specs, args.duration, args.warmup)))
            else:
                traced = drive(targets, args.duration, args.warmup)
            wall = time.monotonic() - wall0
            client1, host1 = os.times(), host_cpu()
            door_cpu = (group_cpu_s(os.getpgid(door_pid)) if door_pid else 0.0) - door_cpu0
            after = {n: (triton_stats(ep, m), group_cpu_s(pid)) for n, (ep, pid, m) in servers.items()}
        finally:
            deployer.stop_all()
    client_cpu = (client1.user + client1.system) - (client0.user + client0.system)
    total_requests = 0
    report = {"direct": args.direct, "loadgen": args.loadgen, "wall_s": round(wall, 1),
              "load_average": Path("/proc/loadavg").read_text().split()[:3], "workloads": []}
    for name, entry in sorted(entries.items()):
        stats0, cpu0 = before[name]
        stats1, cpu1 = after[name]
        count = max(stats1["count"] - stats0["count"], 1)
        per = lambda k: round((stats1[k] - stats0[k]) / count / 1e6, 3)  # noqa: E731
        row = {"name": name, "model": entry.model, "rate": entry.rate, "predicted_p99_ms": entry.predicted_p99_ms,
               "predicted_latency_ms": entry.predicted_latency_ms,
               "server_requests": count, "server_mean_ms": per("success_ns"), "queue_mean_ms": per("queue_ns"),
               "compute_infer_mean_ms": per("infer_ns"),
               "compute_io_mean_ms": round(per("input_ns") + per("output_ns"), 3),
               "server_cpu_ms_per_request": round((cpu1 - cpu0) / count * 1e3, 3),
               "server_cpu_share_of_core": round((cpu1 - cpu0) / wall, 3)}
        result = traced[name]
        if isinstance(result, list):
            ok = [r for r in result if r[2] is not None]
            lat = np.array([(done - sched) * 1e3 for sched, _, done in ok])
            lag = np.array([(sent - sched) * 1e3 for sched, sent, _ in result])
            flight = np.array([(done - sent) * 1e3 for _, sent, done in ok])
            row.update({"requests": len(result), "failed": len(result) - len(ok),
                        "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "mean_ms": round(float(lat.mean()), 2),
                        "send_lag_p50_ms": pct(lag, 50), "send_lag_p99_ms": pct(lag, 99),
                        "send_lag_mean_ms": round(float(lag.mean()), 2),
                        "in_flight_p50_ms": pct(flight, 50), "in_flight_p99_ms": pct(flight, 99),
                        "in_flight_mean_ms": round(float(flight.mean()), 2)})
            total_requests += len(result)
        else:
            row.update({"p50_ms": result.percentile(50), "p99_ms": result.percentile(99), "mean_ms": result.mean_ms})
            total_requests += result.ok
        report["workloads"].append(row)
    report["client_cpu_ms_per_request"] = round(client_cpu / max(total_requests, 1) * 1e3, 3)
    report["client_cpu_share_of_core"] = round(client_cpu / wall, 3)
    report["front_door_cpu_ms_per_request"] = round(door_cpu / max(total_requests, 1) * 1e3, 3)
    report["front_door_cpu_share_of_core"] = round(door_cpu / wall, 3)
    report["host_cpu_share"] = {k: round((host1[k] - host0[k]) / wall, 3) for k in host0}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
