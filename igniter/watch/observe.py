"""One Observation per server and model per interval, from two scrapes of Triton's Prometheus metrics.

Triton's counters are cumulative (igniter/triton/metrics.py); an Observation is the difference of two scrapes:
arrival rate, the mean batch Triton formed, queue and compute time, failures and, where Triton's summaries give
it (LocalServer enables them), the p99 of Triton's sliding window: not the interval's own (in a run here start-up
outliers stayed in it for about a minute), so a short interval's SLO-risk signal lags. ``compute_ms`` is the time
one batch spends in the model: Triton adds a batch's compute duration to every request in it, so the per-request
mean of its compute counters is the batch latency (weighted by requests), the figure the perf model predicts for a
co-located set.

``time_scale`` K: the replay testbed runs K times slower than the hardware it emulates, so every duration is
divided by K and every rate multiplied by K (the observation is of the emulated hardware).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from igniter.deployment.state import DeploymentState
from igniter.errors import UserError
from igniter.triton.metrics import ModelMetrics, ServerMetrics, interval, scrape


@dataclass(frozen=True)
class Scrape:
    """Every server's metrics at one moment (``taken_s``: time.monotonic()); None: its metrics were unreadable."""
    taken_s: float
    servers: dict[str, ServerMetrics | None]
    pids: dict[str, int | None]


@dataclass(frozen=True)
class Observation:
    server: str
    model: str
    gpu: str
    workloads: tuple[str, ...]
    interval_s: float            # emulated seconds the observation covers (wall seconds / K)
    up: bool                     # False: the server's metrics could not be read at the end of the interval
    requests: float              # successful requests
    failures: float
    rate_rps: float              # arrivals (completions + the queue's growth) per emulated second
    avg_batch: float             # inferences per execution Triton formed; NaN: no execution in the interval
    queue_ms: float              # mean time a request waited in the queue; NaN: no request
    compute_ms: float            # mean batch latency in the model (see the module docstring); NaN: no request
    request_ms: float            # mean end-to-end time in the server; NaN: no request
    p99_ms: float | None         # Triton's summary p99 of request time at the end of the interval; None: unknown

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def scrape_all(state: DeploymentState, timeout_s: float = 5.0) -> Scrape:
    """Scrape every server of the deployment that has a metrics endpoint (a dead one is recorded as None)."""
    servers: dict[str, ServerMetrics | None] = {}
    for name, server in sorted(state.servers.items()):
        if server.metrics is None:
            continue
        try:
            servers[name] = scrape(server.metrics, timeout_s)
        except UserError:
            servers[name] = None
    return Scrape(time.monotonic(), servers, {name: s.pid for name, s in state.servers.items()})


def observe(state: DeploymentState, before: Scrape, after: Scrape, time_scale: float = 1.0) -> list[Observation]:
    """Observations of every server of ``state`` over the window between two scrapes (servers, then models,
    sorted). A server that restarted in between (pid changed, counters went back) counts from zero."""
    if not time_scale > 0 or not math.isfinite(time_scale):
        raise UserError(f"time scale {time_scale!r} is not a positive number", "give a time scale K > 0")
    wall_s = after.taken_s - before.taken_s
    if not wall_s > 0:
        raise UserError(f"the scrapes are {wall_s:g} s apart", "take the second scrape after the first")
    seconds = wall_s / time_scale
    out = []
    for name, server in sorted(state.servers.items()):
        if name not in after.servers:
            continue
        metrics = after.servers[name]
        if metrics is None:
            for model in sorted(server.models):
                out.append(_down(name, model, server.gpu, tuple(server.workloads), seconds))
            continue
        earlier = before.servers.get(name) if before.pids.get(name) == after.pids.get(name) else None
        for model in sorted(server.models):
            if model in metrics.models:
                base = earlier.models.get(model) if earlier else None
                out.append(_observation(name, server.gpu, tuple(server.workloads), seconds, time_scale,
                                        _unless_reset(base, metrics.models[model]), metrics.models[model]))
    return out


def _unless_reset(before: ModelMetrics | None, after: ModelMetrics) -> ModelMetrics | None:
    """``before`` unless a counter went back (the model was reloaded or the server restarted: counting from zero)."""
    if before is None or after.request_success < before.request_success or after.exec_count < before.exec_count:
        return None
    return before


def _observation(server: str, gpu: str, workloads: tuple[str, ...], seconds: float, time_scale: float,
                 before: ModelMetrics | None, after: ModelMetrics) -> Observation:
    figures = interval(before, after)
    p99 = figures["p99_request_ms"]
    return Observation(
        server=server, model=after.model, gpu=gpu, workloads=workloads, interval_s=seconds, up=True,
        requests=figures["requests"], failures=figures["failures"],
        # arrivals = completions + the queue's growth: under overload completions alone understate the load
        rate_rps=max(figures["requests"] + figures["failures"] + after.pending - (before.pending if before else 0.0),
                     0.0) / seconds,
        avg_batch=figures["avg_batch"], queue_ms=figures["queue_ms"] / time_scale,
        compute_ms=figures["compute_ms"] / time_scale, request_ms=figures["request_ms"] / time_scale,
        p99_ms=p99 / time_scale if math.isfinite(p99) else None)


def _down(server: str, model: str, gpu: str, workloads: tuple[str, ...], seconds: float) -> Observation:
    nan = math.nan
    return Observation(server, model, gpu, workloads, seconds, False, 0.0, 0.0, 0.0, nan, nan, nan, nan, None)
