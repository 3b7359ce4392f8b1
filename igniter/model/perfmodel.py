"""PerfModel: fitted analytical model + clipped xgboost residual + online per-model correction.

latency(member | set) = analytical * exp(residual) * exp(correction[model])
analytical            = solo * (1 + sensitivity * sum(partner pressure)) + sched_ms * partners
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from igniter.errors import UserError
from igniter.model import analytical, features, residual
from igniter.model.features import Members
from igniter.profiling.store import PAIR_REQUIRED, SOLO_REQUIRED, ProfileStore, atomic_write_text, validate

FORMAT, VERSION = "igniter-perf-model", 1
# Pressure candidates: store column(s) giving a member's load on shared resources, in % of peak. "share" (the
# member's share) is the fallback that every store has; the best candidate on the pairs is kept.
METRIC_COLUMNS = {"l2": ["l2_util_pct"], "dram": ["dram_util_pct"], "l2+dram": ["l2_util_pct", "dram_util_pct"],
                  "gpu_util": ["gpu_util_pct"], "cpu_util": ["cpu_util_pct"]}
UPDATE_RATE = 0.3           # weight of the newest observation in the exponentially weighted correction


class Member(NamedTuple):
    model: str
    batch: int
    share: float


class Prediction(NamedTuple):
    model: str
    batch: int
    share: float
    latency_ms: float
    throughput_rps: float


class LinearTerms(NamedTuple):
    solo_latency_ms: float
    solo_throughput_rps: float
    sensitivity: float
    pressure: float
    sched_ms: float


@dataclass
class ModelFit:
    """Everything fitted for one model."""

    surface: list[float]                 # k1..k5
    latency: analytical.Grid             # log(measured / surface) at profiled points
    pipelining: analytical.Grid          # log(measured rps / (batch * 1000 / latency))
    metrics: dict[str, analytical.Grid]  # metric (fraction of peak) per solo req/s, for pressure and features
    memory: dict[int, float]             # batch -> MB (empty: unknown)
    sensitivity: float = 0.0
    sched_ms: float = 0.0
    correction: float = 0.0              # online log correction

    def to_dict(self) -> dict:
        return {"surface": self.surface, "latency": self.latency.to_dict(), "pipelining": self.pipelining.to_dict(),
                "metrics": {k: g.to_dict() for k, g in sorted(self.metrics.items())},
                "memory": {str(b): v for b, v in sorted(self.memory.items())}, "sensitivity": self.sensitivity,
                "sched_ms": self.sched_ms, "correction": self.correction}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelFit":
        return cls(d["surface"], analytical.Grid(**d["latency"]), analytical.Grid(**d["pipelining"]),
                   {k: analytical.Grid(**g) for k, g in d["metrics"].items()},
                   {int(b): v for b, v in d["memory"].items()}, d["sensitivity"], d["sched_ms"], d["correction"])


@dataclass
class PerfModel:
    hardware: dict
    fits: dict[str, ModelFit]
    pressure_metric: str
    residual: residual.Residual | None = None
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    # --- construction --------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, profile_dir: str | Path, use_residual: bool = True) -> "PerfModel":
        store = ProfileStore(profile_dir)
        return cls.fit_frames(store.read_solo(), store.read_pairs(), store.read_hardware(), use_residual)

    @classmethod
    def fit_frames(cls, solo: pd.DataFrame, pairs: pd.DataFrame, hardware: dict,
                   use_residual: bool = True) -> "PerfModel":
        solo = validate(solo.copy(), SOLO_REQUIRED, "solo.csv")
        pairs = validate(pairs.copy(), PAIR_REQUIRED, "pairs.csv")
        fits = {m: _fit_solo(rows) for m, rows in solo.groupby("model", sort=True)}
        unknown = sorted((set(pairs["model"]) | set(pairs["partner"])) - set(fits))
        if unknown:
            raise UserError(f"pairs.csv names model '{unknown[0]}' that solo.csv never profiled",
                            "profile that model solo too, or drop its pair rows", "pairs.csv")
        candidates = [k for k in METRIC_COLUMNS if all(k in f.metrics for f in fits.values())] + ["share"]
        best = min((cls._with_interference(hardware, fits, metric, pairs) for metric in candidates),
                   key=lambda pm_err: pm_err[1])[0]
        if use_residual and len(pairs):
            members, measured = best._pair_members(pairs)
            base = features.analytical_ms(members)
            own = np.arange(0, len(base), 2)
            x = features.matrix(members, base)[own]
            best.residual = residual.train(x, np.log(measured / base[own]))
        return best

    @classmethod
    def _with_interference(cls, hardware, fits, metric, pairs) -> tuple["PerfModel", float]:
        """Fit per-model (sensitivity, sched_ms) for one pressure metric; returns (model, in-sample MAPE)."""
        pm = cls(hardware, {m: ModelFit(**{**f.__dict__}) for m, f in fits.items()}, metric)
        if not len(pairs):
            return pm, 0.0
        members, measured = pm._pair_members(pairs)
        own, partner = np.arange(0, len(measured) * 2, 2), np.arange(1, len(measured) * 2, 2)
        for model in sorted(set(pairs["model"])):
            sel = (pairs["model"] == model).to_numpy()
            fit = pm.fits[model]
            fit.sensitivity, fit.sched_ms = analytical.fit_interference(
                members.solo_ms[own][sel], members.pressure[partner][sel], np.ones(sel.sum()), measured[sel])
        unpaired = [m for m in pm.fits if m not in set(pairs["model"])]
        if unpaired:  # no pair data for these models: the median paired model's coefficients
            median_s = float(np.median([pm.fits[m].sensitivity for m in set(pairs["model"])]))
            for m in unpaired:
                pm.fits[m].sensitivity = median_s
        pm._memo.clear()
        members, measured = pm._pair_members(pairs)
        error = np.abs(features.analytical_ms(members)[own] / measured - 1.0).mean()
        return pm, float(error)

    # --- the API of docs/artefacts.md ----------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        return sorted(self.fits)

    def batches(self, model: str) -> list[int]:
        return list(self._fit_of(model).latency.batches)

    def shares(self, model: str) -> list[float]:
        return sorted({s for row in self._fit_of(model).latency.shares for s in row})

    def memory_mb(self, model: str, batch: int) -> float | None:
        memory = self._fit_of(model).memory
        if not memory:
            return None
        b = np.array(sorted(memory), float)
        v = np.array([memory[int(x)] for x in b])
        if len(b) == 1 or b[0] <= batch <= b[-1]:
            return float(np.interp(batch, b, v))
        lo = 0 if batch < b[0] else -2  # linear extrapolation from the nearest two profiled batches
        slope = (v[lo + 1] - v[lo]) / (b[lo + 1] - b[lo])
        return float(max(0.0, v[lo] + slope * (batch - b[lo])))

    def predict(self, members: list) -> list[Prediction]:
        return self.predict_sets([members])[0]

    def predict_sets(self, sets: list[list]) -> list[list[Prediction]]:
        """Predict every member of every set (each set co-located on one device), vectorised over all sets."""
        flat = [self._check(Member(*m)) for s in sets for m in s]
        if not flat:
            return [[] for _ in sets]
        set_index = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
        members = self._members(flat, set_index)
        latency = self._latency(members, [m.model for m in flat])
        rps = members.solo_rps * members.solo_ms / latency
        out, i = [], 0
        for s in sets:
            out.append([Prediction(m.model, m.batch, m.share, float(latency[j]), float(rps[j]))
                        for j, m in enumerate(flat[i:i + len(s)], start=i)])
            i += len(s)
        return out

    def linear_terms(self, model: str, batch: int, share: float) -> LinearTerms:
        """Linearised interference for the ILP; exact for the analytical part (the residual is left out):
        latency ~= solo_latency_ms + sum over partners p of (solo_latency_ms * sensitivity * p.pressure + sched_ms)."""
        m = self._check(Member(model, batch, share))
        solo_ms, solo_rps, pressure, _, _ = self._terms(m.model, m.batch, m.share)
        fit = self.fits[m.model]
        scale = math.exp(fit.correction)
        return LinearTerms(solo_ms * scale, solo_rps / scale, fit.sensitivity, pressure, fit.sched_ms * scale)

    def update(self, observations: pd.DataFrame, boost_rounds: int = 0, rate: float = UPDATE_RATE) -> None:
        """Online adaptation from new store rows (solo rows: no partner; pair rows: one partner each).
        Optional extra boosting rounds on the residual, then an exponentially weighted per-model correction."""
        obs = validate(observations.copy(), ["model", "batch", "share", "latency_mean_ms"], "observations")
        sets = [[Member(r.model, int(r.batch), float(r.share))]
                + ([Member(r.partner, int(r.partner_batch), float(r.partner_share))]
                   if "partner" in obs and isinstance(r.partner, str) and r.partner else [])
                for r in obs.itertuples()]
        measured = obs["latency_mean_ms"].to_numpy(float)
        if boost_rounds > 0 and self.residual is not None:
            members, base, x = self._own_rows(sets)
            self.residual.boost(x, np.log(measured / base), boost_rounds)
        members, base, x = self._own_rows(sets)
        uncorrected = base * (np.exp(self.residual.predict(x)) if self.residual else 1.0)
        for model, observed in zip(obs["model"], np.log(measured / uncorrected)):
            fit = self._fit_of(model)
            fit.correction = (1.0 - rate) * fit.correction + rate * float(observed)

    # --- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "hardware": self.hardware, "pressure_metric": self.pressure_metric,
                "models": {m: f.to_dict() for m, f in sorted(self.fits.items())},
                "residual": self.residual.to_dict() if self.residual else None}

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PerfModel":
        path = Path(path)
        if not path.is_file():
            raise UserError("the performance model file does not exist", "run igniter fit --out FILE first",
                            str(path))
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError("the performance model file is not JSON", "re-run igniter fit", str(path)) from None
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
            raise UserError(f"not an {FORMAT} version {VERSION} file", "re-run igniter fit to regenerate it",
                            str(path))
        return cls(d["hardware"], {m: ModelFit.from_dict(f) for m, f in d["models"].items()}, d["pressure_metric"],
                   residual.Residual.from_dict(d["residual"]) if d["residual"] else None)

    # --- internals -----------------------------------------------------------------------------------------
    def _fit_of(self, model: str) -> ModelFit:
        if model not in self.fits:
            raise UserError(f"unknown model '{model}'", f"use one of the profiled models: {', '.join(self.models)}")
        return self.fits[model]

    def _check(self, m: Member) -> Member:
        self._fit_of(m.model)
        try:
            batch, share = int(m.batch), float(m.share)
        except (TypeError, ValueError):
            raise UserError(f"batch and share of {m.model} must be numbers", "write MODEL:BATCH:SHARE") from None
        if batch != m.batch or batch < 1:
            raise UserError(f"batch {m.batch} of {m.model} is not a whole number >= 1", "use a batch size >= 1")
        if not 0 < share <= 100:
            raise UserError(f"share {m.share} of {m.model} is outside (0, 100]", "give the share as a percentage")
        return Member(m.model, batch, share)

    def _terms(self, model: str, batch: int, share: float) -> tuple[float, float, float, float, float]:
        """(solo ms, solo req/s, pressure, L2 fraction, DRAM fraction), memoised: the ILP asks the same points."""
        key = (model, batch, share)
        if key not in self._memo:
            fit = self.fits[model]
            solo_ms = _monotone_solo_ms(fit, batch, share)
            solo_rps = batch * 1000.0 / solo_ms * math.exp(float(fit.pipelining.at(batch, share)))
            metric = lambda name: float(fit.metrics[name].at(batch, share)) * solo_rps if name in fit.metrics else math.nan  # noqa: E731
            pressure = share / 100.0 if self.pressure_metric == "share" else metric(self.pressure_metric)
            self._memo[key] = (solo_ms, solo_rps, max(pressure, 0.0), metric("l2"), metric("dram"))
        return self._memo[key]

    def _members(self, flat: list[Member], set_index: np.ndarray) -> Members:
        terms = np.array([self._terms(*m) for m in flat], float).reshape(-1, 5)
        fits = [self.fits[m.model] for m in flat]
        return Members(set_index, np.array([m.batch for m in flat], float), np.array([m.share for m in flat], float),
                       terms[:, 0], terms[:, 1], terms[:, 2], terms[:, 3], terms[:, 4],
                       np.array([f.sensitivity for f in fits]), np.array([f.sched_ms for f in fits]))

    def _latency(self, members: Members, models: list[str]) -> np.ndarray:
        base = features.analytical_ms(members)
        if self.residual is not None:  # floored at solo: co-runners never make a member faster
            base = np.maximum(base * np.exp(self.residual.predict(features.matrix(members, base))), members.solo_ms)
        return base * np.exp([self.fits[m].correction for m in models])

    def _pair_members(self, pairs: pd.DataFrame) -> tuple[Members, np.ndarray]:
        """Each pair row as a 2-member set, the row's own model first."""
        flat = []
        for r in pairs.itertuples():
            flat += [Member(r.model, int(r.batch), float(r.share)),
                     Member(r.partner, int(r.partner_batch), float(r.partner_share))]
        set_index = np.repeat(np.arange(len(pairs)), 2)
        return self._members(flat, set_index), pairs["latency_mean_ms"].to_numpy(float)

    def _own_rows(self, sets: list[list[Member]]) -> tuple[Members, np.ndarray, np.ndarray]:
        """Members, analytical latency and features of the first member of every set."""
        flat = [self._check(m) for s in sets for m in s]
        set_index = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
        members = self._members(flat, set_index)
        base = features.analytical_ms(members)
        first = np.r_[0, np.cumsum([len(s) for s in sets])[:-1]]
        return members, base[first], features.matrix(members, base)[first]


