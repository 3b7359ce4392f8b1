"""The analytical (iGniter-style) part: solo surface, measured-table corrections, interference coefficients.

Solo active time, as in the paper: k_act(b, r) = (k1 b^2 + k2 b + k3) / (r + k4) + k5 (r = share in %).
The measured solo table wins where it exists: the surface is multiplied by the measured/surface ratio,
interpolated over profiled (batch, share) points, so profiled points are reproduced exactly and the surface only
shapes off-grid points. Co-located: t = solo * (1 + sensitivity * sum(partner pressure)) + sched_ms * partners,
with per-model sensitivity and sched_ms fitted by non-negative least squares on the measured pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

SURFACE_PARAMS = 5


def surface(k: np.ndarray, batch, share):
    """k_act(b, r) of the iGniter paper."""
    b, r = np.asarray(batch, float), np.asarray(share, float)
    return (k[0] * b * b + k[1] * b + k[2]) / (r + k[3]) + k[4]


def fit_surface(batch: np.ndarray, share: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Least squares on log latency (relative error), bounds keep every term non-negative and r + k4 > 0."""
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


def fit_interference(solo: np.ndarray, pressure: np.ndarray, partners: np.ndarray,
                     measured: np.ndarray) -> tuple[float, float]:
    """(sensitivity, sched_ms) >= 0 minimising the relative error of solo*(1+s*P) + sched*n against measured."""
    a = np.column_stack([solo * pressure / measured, partners / measured])
    y = (measured - solo) / measured
    coef, _ = nnls(a, y)
    return float(coef[0]), float(coef[1])


def co_located(solo, sensitivity, partner_pressure, sched_ms, partners):
    """The additive interference form (also what linear_terms linearises, exactly)."""
    return solo * (1.0 + sensitivity * partner_pressure) + sched_ms * partners
