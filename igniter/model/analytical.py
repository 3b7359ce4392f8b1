"""The analytical (iGniter-style) part: solo surface, measured-table corrections, interference coefficients.

Solo active time, as in the paper: k_act(b, r) = (k1 b^2 + k2 b + k3) / (r + k4) + k5 (r = share in %).
The measured solo table wins where it exists: the surface is multiplied by the measured/surface ratio,
interpolated over profiled (batch, share) points, so profiled points are reproduced exactly and the surface only
shapes off-grid points. Co-located: see Interference (global coefficients fitted by non-negative least squares on
the measured pairs; per-model coefficients were tried and generalise worse to model pairs never profiled together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SURFACE_PARAMS = 5


def surface(k: np.ndarray, batch, share):
    """k_act(b, r) of the iGniter paper; +inf at and below its pole r = -k4. A fitted k4 may be negative (the fit
    keeps the pole below the smallest profiled share), and a share at or below the pole gets too little of the
    device to finish: the hyperbola's other branch (negative latencies) is no prediction."""
    b, r = np.asarray(batch, float), np.asarray(share, float)
    headroom = r + k[3]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (k[0] * b * b + k[1] * b + k[2]) / headroom + k[4]
    return np.where(headroom > 0, value, np.inf)


def fit_surface(batch: np.ndarray, share: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Least squares on log latency (relative error), bounds keep every term non-negative and r + k4 > 0."""
    from scipy.optimize import least_squares  # imported here: 0.3 s, and only fitting needs it (not provision)
    b, r, t = (np.asarray(x, float) for x in (batch, share, latency))
    k0 = np.array([0.0, float(np.median(t * r / b)), 1e-3, 0.0, 0.0])
    lower = [0.0, 0.0, 0.0, -0.9 * float(r.min()), 0.0]
    upper = [np.inf, np.inf, np.inf, 1000.0, float(t.max())]
    fit = least_squares(lambda k: np.log(np.maximum(surface(k, b, r), 1e-9)) - np.log(t), k0,
                        bounds=(lower, upper), method="trf", x_scale="jac", max_nfev=2000)
    return fit.x


@dataclass
class Grid:
    """Values at profiled (batch, share) points, interpolated linearly in share within a batch and linearly in
    batch between profiled batches; constant beyond the edges (the values are corrections, not latencies)."""

    batches: list[int]
    shares: list[list[float]]
    values: list[list[float]]

    @classmethod
    def from_points(cls, batch, share, value) -> "Grid":
        batches, shares, values = [], [], []
        for b in sorted(set(int(x) for x in batch)):
            sel = np.asarray(batch) == b
            order = np.argsort(np.asarray(share, float)[sel], kind="stable")
            batches.append(b)
            shares.append(np.asarray(share, float)[sel][order].tolist())
            values.append(np.asarray(value, float)[sel][order].tolist())
        return cls(batches, shares, values)

    def at(self, batch: float, share):
        """Value at one batch and one share (float) or many shares (array)."""
        i = int(np.searchsorted(self.batches, batch))
        if i == 0 or i == len(self.batches):
            j = min(i, len(self.batches) - 1)
            return np.interp(share, self.shares[j], self.values[j])
        lo, hi = self.batches[i - 1], self.batches[i]
        w = (batch - lo) / (hi - lo)
        return ((1 - w) * np.interp(share, self.shares[i - 1], self.values[i - 1])
                + w * np.interp(share, self.shares[i], self.values[i]))

    def to_dict(self) -> dict:
        return {"batches": self.batches, "shares": self.shares, "values": self.values}


@dataclass
class Interference:
    """Global (cross-model) interference coefficients, so a model pair never profiled together still gets them.

    partner pressure  = sum_k pressure_weights[k] * demand_k(partner)     (demand: L2/DRAM/... fraction of peak)
    own sensitivity   = base + sum_k own_weights[k] * demand_k(own) + share_weight * 100 / own share
    co-located        = solo * (1 + sensitivity * sum(partner pressure) + clock_per_w * excess_w)
                        + sched_ms_per_kernel * kernels * partners
    A member with fewer SMs (smaller share) is more exposed; the clock term is the first-order F/f of a power-capped
    clock f = F + a_f * (P - TDP), with excess_w the extra power above TDP that the partners cause.
    """

    metrics: list[str]
    pressure_weights: list[float]
    base: float = 0.0
    own_weights: list[float] | None = None
    share_weight: float = 0.0
    sched_ms_per_kernel: float = 0.0
    clock_per_w: float = 0.0

    def pressure(self, demand: np.ndarray) -> np.ndarray:
        return np.maximum(np.nan_to_num(demand) @ np.asarray(self.pressure_weights, float), 0.0)

    def sensitivity(self, demand: np.ndarray, share: np.ndarray) -> np.ndarray:
        own = np.asarray(self.own_weights or [0.0] * len(self.metrics), float)
        return self.base + np.nan_to_num(demand) @ own + self.share_weight * 100.0 / np.asarray(share, float)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


PRESSURE_WEIGHT_GRID = np.linspace(0.0, 3.0, 31)  # weight of the second demand metric relative to the first


def fit_interference(metrics: list[str], own_demand: np.ndarray, partner_demand: np.ndarray, share: np.ndarray,
                     solo: np.ndarray, kernels: np.ndarray, excess_w: np.ndarray,
                     measured: np.ndarray) -> Interference:
    """Non-negative least squares on relative error; the pressure weights (bilinear in the sensitivity) by a grid
    over the second metric's weight, so the fit stays deterministic and rank-1 (linear_terms stays exact)."""
    from scipy.optimize import nnls  # imported here: 0.3 s, and only fitting needs it (not provision)
    grid = PRESSURE_WEIGHT_GRID if len(metrics) == 2 else [None]
    best = None
    for w in grid:
        weights = [1.0] if w is None else [1.0, float(w)]
        pressure = np.nan_to_num(partner_demand) @ np.array(weights)
        columns = [pressure] + [np.nan_to_num(own_demand[:, k]) * pressure for k in range(len(metrics))]
        columns += [100.0 / share * pressure, excess_w]
        a = np.column_stack([c * solo / measured for c in columns] + [kernels / measured])
        coef, residual_norm = nnls(a, (measured - solo) / measured)
        if best is None or residual_norm < best[0] - 1e-12:
            best = (residual_norm, weights, coef)
    _, weights, c = best
    k = len(metrics)
    return Interference(metrics, weights, float(c[0]), [float(x) for x in c[1:1 + k]], float(c[1 + k]),
                        float(c[3 + k]), float(c[2 + k]))