def _monotone_solo_ms(fit: ModelFit, batch: int, share: float) -> float:
    """Solo latency that never grows with the share: the least over a 1 %-step grid of smaller shares (measured
    tables are noisy, e.g. V100 ssd batch 1 is slower at 100 % than at 80 %)."""
    shares = np.append(np.arange(1.0, share, 1.0), share)
    raw = analytical.surface(np.asarray(fit.surface), batch, shares) * np.exp(fit.latency.at(batch, shares))
    return float(raw.min())


def _fit_solo(rows: pd.DataFrame) -> ModelFit:
    b, s = rows["batch"].to_numpy(float), rows["share"].to_numpy(float)
    lat, rps = rows["latency_mean_ms"].to_numpy(float), rows["throughput_rps"].to_numpy(float)
    k = analytical.fit_surface(b, s, lat)
    metrics = {}
    for name, columns in METRIC_COLUMNS.items():
        if all(c in rows and rows[c].notna().sum() >= 2 for c in columns):
            value = rows[columns].mean(axis=1, skipna=False).to_numpy(float) / 100.0
            ok = ~np.isnan(value)
            metrics[name] = analytical.Grid.from_points(b[ok], s[ok], value[ok] / rps[ok])
    memory = {}
    if "memory_mb" in rows and rows["memory_mb"].notna().any():
        memory = {int(x): float(v) for x, v in rows.groupby("batch")["memory_mb"].mean().dropna().items()}
    return ModelFit([float(x) for x in k], analytical.Grid.from_points(b, s, np.log(lat / analytical.surface(k, b, s))),
                    analytical.Grid.from_points(b, s, np.log(rps * lat / (b * 1000.0))), metrics, memory)
