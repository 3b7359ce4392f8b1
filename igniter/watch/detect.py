"""Drift detection: pure functions over a history of per-interval figures and the running plan's figures.

- Load drift (InfAdapter's rule): an EWMA forecast of each workload's arrival rate, f_0 = x_0 and
  f_i = alpha * x_i + (1 - alpha) * f_(i-1). Up: for ``up_after`` consecutive intervals both the forecast and the
  observed rate are above ``headroom`` x the planned rate (the observed rate too, so one spike, which the EWMA
  smears over the next intervals, triggers nothing). Down: for ``down_after`` consecutive intervals the inflated
  forecast f x (1 + inflation) is below ``down_below`` x the planned rate (scale down only after K lower
  forecasts). The rate to re-plan for is inflated by the margin: up, max(f, least observed rate of the streak)
  x (1 + inflation); down, max(f, largest observed rate of the streak) x (1 + inflation).
- Interference drift (ODIN's signal): a server's observed batch latency over the latency the running plan's model
  predicts for its co-location, above 1 + ``interference_threshold`` for ``interference_after`` consecutive
  intervals. An interval without a batch carries no evidence: it neither counts nor breaks a streak.
- SLO risk: the observed p99 above ``slo_risk_fraction`` x the SLO for ``slo_risk_after`` consecutive intervals
  (intervals without a p99 carry no evidence), or any failed request, or a mean request time above the SLO, in the
  last interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class WatchSettings:
    alpha: float = 0.5                   # EWMA weight of the newest rate
    headroom: float = 1.0                # scale up when the forecast passes this x the planned rate
    inflation: float = 0.1               # margin on the rate a re-plan is made for
    up_after: int = 2                    # consecutive intervals above before scaling up
    down_below: float = 0.7              # scale down when the inflated forecast is below this x the planned rate
    down_after: int = 3                  # K: consecutive lower forecasts before scaling down
    interference_threshold: float = 0.2  # observed / predicted batch latency above 1 + this ...
    interference_after: int = 2          # N: ... for this many consecutive intervals
    slo_risk_fraction: float = 0.9       # observed p99 above this x the SLO ...
    slo_risk_after: int = 2              # ... for this many consecutive intervals
    move_penalty: float = 0.25           # price units (per hour) charged per server a re-plan starts or restarts
    update_rate: float = 0.3             # weight of the newest observation in the perf model's online correction
    strategy: str = "ilp"
    time_limit_s: float = 10.0           # per re-plan solve

    def __post_init__(self) -> None:
        for name in ("alpha", "update_rate"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        for name in ("up_after", "down_after", "interference_after", "slo_risk_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass(frozen=True)
class LoadDrift:
    direction: str        # "up" | "down"
    observed_rps: float   # the last interval's rate
    forecast_rps: float   # the EWMA after the last interval
    planned_rps: float
    target_rps: float     # the rate to re-plan for (inflated)
    streak: int           # consecutive intervals the condition held


def ewma(values: Sequence[float], alpha: float) -> list[float]:
    """f_0 = x_0, f_i = alpha x_i + (1 - alpha) f_(i-1)."""
    out: list[float] = []
    for x in values:
        out.append(x if not out else alpha * x + (1 - alpha) * out[-1])
    return out


def streak(flags: Sequence[bool | None]) -> int:
    """Consecutive True flags at the end; None (no evidence) is skipped, neither counting nor breaking."""
    count = 0
    for flag in reversed(flags):
        if flag is None:
            continue
        if not flag:
            break
        count += 1
    return count


def load_drift(rates: Sequence[float], planned_rps: float, settings: WatchSettings,
               since: int = 0) -> LoadDrift | None:
    """Load drift of one workload from its rate history (one rate per interval, oldest first); only intervals from
    index ``since`` (the running plan's first) count towards a streak, all of them towards the forecast."""
    if not rates:
        return None
    forecasts = ewma(rates, settings.alpha)
    limit = settings.headroom * planned_rps
    recent = range(since, len(rates))
    up = streak([forecasts[i] > limit and rates[i] > limit for i in recent])
    down = streak([forecasts[i] * (1 + settings.inflation) < settings.down_below * planned_rps for i in recent])
    last = forecasts[-1]
    if up >= settings.up_after:
        target = max(last, min(rates[-up:])) * (1 + settings.inflation)
        return LoadDrift("up", rates[-1], last, planned_rps, target, up)
    if down >= settings.down_after:
        target = max(last, max(rates[-down:])) * (1 + settings.inflation)
        return LoadDrift("down", rates[-1], last, planned_rps, target, down)
    return None


def slowdown(observed_ms: float, predicted_ms: float) -> float | None:
    """observed / predicted batch latency; None where either is unknown (no batch in the interval)."""
    if not (math.isfinite(observed_ms) and math.isfinite(predicted_ms)) or predicted_ms <= 0:
        return None
    return observed_ms / predicted_ms


def interference_drift(ratios: Sequence[float | None], settings: WatchSettings) -> int:
    """How many consecutive intervals (ending now) a server ran slower than predicted by more than the threshold,
    when that reaches ``interference_after``; 0 otherwise."""
    count = streak([None if r is None else r > 1 + settings.interference_threshold for r in ratios])
    return count if count >= settings.interference_after else 0


def slo_risk(p99s: Sequence[float | None], failures: Sequence[float], slo_ms: float, settings: WatchSettings,
             mean_ms: float = math.nan) -> str | None:
    """Why a server's SLO is at risk (None: it is not). ``mean_ms``: the last interval's mean time in the server; above
    the SLO, most of its requests missed it (a signal of that interval alone, where the p99 window lags)."""
    if failures and failures[-1] > 0:
        return f"{failures[-1]:g} failed request(s) in the last interval"
    if mean_ms > slo_ms:
        return f"mean request time {mean_ms:.4g} ms above the SLO ({slo_ms:g} ms) in the last interval"
    bound = settings.slo_risk_fraction * slo_ms
    count = streak([None if p is None else p > bound for p in p99s])
    if count >= settings.slo_risk_after:
        return f"p99 above {settings.slo_risk_fraction:g} x the SLO ({bound:g} ms) for {count} intervals"
    return None
