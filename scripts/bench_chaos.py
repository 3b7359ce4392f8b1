#!/usr/bin/env python3
"""Chaos under load through the front door, and what the front door adds; writes `## Chaos and the front door`.

Two workloads (tinynet on core 0, mlp on core 1, one replica each, the plans of tests/plan_factory.py), deployed
with the real CLI (`igniter apply`, detached servers, a real Caddy front door). Poisson load at RATE rps per
workload runs through the front door's gRPC address during each case:
 a. planned reshare of server a (new process) and live reload of server b;
 b. kill -9 of server a, then `igniter apply` restores it (recovery: kill -> apply done, and the failure window);
 c. SIGTERM of an `igniter apply` halfway (it was resharing a);
 d. two `igniter apply` at once;
 e. kill -9 of `igniter apply` mid-apply, then `igniter down`.
After each case: orphans = live processes tagged for the deployment that the state does not record, and whether the
state matches the running processes exactly. Proxy latency: the same Poisson load to server a directly and
through the front door, alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igniter.deployment.chaos import PoissonLoad  # noqa: E402
from igniter.deployment.frontdoor import front_doors  # noqa: E402
from igniter.deployment.orphans import tagged_servers  # noqa: E402
from igniter.deployment.state import load_state  # noqa: E402
from igniter.triton.demo_zoo import ensure_demo_repo  # noqa: E402
from igniter.triton.server import deployment_owner  # noqa: E402
from tests.plan_factory import make_plan  # noqa: E402  (the hand-made plans the tests deploy)

from benchmarks_md import write_section  # noqa: E402

SECTION = "## Chaos and the front door"
WAIT_S = 180


class Bench:
    def __init__(self, workdir: Path, rate: float):
        self.workdir, self.rate = workdir, rate
        self.state = workdir / "state" / "state.json"
        self.owner = deployment_owner(self.state.parent)
        repo = ensure_demo_repo(ROOT / "triton_repo")
        servers = [{"name": "a", "model": "tinynet", "batch": 4, "cpus": [0]},
                   {"name": "b", "model": "mlp", "batch": 4, "cpus": [1]}]
        self.plan1 = make_plan(workdir / "plan1", repo, servers)
        self.plan2 = make_plan(workdir / "plan2", repo, [{**servers[0], "share": 60.0}, {**servers[1], "batch": 8}])

    def igniter(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "igniter", *args, "--state", str(self.state)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *args: str) -> dict:
        proc = self.igniter(*args, "--json")
        out, err = proc.communicate(timeout=WAIT_S)
        if proc.returncode != 0:
            raise SystemExit(f"igniter {' '.join(args)} failed: {err.strip().splitlines()[-1:]}")
        return json.loads(out)

    def running(self) -> set[int]:
        return set(tagged_servers(self.owner)) | set(front_doors(self.owner))

    def recorded(self) -> set[int]:
        state = load_state(self.state)
        return {s.pid for s in state.servers.values()} | ({state.frontdoor.pid} if state.frontdoor else set())

    def loads(self) -> list[PoissonLoad]:
        endpoints = load_state(self.state).endpoints_by_workload()
        return [PoissonLoad(endpoints["a"]["grpc"], "tinynet", self.rate, seed=1),
                PoissonLoad(endpoints["b"]["grpc"], "mlp", self.rate, seed=2)]

    def wait_new_server(self, known: set[int]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not set(tagged_servers(self.owner)) - known:
            if time.monotonic() > deadline:
                raise SystemExit("no new server started")
            time.sleep(0.02)

    def case(self, name: str, action) -> dict:
        loads = self.loads()
        for load in loads:
            load.__enter__()
        try:
            time.sleep(1.0)
            recovery = action()
            time.sleep(1.0)
        finally:
            for load in loads:
                load.__exit__(None, None, None)
        requests = [r for load in loads for r in load.record.requests]
        failed = [r for r in requests if r.latency_ms is None]
        row = {"case": name, "requests": len(requests), "failed": len(failed), "recovery_s": recovery,
               "failure_window_s": round(max(r.scheduled for r in failed) - min(r.scheduled for r in failed), 2)
               if failed else None,
               "orphans": len(self.running() - self.recorded()), "state_matches": self.running() == self.recorded()}
        print(json.dumps(row), file=sys.stderr)
        return row

    def reshare(self) -> None:
        target = self.plan2 if load_state(self.state).servers["a"].share == 50.0 else self.plan1
        self.run("apply", str(target))

    def kill_server(self) -> float:
        killed = time.monotonic()
        os.kill(load_state(self.state).servers["a"].pid, signal.SIGKILL)
        self.run("apply", str(Path(load_state(self.state).plan)))
        return round(time.monotonic() - killed, 2)

    def signal_apply(self, sig: int, then_down: bool = False) -> None:
        known = set(tagged_servers(self.owner))
        target = self.plan2 if load_state(self.state).servers["a"].share == 50.0 else self.plan1
        proc = self.igniter("apply", str(target))
        self.wait_new_server(known)
        proc.send_signal(sig)
        proc.communicate(timeout=WAIT_S)

    def two_applies(self) -> None:
        target = self.plan2 if load_state(self.state).servers["a"].share == 50.0 else self.plan1
        procs = [self.igniter("apply", str(target), "--lock-timeout", str(WAIT_S)) for _ in range(2)]
        for proc in procs:
            proc.communicate(timeout=2 * WAIT_S)
            if proc.returncode != 0:
                raise SystemExit("one of two applies failed")

    def proxy_latency(self, seconds: float, rounds: int) -> dict:
        state = load_state(self.state)
        direct, door = state.servers["a"].grpc, state.endpoints_by_workload()["a"]["grpc"]
        samples: dict[str, list] = {"direct": [], "front door": []}
        for i in range(rounds):
            for label, endpoint in (("direct", direct), ("front door", door)):
                with PoissonLoad(endpoint, "tinynet", self.rate, seed=10 + i) as load:
                    time.sleep(seconds)
                samples[label].append(load.record.latencies_ms()[5:])  # the first requests open connections
        stats = {}
        for label, parts in samples.items():
            latencies = np.concatenate(parts)
            stats[label] = {"requests": len(latencies), "p50_ms": float(np.percentile(latencies, 50)),
                            "p99_ms": float(np.percentile(latencies, 99))}
        return stats


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def render(rows: list[dict], proxy: dict, rate: float, machine: str) -> str:
    table = "\n".join(
        f"| {r['case']} | {r['requests']} | {r['failed']} | {_seconds(r['recovery_s'])} | "
        f"{_seconds(r['failure_window_s'])} | {r['orphans']} | {'yes' if r['state_matches'] else 'NO'} |"
        for r in rows)
    d, f = proxy["direct"], proxy["front door"]
    return f"""{SECTION}

