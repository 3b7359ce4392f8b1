"""PerfModel: fitted analytical model + gated, clipped xgboost residual + online per-model correction.

latency(member | set) = analytical * exp(weight * residual) * exp(correction[model])
analytical            = solo * (1 + sensitivity * sum(partner pressure) + clock_per_w * excess_w)
                        + sched_ms * partners            (analytical.Interference: global coefficients)
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

import numpy as np
import xgboost
from pydantic import Field, StringConstraints, model_validator

from igniter.atomic import atomic_write
from igniter.errors import UserError
from igniter.model import analytical, features, residual
from igniter.model.features import Members
from igniter.profiling.store import PAIR_REQUIRED, SOLO_REQUIRED, HardwareFile, ProfileStore, validate
from igniter.schema import Count, Fraction, NonNegativeFloat, PositiveFloat, SafeName, Share, Strict, read_json
from igniter.schema import validate as validate_schema

if TYPE_CHECKING:   # frames are only passed in (fit, update): loading a fitted model needs no pandas
    import pandas as pd

FORMAT, VERSION = "igniter-perf-model", 2
# Demand metrics: store columns giving a member's load on shared resources, in % of peak.
METRIC_COLUMNS = {"l2": "l2_util_pct", "dram": "dram_util_pct", "gpu_util": "gpu_util_pct", "cpu_util": "cpu_util_pct"}
# Candidate demand descriptors, best first; "share" (the member's share) is the fallback every store has. The
# candidate with the least in-sample error on the pairs is kept.
DEMAND_CANDIDATES = [["l2", "dram"], ["l2"], ["dram"], ["gpu_util"], ["cpu_util"], ["share"]]
IMPORTED_POWER_GRID = ([1, 16, 32], [10.0, 50.0, 100.0])  # iGniter coefficients: power[batch][MPS %] tables
INNER_COMBO_FOLDS = 5
UPDATE_RATE = 0.3           # weight of the newest observation in the exponentially weighted correction


MAX_MODEL_BYTES = 256 * 1024 * 1024
MAX_LOG_FACTOR = 50.0


# -- the model file's schema (PerfModel.to_dict) -------------------------------------------------------------------

class GridFile(Strict):
    batches: Annotated[list[Count], Field(min_length=1)]
    shares: list[Annotated[list[Share], Field(min_length=1)]]
    values: list[list[float]]

    @model_validator(mode="after")
    def _consistent(self) -> "GridFile":
        if not len(self.batches) == len(self.shares) == len(self.values):
            raise ValueError("batches, shares and values must have one entry per batch")
        if any(len(s) != len(v) for s, v in zip(self.shares, self.values)):
            raise ValueError("each batch needs one value per share")
        if any(a >= b for a, b in zip(self.batches, self.batches[1:])) or \
                any(a > b for row in self.shares for a, b in zip(row, row[1:])):
            raise ValueError("batches and shares must be sorted")
        return self


LogFactor = Annotated[float, Field(ge=-MAX_LOG_FACTOR, le=MAX_LOG_FACTOR)]


class LogGridFile(GridFile):
    """A grid of log corrections: beyond e^50 a factor is no correction but an overflow."""
    values: list[list[LogFactor]]


class FitFile(Strict):
    surface: Annotated[list[float], Field(min_length=analytical.SURFACE_PARAMS, max_length=analytical.SURFACE_PARAMS)]
    latency: LogGridFile
    pipelining: LogGridFile
    metrics: dict[Literal["l2", "dram", "gpu_util", "cpu_util"], GridFile]
    memory: dict[Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,8}$")], NonNegativeFloat]
    power: GridFile | None
    kernels: PositiveFloat
    correction: LogFactor
    sensitivity: float
    sched_ms: float


class InterferenceFile(Strict):
    metrics: Annotated[list[Literal["l2", "dram", "gpu_util", "cpu_util", "share"]], Field(min_length=1)]
    pressure_weights: list[float]
    base: float
    own_weights: list[float] | None
    share_weight: float
    sched_ms_per_kernel: float
    clock_per_w: float

    @model_validator(mode="after")
    def _one_weight_per_metric(self) -> "InterferenceFile":
        if len(self.pressure_weights) != len(self.metrics) or \
                (self.own_weights is not None and len(self.own_weights) != len(self.metrics)):
            raise ValueError("pressure_weights and own_weights need one weight per metric")
        return self


class ResidualFile(Strict):
    booster_json_b64: Annotated[str, StringConstraints(min_length=1)]
    clip: Annotated[list[float], Field(min_length=2, max_length=2)]
    box_low: list[float | None]
    box_high: list[float | None]
    features: list[str]
    weight_unseen: Fraction
    weight_seen: Fraction

    @model_validator(mode="after")
    def _features(self) -> "ResidualFile":
        if self.features != features.FEATURES or not len(self.box_low) == len(self.box_high) == len(self.features):
            raise ValueError("features differ from this igniter version's")
        # xgboost aborts the process (no exception) on some malformed models: only its own JSON goes to it
        try:
            booster = json.loads(base64.b64decode(self.booster_json_b64, validate=True))
        except (ValueError, RecursionError):
            booster = None
        if not isinstance(booster, dict) or "learner" not in booster:
            raise ValueError("booster_json_b64 is not base64 of an xgboost JSON model")
        return self


class PerfModelFile(Strict):
    format: Literal[FORMAT]
    version: Literal[VERSION]
    hardware: HardwareFile
    interference: InterferenceFile
    seen_sets: list[list[SafeName]]
    models: Annotated[dict[SafeName, FitFile], Field(min_length=1)]
    residual: ResidualFile | None


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
    power: analytical.Grid | None = None  # solo board power above idle (W); None: unknown
    kernels: float = 1.0                 # kernels per inference (1: unknown, scheduling delay is per partner)
    correction: float = 0.0              # online log correction
    # report-only summary (igniter fit prints it): sensitivity at the median profiled point, sched delay per partner
    sensitivity: float = 0.0
    sched_ms: float = 0.0

    def to_dict(self) -> dict:
        return {"surface": self.surface, "latency": self.latency.to_dict(), "pipelining": self.pipelining.to_dict(),
                "metrics": {k: g.to_dict() for k, g in sorted(self.metrics.items())},
                "memory": {str(b): v for b, v in sorted(self.memory.items())},
                "power": self.power.to_dict() if self.power else None, "kernels": self.kernels,
                "correction": self.correction, "sensitivity": self.sensitivity, "sched_ms": self.sched_ms}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelFit":
        return cls(d["surface"], analytical.Grid(**d["latency"]), analytical.Grid(**d["pipelining"]),
                   {k: analytical.Grid(**g) for k, g in d["metrics"].items()},
                   {int(b): v for b, v in d["memory"].items()}, analytical.Grid(**d["power"]) if d["power"] else None,
                   d["kernels"], d["correction"], d["sensitivity"], d["sched_ms"])


@dataclass
class PerfModel:
    hardware: dict
    fits: dict[str, ModelFit]
    interference: analytical.Interference
    residual: residual.Residual | None = None
    seen_sets: list[list[str]] = field(default_factory=list)  # sorted model names of every profiled pair
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
        pairs = validate(pairs.copy(), PAIR_REQUIRED, "pairs.csv").reset_index(drop=True)
        if solo.empty:
            raise UserError("solo.csv has no measurements", "profile the models solo (igniter profile) or import "
                            "profiles first", "solo.csv")
        imported = hardware.get("imported", {})
        fits = {m: _fit_solo(rows, imported.get(m, {}), _idle_w(hardware)) for m, rows in solo.groupby("model", sort=True)}
        unknown = sorted((set(pairs["model"]) | set(pairs["partner"])) - set(fits))
        if unknown:
            raise UserError(f"pairs.csv names model '{unknown[0]}' that solo.csv never profiled",
                            "profile that model solo too, or drop its pair rows", "pairs.csv")
        candidates = [c for c in DEMAND_CANDIDATES if all(k == "share" or k in f.metrics for k in c for f in fits.values())]
        best = min((cls._with_interference(hardware, fits, metrics, pairs) for metrics in candidates),
                   key=lambda pm_err: pm_err[1])[0]
        best.seen_sets = [list(k) for k in sorted({tuple(sorted(k)) for k in zip(pairs["model"], pairs["partner"])})]
        for model, fit in best.fits.items():
            terms = best.linear_terms(model, int(np.median(fit.latency.batches)), float(np.median(best.shares(model))))
            fit.sensitivity, fit.sched_ms = terms.sensitivity, terms.sched_ms
        if use_residual and len(pairs):
            best.residual = best._gated_residual(pairs)
        return best

    @classmethod
    def _with_interference(cls, hardware, fits, metrics, pairs) -> tuple["PerfModel", float]:
        """Fit the global interference coefficients for one demand descriptor set; (model, in-sample MAPE)."""
        pm = cls(hardware, fits, analytical.Interference(metrics, [1.0] * len(metrics)))
        if not len(pairs):
            return pm, 0.0
        members, measured = pm._pair_members(pairs)
        own, partner = np.arange(0, len(members.batch), 2), np.arange(1, len(members.batch), 2)
        demand = members.demand
        kernels = np.array([fits[m].kernels for m in pairs["model"]], float)
        pm.interference = analytical.fit_interference(
            metrics, demand[own], demand[partner], members.share[own], members.solo_ms[own], kernels,
            members.excess_w()[own], measured)
        members, measured = pm._pair_members(pairs)
        error = np.abs(features.analytical_ms(members)[own] / measured - 1.0).mean()
        return pm, float(error)

    def _gated_residual(self, pairs: pd.DataFrame) -> residual.Residual | None:
        """Train the residual on all pairs, with shrinkage weights chosen by inner cross-validation on these pairs:
        leave-one-model-pair-out for unseen model combinations, batch-combination folds for seen ones."""
        trained = self._train_residual(pairs)
        if trained is None:
            return None
        model_pairs = pairs.apply(lambda r: "/".join(sorted((r.model, r.partner))), axis=1)
        combos = pairs.apply(lambda r: tuple(sorted((int(r.batch), int(r.partner_batch)))), axis=1)
        combo_fold = combos.map({c: i % INNER_COMBO_FOLDS for i, c in enumerate(sorted(set(combos)))})
        trained.weight_unseen = self._inner_weight(pairs, model_pairs.to_numpy())
        trained.weight_seen = self._inner_weight(pairs, combo_fold.to_numpy())
        return trained

    def _train_residual(self, pairs: pd.DataFrame) -> residual.Residual | None:
        members, measured = self._pair_members(pairs)
        base = features.analytical_ms(members)
        own = np.arange(0, len(base), 2)
        return residual.train(features.matrix(members, base)[own], np.log(measured / base[own]))

    def _inner_weight(self, pairs: pd.DataFrame, groups: np.ndarray) -> float:
        """Refit (analytical + residual) without each group, score the residual's weight on the held-out group."""
        if len(set(groups)) < 2:
            return 0.0
        base, raw, measured = [], [], []
        for g in sorted(set(groups)):
            held_out = groups == g
            inner = PerfModel._with_interference(self.hardware, self.fits, self.interference.metrics,
                                                 pairs[~held_out])[0]
            trained = inner._train_residual(pairs[~held_out])
            members, truth = inner._pair_members(pairs[held_out])
            b = features.analytical_ms(members)[::2]
            base.append(b)
            raw.append(trained.raw(features.matrix(members, features.analytical_ms(members))[::2]) if trained
                       else np.zeros(len(b)))
            measured.append(truth)
        return residual.best_weight(base, raw, measured)

    @property
    def pressure_metric(self) -> str:
        return "+".join(self.interference.metrics)

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
        with np.errstate(invalid="ignore"):  # a share at or below the surface's pole: no latency, no throughput
            rps = np.where(np.isfinite(latency), members.solo_rps * members.solo_ms / latency, 0.0)
        out, i = [], 0
        for s in sets:
            out.append([Prediction(m.model, m.batch, m.share, float(latency[j]), float(rps[j]))
                        for j, m in enumerate(flat[i:i + len(s)], start=i)])
            i += len(s)
        return out

    def linear_terms(self, model: str, batch: int, share: float) -> LinearTerms:
        """Linearised interference for the ILP; exact for the contention and scheduling part (the power-capped clock
        term and the residual are left out):
        latency ~= solo_latency_ms + sum over partners p of (solo_latency_ms * sensitivity * p.pressure + sched_ms)."""
        return LinearTerms(*(float(v[0]) for v in self.linear_terms_many([model], [batch], [share])))

    def linear_terms_many(self, models: list[str], batches: list[int], shares: list[float]) -> LinearTerms:
        """linear_terms of many (model, batch, share) points in one pass: each field an array, one entry per point,
        equal to what linear_terms gives for that point (candidates.py tabulates thousands)."""
        flat = [self._check(Member(*m)) for m in zip(models, batches, shares)]
        self._tabulate(flat)
        members = self._members(flat, np.arange(len(flat)))
        scale = np.array([math.exp(self.fits[m.model].correction) for m in flat], float)
        return LinearTerms(members.solo_ms * scale, members.solo_rps / scale, members.sensitivity, members.pressure,
                           members.sched_ms * scale)

    def update(self, observations: pd.DataFrame, boost_rounds: int = 0, rate: float = UPDATE_RATE) -> None:
        """Online adaptation from new store rows (solo rows: no partner; pair rows: one partner each).
        Optional extra boosting rounds on the residual, then an exponentially weighted per-model correction."""
        obs = validate(observations.copy(), ["model", "batch", "share", "latency_mean_ms"], "observations")
        sets = [[Member(r.model, int(r.batch), float(r.share))]
                + ([Member(r.partner, int(r.partner_batch), float(r.partner_share))]
                   if "partner" in obs and isinstance(r.partner, str) and r.partner else [])
                for r in obs.itertuples()]
        self.update_sets(sets, obs["latency_mean_ms"].to_numpy(float), boost_rounds, rate)

    def update_sets(self, sets: list[list], measured_ms, boost_rounds: int = 0, rate: float = UPDATE_RATE) -> None:
        """``update`` from co-located sets of any size: the first member of each set was measured (batch latency
        ``measured_ms``), the others are its partners (igniter watch observes servers sharing a device)."""
        sets = [[Member(*m) for m in s] for s in sets]
        measured = np.asarray(measured_ms, float)
        base, x, seen, servable = self._own_rows(sets)
        # a set the model deems unservable (a share beyond a surface's pole) has no finite prediction to correct
        sets, measured = [s for s, ok in zip(sets, servable) if ok], measured[servable]
        base, x, seen = base[servable], x[servable], seen[servable]
        if boost_rounds > 0 and self.residual is not None and len(sets):
            self.residual.boost(x, np.log(measured / base), boost_rounds)
        uncorrected = base * (self._residual_factor(x, seen, np.ones(len(x), bool)) if self.residual else 1.0)
        for members, observed in zip(sets, np.log(measured / uncorrected)):
            fit = self._fit_of(members[0].model)
            fit.correction = (1.0 - rate) * fit.correction + rate * float(observed)

    # --- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "hardware": self.hardware,
                "interference": self.interference.to_dict(), "seen_sets": self.seen_sets,
                "models": {m: f.to_dict() for m, f in sorted(self.fits.items())},
                "residual": self.residual.to_dict() if self.residual else None}

    def save(self, path: str | Path) -> None:
        atomic_write(Path(path), json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PerfModel":
        path = Path(path)
        if not path.exists():
            raise UserError("the performance model file does not exist", "run igniter fit --out FILE first",
                            str(path))
        d = read_json(path, "performance model file", MAX_MODEL_BYTES)
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
            raise UserError(f"not an {FORMAT} version {VERSION} file", "re-run igniter fit to regenerate it",
                            str(path))
        validate_schema(PerfModelFile, d, path.name, "re-run igniter fit to regenerate the file")
        try:
            fitted_residual = residual.Residual.from_dict(d["residual"]) if d["residual"] else None
        except (ValueError, xgboost.core.XGBoostError):
            raise UserError("residual.booster_json_b64 is not a model this xgboost can load",
                            "re-run igniter fit to regenerate the file", path.name) from None
        return cls(d["hardware"], {m: ModelFit.from_dict(f) for m, f in d["models"].items()},
                   analytical.Interference(**d["interference"]), fitted_residual, d["seen_sets"])

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

    def _terms(self, model: str, batch: int, share: float) -> tuple[float, ...]:
        """(solo ms, solo req/s, power W above idle, then every metric of METRIC_COLUMNS as a fraction of peak (NaN
        where unknown)), memoised: the ILP asks the same points."""
        self._tabulate([Member(model, batch, share)])
        return self._memo[(model, batch, share)]

    def _tabulate(self, points: list[Member]) -> None:
        """Memoise the _terms of every point not yet known, the grids interpolated once per (model, batch) over all
        its shares; each value is computed as for a single point, so the result does not depend on the grouping."""
        shares_of: dict[tuple[str, int], list[float]] = {}
        for model, batch, share in points:
            if (model, batch, share) not in self._memo:
                shares_of.setdefault((model, batch), []).append(share)
        for (model, batch), shares in shares_of.items():
            fit = self.fits[model]
            shares = sorted(set(shares))
            solo_ms = _monotone_solo_ms(fit, batch, np.array(shares, float))
            pipelining = fit.pipelining.at(batch, np.array(shares, float))
            power = fit.power.at(batch, np.array(shares, float)) if fit.power else np.zeros(len(shares))
            metrics = [fit.metrics[k].at(batch, np.array(shares, float)) if k in fit.metrics else None
                       for k in METRIC_COLUMNS]
            for i, share in enumerate(shares):
                rps = batch * 1000.0 / float(solo_ms[i]) * math.exp(float(pipelining[i]))
                demand = [math.nan if m is None else max(float(m[i]) * rps, 0.0) for m in metrics]
                self._memo[(model, batch, share)] = (float(solo_ms[i]), rps, max(float(power[i]), 0.0), *demand)

    def _members(self, flat: list[Member], set_index: np.ndarray) -> Members:
        terms = np.array([self._terms(*m) for m in flat], float).reshape(len(flat), -1)
        share = np.array([m.share for m in flat], float)
        metric = dict(zip(METRIC_COLUMNS, terms[:, 3:].T))
        members = Members(set_index, np.array([m.batch for m in flat], float), share, terms[:, 0], terms[:, 1],
                          np.zeros(len(flat)), metric["l2"], metric["dram"], np.zeros(len(flat)),
                          self.interference.sched_ms_per_kernel * np.array([self.fits[m.model].kernels for m in flat]),
                          terms[:, 2], self._clock())
        members.demand = demand = self._demand(share, metric)
        members.pressure = self.interference.pressure(demand)
        members.sensitivity = self.interference.sensitivity(demand, share)
        return members

    def _demand(self, share: np.ndarray, metric: dict) -> np.ndarray:
        """Demand descriptors (fractions of peak) of every member, one column per interference metric."""
        return np.column_stack([share / 100.0 if k == "share" else metric[k] for k in self.interference.metrics])

    def _clock(self) -> tuple[float, float, float]:
        """(idle W, TDP W, slowdown per W) when the store knows power; zeros (no clock term) otherwise."""
        idle_w, tdp_w = _idle_w(self.hardware), self.hardware.get("tdp_w")
        if idle_w is None or not tdp_w or not any(f.power for f in self.fits.values()):
            return (0.0, 0.0, 0.0)
        return (float(idle_w), float(tdp_w), self.interference.clock_per_w)

    def _latency(self, members: Members, models: list[str]) -> np.ndarray:
        base = features.analytical_ms(members)
        if self.residual is not None:  # floored at solo: co-runners never make a member faster
            seen = self._seen(models, members.set_index)
            factor = self._residual_factor(features.matrix(members, base), seen, _servable(members))
            base = np.maximum(base * factor, members.solo_ms)
        return base * np.exp([self.fits[m].correction for m in models])

    def _residual_factor(self, x: np.ndarray, seen: np.ndarray, servable: np.ndarray) -> np.ndarray:
        """exp(residual) of every servable row, 1 elsewhere: an unservable set's features hold infinities, which
        xgboost refuses, and there is nothing to correct."""
        factor = np.ones(len(x))
        if servable.any():
            factor[servable] = np.exp(self.residual.predict(x[servable], seen[servable]))
        return factor

    def _seen(self, models: list[str], set_index: np.ndarray) -> np.ndarray:
        """Per member: was its set's model combination among the profiled pairs?"""
        names: dict[int, list[str]] = {}
        for model, i in zip(models, set_index):
            names.setdefault(int(i), []).append(model)
        seen = {tuple(s) for s in self.seen_sets}
        return np.array([tuple(sorted(names[int(i)])) in seen for i in set_index])

    def _pair_members(self, pairs: pd.DataFrame) -> tuple[Members, np.ndarray]:
        """Each pair row as a 2-member set, the row's own model first."""
        flat = []
        for r in pairs.itertuples():
            flat += [Member(r.model, int(r.batch), float(r.share)),
                     Member(r.partner, int(r.partner_batch), float(r.partner_share))]
        set_index = np.repeat(np.arange(len(pairs)), 2)
        return self._members(flat, set_index), pairs["latency_mean_ms"].to_numpy(float)

    def _own_rows(self, sets: list[list[Member]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Analytical latency, features, seen flag and servable flag of the first member of every set."""
        flat = [self._check(m) for s in sets for m in s]
        set_index = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
        members = self._members(flat, set_index)
        base = features.analytical_ms(members)
        first = np.r_[0, np.cumsum([len(s) for s in sets])[:-1]]
        seen = self._seen([m.model for m in flat], set_index)
        return base[first], features.matrix(members, base)[first], seen[first], _servable(members)[first]


def _servable(members: Members) -> np.ndarray:
    """Per member: has every member of its set a finite solo latency (none at a share beyond its pole)?"""
    beyond = np.bincount(members.set_index, weights=~np.isfinite(members.solo_ms), minlength=1)
    return beyond[members.set_index] == 0


def _monotone_solo_ms(fit: ModelFit, batch: int, shares: np.ndarray) -> np.ndarray:
    """Solo latency at each share that never grows with the share: the least over the share and a 1 %-step grid of
    smaller shares (measured tables are noisy, e.g. V100 ssd batch 1 is slower at 100 % than at 80 %)."""
    steps = np.arange(1.0, float(shares.max()), 1.0)
    below = np.append(np.inf, np.minimum.accumulate(_raw_solo_ms(fit, batch, steps)))  # [n]: least of n steps
    smaller = np.maximum(np.ceil(shares - 1.0), 0).astype(int)  # steps below each share: len(arange(1, share))
    return np.minimum(below[smaller], _raw_solo_ms(fit, batch, shares))


def _raw_solo_ms(fit: ModelFit, batch: int, shares: np.ndarray) -> np.ndarray:
    return analytical.surface(np.asarray(fit.surface), batch, shares) * np.exp(fit.latency.at(batch, shares))


def _idle_w(hardware: dict) -> float | None:
    """Idle board power: hardware.json's idle_power_w, else the imported iGniter coefficients' idlepower."""
    return hardware.get("idle_power_w", hardware.get("imported", {}).get("hardware", {}).get("idlepower"))


def _power_grid(rows: pd.DataFrame, imported: dict, idle_w: float | None) -> analytical.Grid | None:
    """Solo power above idle over (batch, share): measured power_w column, else imported iGniter tables."""
    if idle_w is None:
        return None
    if "power_w" in rows and rows["power_w"].notna().sum() >= 2:
        ok = rows["power_w"].notna()
        return analytical.Grid.from_points(rows["batch"][ok], rows["share"][ok], rows["power_w"][ok] - idle_w)
    if "power" not in imported:
        return None
    batches, shares = IMPORTED_POWER_GRID
    points = [(b, r, imported["power"][i][j] - idle_w) for i, b in enumerate(batches) for j, r in enumerate(shares)]
    return analytical.Grid.from_points(*zip(*points))


def _fit_solo(rows: pd.DataFrame, imported: dict, idle_w: float | None) -> ModelFit:
    b, s = rows["batch"].to_numpy(float), rows["share"].to_numpy(float)
    lat, rps = rows["latency_mean_ms"].to_numpy(float), rows["throughput_rps"].to_numpy(float)
    k = analytical.fit_surface(b, s, lat)
    metrics = {}
    for name, column in METRIC_COLUMNS.items():
        if column in rows and rows[column].notna().sum() >= 2:
            value = rows[column].to_numpy(float) / 100.0
            ok = ~np.isnan(value)
            metrics[name] = analytical.Grid.from_points(b[ok], s[ok], value[ok] / rps[ok])
    memory = {}
    if "memory_mb" in rows and rows["memory_mb"].notna().any():
        memory = {int(x): float(v) for x, v in rows.groupby("batch")["memory_mb"].mean().dropna().items()}
    return ModelFit([float(x) for x in k], analytical.Grid.from_points(b, s, np.log(lat / analytical.surface(k, b, s))),
                    analytical.Grid.from_points(b, s, np.log(rps * lat / (b * 1000.0))), metrics, memory,
                    _power_grid(rows, imported, idle_w), float(imported.get("kernel", 1.0)))
