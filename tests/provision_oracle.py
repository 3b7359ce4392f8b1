"""Brute-force provisioning optimum, independent of igniter's candidates, packers and ILP.

Every workload is split into r = 1..max_replicas servers of rate/r each; a host holds servers of distinct
workloads; a set of servers fits a host when SOME batch and share per member (any profiled batch, any share on
the host's grid) gives shares summing to <= 100 %, memory within the host's, and every member's p99 within its
SLO: p99 = queueing.p99_latency_ms (checked against its own oracles in test_queueing_oracle.py) of the member's
full-model latency (perf_model.latencies, interference included unless blind). The optimum is the fewest hosts
over every replica choice, by dynamic programming over subsets of servers.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

from igniter.provisioning import queueing


def partitions(items: list):
    """Every set partition of ``items`` (lists of blocks), each exactly once."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1:]
        yield [[first]] + part


def p99_ms(latency_ms: float, batch: int, rate: float) -> float:
    return float(queueing.p99_latency_ms(latency_ms, batch, rate, 1.0, 0.0))


def host_fits(pm, members: tuple, grid: list[float], blind: bool = False) -> bool:
    """members: ((model, rate, slo_ms), ...) on one host."""
    limit = pm.hardware.get("memory_mb") or math.inf
    for batches in itertools.product(*[pm.batches(m) for m, _, _ in members]):
        if sum(pm.memory_mb(m, b) for (m, _, _), b in zip(members, batches)) > limit:
            continue
        for shares in itertools.product(grid, repeat=len(members)):
            if sum(shares) > 100 + 1e-9:
                continue
            placed = [(m, b, s) for (m, _, _), b, s in zip(members, batches, shares)]
            lats = ([pm.solo_ms(*p) for p in placed] if blind else pm.latencies(placed))
            if all(p99_ms(lat, b, rate) <= slo + 1e-9 for lat, b, (_, rate, slo) in zip(lats, batches, members)):
                return True
    return False


def fewest_hosts(pm, workloads: list[tuple[str, float, float]], grid: list[float], max_replicas: int = 2,
                 blind: bool = False) -> int:
    """workloads: [(model, rate, slo_ms)]; the fewest hosts serving them all (math.inf if impossible)."""
    fits = lru_cache(maxsize=None)(lambda members: host_fits(pm, members, grid, blind))
    best = math.inf
    for replicas in itertools.product(range(1, max_replicas + 1), repeat=len(workloads)):
        servers = [(wi, (m, rate / r, slo)) for wi, ((m, rate, slo), r) in enumerate(zip(workloads, replicas))
                   for _ in range(r)]
        best = min(best, _cover(servers, fits))
    return best


def _cover(servers, fits) -> float:
    n = len(servers)
    full = (1 << n) - 1
    dp = [math.inf] * (1 << n)
    dp[0] = 0
    for mask in range(1, full + 1):
        low = mask & -mask
        sub = mask
        while sub:
            if sub & low:
                members = [servers[i] for i in range(n) if sub >> i & 1]
                if len({w for w, _ in members}) == len(members):
                    if dp[mask ^ sub] + 1 < dp[mask] and fits(tuple(sorted(m for _, m in members))):
                        dp[mask] = dp[mask ^ sub] + 1
            sub = (sub - 1) & mask
    return dp[full]
