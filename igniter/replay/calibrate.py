"""The real path's own latency on this host: what a request spends outside its model's compute.

One Triton server serves a zero-latency python-backend model (the emulator's probe: execute() returns at once),
deployed like any plan (Deployer: its own Caddy front door), and igniter's load generator sends it Poisson
arrivals at each calibration rate through the front door, the way the demo's and a deployment's clients send.
Its latency is then everything but compute: the Python client (event loop, gRPC), Caddy's hop, Triton's gRPC
frontend and scheduler and the python backend's IPC, at that request rate. The profiles' latencies already hold
this path as the profiler ran it: straight to the server (no front door), one outstanding request, cores kept
warm by back-to-back requests. So the calibration also measures that baseline on the same probe (closed loop,
concurrency 1, direct: every row's ``baseline_p50_ms``), and what the p99 model adds is the measured p99 at the
host's rate minus that baseline (hardware.json ``path_overhead``, queueing.path_overhead_ms). The lowest open-loop
rate is no baseline: its p50 holds the front door's hop and cores waking from idle (3.6-4.0 ms on the 2-core host
against 0.665 ms direct, BENCHMARKS.md "The load generator's own tail"). Each row also records the CPU the load
generator and the front door spent per request (``cpu_ms_per_request``): on a CPU host they run on the servers'
cores (queueing.path_slowdown).
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Callable

import numpy as np

from igniter.deployment.apply import Deployer
from igniter.deployment.state import load_state
from igniter.profiling.loadgen import LoadSpec, run_concurrent
from igniter.replay import breakdown
from igniter.replay.emulator import PlannedServer, constant_tables, write_emulated_plan

PROBE = PlannedServer(name="probe", gpu="probe", model="probe", workload="probe", batch=1, share=100.0,
                      max_queue_delay_us=0, rate=1.0, slo_ms=math.inf, predicted_latency_ms=0.0,
                      predicted_p99_ms=0.0)


def measure_path_overhead(workdir: Path, rates_rps: list[float], duration_s: float, warmup_s: float = 2.0,
                          say: Callable[[str], None] = lambda m: None) -> list[dict]:
    """One row per rate: {"rate_rps", "p50_ms", "p99_ms", "baseline_p50_ms", "requests", "failed",
    "cpu_ms_per_request", "load_average", "measured"}."""
    plan = write_emulated_plan([PROBE], constant_tables([PROBE], lambda s, n: 0.0), workdir / "emulated",
                               lambda s: 1.0)
    deployer = Deployer(workdir / "state.json", detached=False, progress=lambda m: say(f"apply: {m.strip()}"))
    rows = []
    try:
        deployer.stop_all()
        deployer.apply(plan)
        state = load_state(workdir / "state.json")
        door = state.endpoints_by_workload()[PROBE.workload]["grpc"]
        door_pid = state.frontdoor.pid if state.frontdoor else None
        direct = next(iter(state.servers.values())).grpc
        say(f"calibrate: the profiler's baseline (direct, one outstanding request) for {duration_s:g} s")
        [closed] = run_concurrent([LoadSpec(direct, PROBE.model, 1, "closed", concurrency=1)], duration_s, warmup_s)
        baseline = round(float(np.percentile(closed.latencies_ms, 50)), 3) if len(closed.latencies_ms) else math.nan
        for i, rate in enumerate(sorted(rates_rps)):
            say(f"calibrate: {rate:g} req/s through the front door for {duration_s:g} s "
                f"({i + 1}/{len(rates_rps)}, ETA {(len(rates_rps) - i) * (duration_s + warmup_s):.0f} s)")
            cpu_before = breakdown.own_cpu_s() + breakdown.group_cpu_s(door_pid)
            [result] = run_concurrent([LoadSpec(door, PROBE.model, 1, "open", rate_rps=rate, seed=i)], duration_s,
                                      warmup_s)
            cpu_s = breakdown.own_cpu_s() + breakdown.group_cpu_s(door_pid) - cpu_before
            sent_all = rate * (duration_s + warmup_s)   # the warm-up's requests spent CPU too
            latencies = result.latencies_ms
            rows.append({"rate_rps": float(rate),
                         "p50_ms": round(float(np.percentile(latencies, 50)), 3) if len(latencies) else math.nan,
                         "p99_ms": round(float(np.percentile(latencies, 99)), 3) if len(latencies) else math.nan,
                         "baseline_p50_ms": baseline,
                         "requests": result.ok + result.failed, "failed": result.failed,
                         "cpu_ms_per_request": round(cpu_s * 1e3 / sent_all, 3),
                         "load_average": float(Path("/proc/loadavg").read_text().split()[0]),
                         "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    finally:
        deployer.stop_all()
    return rows


def calibrate_store(profiles: Path, rates_rps: list[float], duration_s: float, workdir: Path,
                    say: Callable[[str], None] = lambda m: None, warmup_s: float = 2.0) -> list[dict]:
    """Measure the path at ``rates_rps`` and record it as the profile store's hardware.json ``path_overhead``
    (replacing an earlier calibration; the rest of hardware.json is kept)."""
    from igniter.profiling.store import ProfileStore  # noqa: PLC0415

    store = ProfileStore(profiles)
    hardware = store.read_hardware()
    rows = measure_path_overhead(workdir, rates_rps, duration_s, warmup_s, say=say)
    store.write_hardware({**hardware, "path_overhead": rows})
    return rows
