"""Where a measured request's time and the host's CPU go, for the demo and the path calibration.

- Triton's statistics API, read before and after a run: each server's mean queue and compute time per request
  (what the server itself spent, apart from the client, the front door and gRPC).
- CPU seconds by party from /proc: each server's process group (tritonserver with its python stubs), the front
  door, this process (the load generator), and the whole host (so what other programs took shows).
- The p99's distribution-free confidence interval (order statistics): with n samples the p99 is known only to
  within the ranks a binomial(n, 0.99) count spans, which is what repeated runs of a short demo move between.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igniter.profiling.sysmetrics import group_processes

TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgid: int | None, proc: Path = Path("/proc")) -> float:
    """CPU seconds (user + system) of the live processes of process group ``pgid``; 0 for None."""
    if not pgid:
        return 0.0
    return sum(int(rest[11]) + int(rest[12]) for _, _, rest in group_processes(pgid, proc)) / TICK


def host_busy_s(proc: Path = Path("/proc")) -> tuple[float, float]:
    """(busy CPU seconds over all cores, seconds per core) of the whole host since boot (/proc/stat; busy is all
    but idle and iowait)."""
    lines = (proc / "stat").read_text().splitlines()
    fields = [int(v) for v in lines[0].split()[1:9]]
    cores = sum(1 for line in lines[1:] if line.startswith("cpu"))
    total = sum(fields)
    return (total - fields[3] - fields[4]) / TICK, total / TICK / max(cores, 1)


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass(frozen=True)
class ServerCounters:
    """Triton's cumulative statistics of one model (nanoseconds, counts)."""

    requests: int
    queue_ns: int
    compute_ns: int   # compute input + infer + output


def read_counters(endpoint: str, model: str) -> ServerCounters:
    import tritonclient.grpc as grpcclient  # noqa: PLC0415 - heavy import

    client = grpcclient.InferenceServerClient(endpoint)
    try:
        stats = client.get_inference_statistics(model).model_stats[0].inference_stats
    finally:
        client.close()
    return ServerCounters(stats.success.count, stats.queue.ns,
                          stats.compute_input.ns + stats.compute_infer.ns + stats.compute_output.ns)


def split_ms(before: list[ServerCounters], after: list[ServerCounters]) -> dict[str, float | None]:
    """Mean queue and compute ms per request over a workload's replicas between two readings (None: no requests)."""
    requests = sum(a.requests - b.requests for a, b in zip(after, before))
    if requests <= 0:
        return {"server_queue_ms": None, "server_compute_ms": None}
    queue = sum(a.queue_ns - b.queue_ns for a, b in zip(after, before))
    compute = sum(a.compute_ns - b.compute_ns for a, b in zip(after, before))
    return {"server_queue_ms": queue / requests / 1e6, "server_compute_ms": compute / requests / 1e6}


def quantile_interval(samples: np.ndarray, q: float = 0.99, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the ``q`` quantile: order statistics X(l) <= x_q <= X(u) with
    P(l <= K < u) >= confidence, K ~ binomial(n, q) the number of samples below x_q; l and u as equal tails.
    (nan, nan) when n is too small for the interval to exist inside the sample."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    k = np.arange(n + 1)
    log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k])
               + k * math.log(q) + (n - k) * math.log1p(-q))
    cdf = np.cumsum(np.exp(log_pmf))
    tail = (1.0 - confidence) / 2.0
    lower = int(np.searchsorted(cdf, tail, side="right"))        # P(K < lower) <= tail
    upper = int(np.searchsorted(cdf, 1.0 - tail, side="left")) + 1   # P(K >= upper) <= tail
    if lower < 1 or upper > n:
        return math.nan, math.nan
    return float(x[lower - 1]), float(x[upper - 1])
