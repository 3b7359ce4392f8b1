"""Rate traces (CSV) and the arrival schedules they give.

Format (the one capacity planning reads): a ``timestamp`` column, in seconds or ISO 8601, and either one column per
workload name (req/s) or one ``scale`` column multiplying every planned rate. Row i's rate holds from its timestamp
to the next row's; the last row's holds to the end of the run. Times are relative to the first row.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from igniter.errors import UserError
from igniter.schema import read_text

MAX_TRACE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RateTrace:
    times_s: np.ndarray               # (T,) from 0, increasing
    rates: dict[str, np.ndarray]      # workload -> (T,) req/s

    def span_s(self) -> float:
        return float(self.times_s[-1])


def read_trace(path: Path, planned_rates: dict[str, float]) -> RateTrace:
    """The trace's rate per workload over time; ``planned_rates``: workload -> planned req/s (for ``scale``)."""
    fix = "write a CSV with a timestamp column (seconds or ISO 8601) and a scale column or one req/s column per workload"
    text = read_text(Path(path), "rate trace", MAX_TRACE_BYTES)
    rows = list(csv.DictReader(io.StringIO(text)))
    columns = rows[0].keys() if rows else []
    if "timestamp" not in columns:
        raise UserError(f"trace {path} has no timestamp column (or no rows)", fix)
    unknown = [c for c in columns if c not in ("timestamp", "scale") and c not in planned_rates]
    if unknown:
        raise UserError(f"trace {path}: column {unknown[0]!r} is not a workload of the plan",
                        f"use one of: scale, {', '.join(sorted(planned_rates))}")
    times = np.array([_seconds(r["timestamp"], path, i + 2) for i, r in enumerate(rows)])
    times -= times[0]
    if np.any(np.diff(times) <= 0):
        raise UserError(f"trace {path}: timestamps do not increase", "sort the rows by timestamp, one row per time")
    scale = _column(rows, "scale", path) if "scale" in columns else None
    rates = {}
    for name, planned in planned_rates.items():
        if name in columns:
            rates[name] = _column(rows, name, path)
        else:
            rates[name] = (scale if scale is not None else np.ones(len(rows))) * planned
    return RateTrace(times, rates)


def _seconds(value: str, path, line: int) -> float:
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise UserError(f"trace {path} line {line}: timestamp {value!r} is neither seconds nor ISO 8601",
                            "write e.g. 12.5 or 2026-12-01T14:00:00Z") from None
    if not math.isfinite(seconds):
        raise UserError(f"trace {path} line {line}: timestamp {value!r} is not finite", "write a finite time")
    return seconds


def _column(rows, name: str, path) -> np.ndarray:
    values = []
    for i, row in enumerate(rows):
        try:
            value = float(row[name])
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise UserError(f"trace {path} line {i + 2}: {name} = {row[name]!r} is not a rate >= 0",
                            "give a finite number >= 0 in every cell")
        values.append(value)
    return np.array(values)


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
