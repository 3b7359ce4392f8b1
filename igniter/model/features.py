"""Per-member features of co-located sets, vectorised over many sets (flattened members + set index).

Partner features are aggregates over the other members of the set (sums, max), so sets larger than pairs use
the same features as pairs. They are physical descriptors only (latency, throughput, L2/DRAM demand, share, power),
never model identity, so the residual can transfer to model pairs it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES = ["batch", "share", "log_solo_ms", "log_solo_rps", "pressure", "own_l2", "own_dram", "sensitivity",
            "partners", "partner_batch_sum", "partner_share_sum", "partner_pressure_sum", "partner_pressure_max",
            "partner_log_ms_sum", "partner_l2_sum", "partner_dram_sum", "share_total", "excess_w",
            "interference_ratio"]
# +1: more partner load never makes a member faster (xgboost monotone_constraints, same order as FEATURES)
MONOTONE = [1 if f in {"partners", "partner_pressure_sum", "partner_pressure_max", "partner_l2_sum",
                       "partner_dram_sum", "excess_w"} else 0 for f in FEATURES]


@dataclass
class Members:
    """Flattened members of many sets; every array has one entry per member."""

    set_index: np.ndarray
    batch: np.ndarray
    share: np.ndarray
    solo_ms: np.ndarray
    solo_rps: np.ndarray
    pressure: np.ndarray
    l2: np.ndarray          # NaN where unknown
    dram: np.ndarray        # NaN where unknown
    sensitivity: np.ndarray
    sched_ms: np.ndarray
    power_w: np.ndarray     # board power above idle when running solo; 0 where unknown
    clock: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (idle W, TDP W, relative slowdown per W); 0: no term
    demand: np.ndarray | None = None  # interference demand descriptors, one column per metric

    def others_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over the other members of each member's set (NaN-aware: NaN if any partner NaN)."""
        n_sets = int(self.set_index.max()) + 1 if len(self.set_index) else 0
        totals = np.bincount(self.set_index, weights=np.nan_to_num(values, nan=0.0), minlength=n_sets)
        nans = np.bincount(self.set_index, weights=np.isnan(values).astype(float), minlength=n_sets)
        own_nan = np.isnan(values).astype(float)
        out = totals[self.set_index] - np.nan_to_num(values, nan=0.0)
        return np.where(nans[self.set_index] - own_nan > 0, np.nan, out)

    def others_max(self, values: np.ndarray) -> np.ndarray:
        """Largest value among the other members of each member's set (0 when alone)."""
        n_sets, pos = int(self.set_index.max()) + 1, np.arange(len(values))
        top = np.full(n_sets, -np.inf)
        np.maximum.at(top, self.set_index, values)
        first_top = np.full(n_sets, len(values))
        is_top = values == top[self.set_index]
        np.minimum.at(first_top, self.set_index[is_top], pos[is_top])
        is_first_top = pos == first_top[self.set_index]
        second = np.full(n_sets, -np.inf)
        np.maximum.at(second, self.set_index, np.where(is_first_top, -np.inf, values))
        out = np.where(is_first_top, second[self.set_index], top[self.set_index])
        return np.where(np.isfinite(out), out, 0.0)

    def partners(self) -> np.ndarray:
        return np.bincount(self.set_index)[self.set_index] - 1.0

    def partner_pressure(self) -> np.ndarray:
        return self.others_sum(self.pressure)

    def excess_w(self) -> np.ndarray:
        """Power above TDP that the partners add to this member's own (solo) excess: it lowers the capped clock."""
        idle_w, tdp_w, _ = self.clock
        if tdp_w <= 0:
            return np.zeros(len(self.power_w))
        own = idle_w + self.power_w
        return np.maximum(0.0, own + self.others_sum(self.power_w) - tdp_w) - np.maximum(0.0, own - tdp_w)


def analytical_ms(m: Members) -> np.ndarray:
    slowdown = m.sensitivity * m.partner_pressure() + m.clock[2] * m.excess_w()
    return m.solo_ms * (1.0 + slowdown) + m.sched_ms * m.partners()


def matrix(m: Members, analytical: np.ndarray) -> np.ndarray:
    """Feature matrix (rows = members, columns = FEATURES)."""
    partners = m.partners()
    with np.errstate(divide="ignore", invalid="ignore"):  # a member at its surface's pole: inf ms, 0 req/s
        cols = {
            "batch": m.batch, "share": m.share, "log_solo_ms": np.log(m.solo_ms), "log_solo_rps": np.log(m.solo_rps),
            "pressure": m.pressure, "own_l2": m.l2, "own_dram": m.dram, "sensitivity": m.sensitivity,
            "partners": partners, "partner_batch_sum": m.others_sum(m.batch), "partner_share_sum": m.others_sum(m.share),
            "partner_pressure_sum": m.partner_pressure(), "partner_pressure_max": m.others_max(m.pressure),
            "partner_log_ms_sum": m.others_sum(np.log(m.solo_ms)), "partner_l2_sum": m.others_sum(m.l2),
            "partner_dram_sum": m.others_sum(m.dram), "share_total": m.share + m.others_sum(m.share),
            "excess_w": m.excess_w(),
            "interference_ratio": analytical / m.solo_ms,
        }
    return np.column_stack([np.asarray(cols[f], float) for f in FEATURES])
