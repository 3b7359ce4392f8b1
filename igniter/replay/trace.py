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


@dataclass(frozen=True)
class Step:
    """A change at ``at_s`` unscaled seconds from the start of traffic (the trace's time 0): every rate x factor
    (a load step), or, with ``gpu``, every batch on that emulated GPU x factor (an injected neighbour)."""

    factor: float
    at_s: float
    gpu: str | None = None


def parse_step(text: str, option: str, with_gpu: bool) -> Step:
    """FACTOR@T (--load-step) or GPU=FACTOR@T (--interference), e.g. 2@30 or g0=1.5@60."""
    form = "GPU=FACTOR@T, e.g. g0=1.5@60" if with_gpu else "FACTOR@T, e.g. 2@30"
    gpu, _, rest = text.rpartition("=") if with_gpu else ("", "", text)
    factor, _, at = rest.partition("@")
    try:
        step = Step(float(factor), float(at), gpu.strip() or None)
    except ValueError:
        step = None
    if (step is None or not (math.isfinite(step.factor) and step.factor > 0 and math.isfinite(step.at_s)
                             and step.at_s >= 0) or (with_gpu and step.gpu is None)):
        raise UserError(f"{option} {text!r} is not {form.split(',')[0]} (FACTOR > 0, T >= 0 unscaled seconds)",
                        f"give {option} {form}", option)
    return step


def constant_trace(planned_rates: dict[str, float]) -> RateTrace:
    """The planned rates from time 0 on (what a load step multiplies when there is no trace)."""
    return RateTrace(np.zeros(1), {name: np.array([rate]) for name, rate in planned_rates.items()})


def with_load_steps(trace: RateTrace, steps: list[Step]) -> RateTrace:
    """Every rate from each step's time on multiplied by its factor (steps compound)."""
    if not steps:
        return trace
    times = np.union1d(trace.times_s, [s.at_s for s in steps])
    row = np.searchsorted(trace.times_s, times, side="right") - 1  # the trace row holding at each time (>= 0: both start at 0)
    factor = np.array([math.prod(s.factor for s in steps if s.at_s <= t) for t in times])
    return RateTrace(times, {name: rates[row] * factor for name, rates in trace.rates.items()})
