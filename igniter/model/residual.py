"""Learned residual: xgboost on log(measured / analytical), shrunk, clipped and confined to the training region.

The correction is multiplied by a shrinkage weight in [0, 1] chosen by inner cross-validation on the training
pairs (PerfModel.fit): weight_unseen for sets whose model combination was never profiled (inner leave-one-model-
pair-out), weight_seen for profiled model pairs at new batch/share points (inner folds over batch combinations).
A weight of 0 means the residual did not help on held-out inner folds, and predictions equal the analytical model.
It is also clipped to the training residual range and set to zero for members whose features lie outside the
training box (plus a margin), so extrapolation falls back to the analytical model instead of getting worse.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from igniter.model.features import FEATURES, MONOTONE

PARAMS = {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.05, "min_child_weight": 10.0, "lambda": 5.0,
          "subsample": 1.0, "tree_method": "hist", "seed": 0, "nthread": 1,
          "monotone_constraints": "(" + ",".join(map(str, MONOTONE)) + ")"}
ROUNDS = 200
WEIGHT_GRID = np.linspace(0.0, 1.0, 11)
BOX_MARGIN = 0.05           # fraction of each feature's training range tolerated outside it
CLIP_QUANTILES = (0.01, 0.99)
MIN_ROWS = 20               # fewer training rows than this: no residual, analytical alone


@dataclass
class Residual:
    booster: xgb.Booster
    clip: tuple[float, float]
    box_low: np.ndarray
    box_high: np.ndarray
    weight_unseen: float = 1.0
    weight_seen: float = 1.0

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Unshrunk log correction (clipped, zero outside the training box)."""
        raw = self.booster.predict(xgb.DMatrix(x, feature_names=FEATURES, missing=np.nan))
        inside = np.all(((x >= self.box_low) & (x <= self.box_high)) | np.isnan(x), axis=1)
        return np.where(inside, np.clip(raw, *self.clip), 0.0)

    def predict(self, x: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Log correction; ``seen``: the member's model combination was among the training pairs."""
        return self.raw(x) * np.where(seen, self.weight_seen, self.weight_unseen)

    def boost(self, x: np.ndarray, target: np.ndarray, rounds: int) -> None:
        """Online adaptation: more boosting rounds on new observations, continuing the same booster."""
        self.booster = xgb.train(PARAMS, xgb.DMatrix(x, label=target, feature_names=FEATURES, missing=np.nan),
                                 num_boost_round=rounds, xgb_model=self.booster)

    def to_dict(self) -> dict:
        return {"booster_json_b64": base64.b64encode(bytes(self.booster.save_raw("json"))).decode("ascii"),
                "clip": list(self.clip), "box_low": _floats(self.box_low), "box_high": _floats(self.box_high),
                "features": FEATURES, "weight_unseen": self.weight_unseen, "weight_seen": self.weight_seen}

    @classmethod
    def from_dict(cls, d: dict) -> "Residual":
        booster = xgb.Booster(params={"nthread": PARAMS["nthread"]})
        booster.load_model(bytearray(base64.b64decode(d["booster_json_b64"])))
        bound = lambda v, none: np.array([none if x is None else x for x in v], float)  # noqa: E731
        return cls(booster, tuple(d["clip"]), bound(d["box_low"], -np.inf), bound(d["box_high"], np.inf),
                   d["weight_unseen"], d["weight_seen"])


def train(x: np.ndarray, target: np.ndarray, rounds: int = ROUNDS) -> Residual | None:
    if len(target) < MIN_ROWS:
        return None
    booster = xgb.train(PARAMS, xgb.DMatrix(x, label=target, feature_names=FEATURES, missing=np.nan),
                        num_boost_round=rounds)
    known = ~np.all(np.isnan(x), axis=0)  # a metric the store lacks (e.g. DRAM) bounds nothing
    low = np.where(known, np.nanmin(np.where(known, x, 0.0), axis=0), -np.inf)
    high = np.where(known, np.nanmax(np.where(known, x, 0.0), axis=0), np.inf)
    margin = np.where(known, BOX_MARGIN * (high - low), 0.0)
    clip = tuple(float(q) for q in np.quantile(target, CLIP_QUANTILES))
    return Residual(booster, clip, low - margin, high + margin)


def best_weight(base: list[np.ndarray], raw: list[np.ndarray], measured: list[np.ndarray]) -> float:
    """Shrinkage weight for the residual from inner-CV groups (lists: one array per held-out group).

    Only weights that make NO held-out group worse than the analytical model alone (w = 0) are eligible — that is
    what "never worse on unseen data" can mean with few groups; among them the lowest pooled mean absolute relative
    error wins, ties to the smaller weight.
    """
    def group_errors(w: float) -> np.ndarray:
        return np.array([np.abs(b * np.exp(w * r) / m - 1.0).mean() for b, r, m in zip(base, raw, measured)])

    analytical = group_errors(0.0)
    best, best_error = 0.0, _pooled(base, [np.zeros_like(r) for r in raw], measured)
    for w in WEIGHT_GRID:
        if np.all(group_errors(w) <= analytical + 1e-9):
            error = _pooled(base, [w * r for r in raw], measured)
            if round(error, 6) < round(best_error, 6):
                best, best_error = float(w), error
    return best


def _pooled(base, scaled_raw, measured) -> float:
    b, r, m = np.concatenate(base), np.concatenate(scaled_raw), np.concatenate(measured)
    return float(np.abs(b * np.exp(r) / m - 1.0).mean())


def _floats(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in a]
