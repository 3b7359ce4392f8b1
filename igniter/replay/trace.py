"""Rate traces and the arrival schedules they give.

The file is read by igniter.provisioning.traces (the format capacity planning reads: a ``timestamp`` column in
seconds or ISO 8601, and one req/s column per workload name or one ``scale`` column multiplying every planned
rate). Row i's rate holds from its timestamp to the next row's; the last row's holds to the end of the run. Times
are relative to the first row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from igniter.errors import UserError
from igniter.provisioning.traces import SCALE, Trace


@dataclass(frozen=True)
class RateTrace:
    times_s: np.ndarray               # (T,) from 0, increasing
    rates: dict[str, np.ndarray]      # workload -> (T,) req/s


def rate_trace(trace: Trace, planned_rates: dict[str, float]) -> RateTrace:
    """Each workload's rate over time from a trace read by igniter.provisioning.traces (the format capacity
    planning reads); ``planned_rates``: workload -> planned req/s, what a ``scale`` column multiplies and what a
    workload without a column of its own keeps."""
    unknown = [c for c in trace.columns if c != SCALE and c not in planned_rates]
    if unknown:
        raise UserError(f"trace {trace.source}: column {unknown[0]!r} is not a workload of the plan",
                        f"use a scale column or columns named after: {', '.join(sorted(planned_rates))}", trace.source)
    times = trace.times - trace.times[0]
    rates = {}
    for name, planned in planned_rates.items():
        if trace.is_scale:
            rates[name] = trace.values[:, 0] * planned
        elif name in trace.columns:
            rates[name] = trace.values[:, trace.columns.index(name)]
        else:
            rates[name] = np.full(len(times), planned)
    return RateTrace(times, rates)


def trace_offsets(times_s: np.ndarray, rates: np.ndarray, horizon_s: float, seed: int = 0) -> np.ndarray:
    """Arrival times of a Poisson process whose rate is ``rates[i]`` from ``times_s[i]`` on (piecewise constant),
    over [0, horizon_s): by time change, unit-rate arrivals mapped through the inverse cumulative rate."""
    edges = np.append(times_s, max(horizon_s, times_s[-1]))
    cumulative = np.concatenate([[0.0], np.cumsum(rates * np.diff(edges))])  # expected arrivals at each edge
    total = cumulative[-1]
    if total <= 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    unit = np.cumsum(rng.exponential(1.0, int(total * 1.2 + 20 + 6 * math.sqrt(total))))
    unit = unit[unit < total]
    segment = np.clip(np.searchsorted(cumulative, unit, side="right") - 1, 0, len(rates) - 1)
    offsets = edges[segment] + (unit - cumulative[segment]) / np.maximum(rates[segment], 1e-300)
    return offsets[offsets < horizon_s]