`python scripts/bench_chaos.py` on {machine}; the cores were shared with other work running at the same time.
Two workloads (tinynet pinned to core 0, mlp to core 1), one replica each, deployed with `igniter apply` (detached
servers, Caddy front door); Poisson load at {rate:g} requests/s per workload, single-sample gRPC requests, sent to
the front door's stable address throughout each case. Recovery: kill -9 of the server until `igniter apply` had
restored it (the apply started at once); failure window: first to last failed request (by scheduled time).
Orphans: live tritonservers or front doors tagged for the deployment that its state does not record (after kill -9
of igniter one is expected: it is recorded as starting, without a pid; the next `igniter down` or `igniter apply`
finds it by its tag and stops it).

| case | requests | failed | recovery | failure window | orphans | state = processes |
|---|---|---|---|---|---|---|
{table}

What the front door adds (same Poisson load, tinynet on server a, direct vs through Caddy, alternated):

| path | requests | p50 ms | p99 ms |
|---|---|---|---|
| direct to the server | {d['requests']} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} |
| through the front door | {f['requests']} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} |
| added | | {f['p50_ms'] - d['p50_ms']:+.2f} | {f['p99_ms'] - d['p99_ms']:+.2f} |

The demo sends its traffic through the front door, so its measured p99 includes this hop; the predicted p99 (the
performance model) does not add it.
"""


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s per workload")
    parser.add_argument("--proxy-seconds", type=float, default=10.0)
    parser.add_argument("--proxy-rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    bench = Bench(Path(tempfile.mkdtemp(prefix="igniter-chaos-")), args.rate)
    rows = []
    try:
        bench.run("apply", str(bench.plan1))
        proxy = bench.proxy_latency(args.proxy_seconds, args.proxy_rounds)
        rows.append(bench.case("a. planned reshare of a + reload of b", lambda: bench.reshare()))
        rows.append(bench.case("b. kill -9 of server a, then apply", bench.kill_server))
        rows.append(bench.case("c. SIGTERM of an apply halfway", lambda: bench.signal_apply(signal.SIGTERM)))
        rows.append(bench.case("d. two applies at once", lambda: bench.two_applies()))
        rows.append(bench.case("e. kill -9 of igniter mid-apply", lambda: bench.signal_apply(signal.SIGKILL)))
    finally:
        down = bench.igniter("down")
        down.communicate(timeout=WAIT_S)
    after_down = len(bench.running())  # down stops what the state records and what it lost (found by the tag)
    rows.append({"case": "e. ... then `igniter down`", "requests": 0, "failed": 0, "recovery_s": None,
                 "failure_window_s": None, "orphans": after_down, "state_matches": after_down == 0 and not bench.recorded()})
    machine = f"{cpu_name()} VM, {os.cpu_count()} cores, no GPU"
    section = render(rows, proxy, args.rate, machine)
    print(section) if args.no_write else write_section(SECTION, section)


if __name__ == "__main__":
    main()
