"""Capacity planning over a rate trace: a plan per step, three provisioning policies, growth, GPU types.

Every step's rates are rounded UP to a geometric grid (ratio 1 + headroom): a plan made for the rounded rates
carries every rate up to them, and steps whose rates round to the same levels share one plan (one solve, cached),
which is what makes a day at 1-minute steps fast. With a ``scale`` trace all workloads move together, so the
number of distinct plans is the number of levels the scale visits (a few dozen), whatever the step count.

A plan's capacity is the rate vector it was made (and verified) for. Policies, all on the same cached plans:

- ``static-peak``: one plan for every workload's peak rate over the whole trace, kept throughout;
- ``replan``: at each step the plan for the rates observed in the previous step (the first step: its own),
  i.e. a reactive autoscaler one step behind the load;
- ``hysteresis``: the plan for the highest levels observed over the previous K steps (scale up at once, scale
  down only after K quieter steps), and a scale-down waits until the cost it would have saved since the lower
  target appeared adds up to the move cost (break-even rule).

A step is a violation when some workload's rate in it exceeds the capacity of the plan in force (the SLO is then
predicted to be missed). A reconfiguration is a step whose deployed plan (GPUs, servers, batches, shares) differs
from the previous step's; each costs ``move_cost`` (price units), added to the policy's cost.

Per-step plans come from the fast greedy (``strategy="igniter"``); with ``ilp_budget_s`` > 0 the ILP then re-solves
the plans that carry the most cost (steps in force x cost per hour), heaviest first, within that budget, and
keeps each where it is cheaper ("the ILP where it matters"); ``refinement`` reports the greedy's cost error there.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from igniter.errors import UserError
from igniter.provisioning import solve
from igniter.provisioning.candidates import build_problem
from igniter.provisioning.strategy import cost as plan_cost
from igniter.provisioning.traces import Trace
from igniter.provisioning.workloads import GpuType, WorkloadSet

NO_LOAD = -(10 ** 6)          # level of a zero rate (no server)
POLICIES = ("static-peak", "replan", "hysteresis")
RATE_TOLERANCE = 1e-6         # relative: planned levels are computed in floating point
MIN_PLANNED_RATE = 0.001      # req/s: the smallest rate a workloads file may give (lower ones are planned at it)


@dataclass(frozen=True)
class StepPlan:
    cost_per_h: float
    gpus: tuple[int, ...]      # GPUs per type (the planner's types order)
    signature: tuple           # what is deployed; two steps with different signatures mean a reconfiguration
    strategy: str


@dataclass
class PolicyRun:
    name: str
    keys: list[tuple]                  # per step: the level key of the plan in force
    gpus: np.ndarray                   # (S, T) GPUs per type
    cost_per_h: np.ndarray             # (S,)
    capacity: np.ndarray               # (S, W) req/s the plan in force carries
    violated: np.ndarray               # (S,) bool
    reconfigurations: int
    gpu_hours: float
    cost: float

    def summary(self) -> dict:
        return {"name": self.name, "gpu_hours": round(self.gpu_hours, 4), "cost": round(self.cost, 4),
                "reconfigurations": self.reconfigurations, "violations": int(self.violated.sum())}


@dataclass(frozen=True)
class Settings:
    step_s: float = 300.0
    headroom: float = 0.05            # rates rounded up to levels (1 + headroom)^k
    hysteresis_steps: int = 3
    move_cost: float = 0.0            # price units per reconfiguration
    strategy: str = "igniter"
    time_limit_s: float = 10.0        # per solve
    ilp_budget_s: float = 0.0         # total ILP refinement time (0: greedy plans only)
    latency_model: str = "queueing"


@dataclass
class Demand:
    """Per-step rates of one scenario and their levels: planned rate = base * (1 + headroom)^level."""
    rates: np.ndarray        # (S, W) req/s
    levels: np.ndarray       # (S, W) int, NO_LOAD for a zero rate
    base: np.ndarray         # (W,) W.yaml rates for a scale trace, 1.0 per workload otherwise
    ratio: float
    hours: np.ndarray        # (S,) length of each step (the last may be cut short by the trace's end)

    def planned(self, key: tuple) -> np.ndarray:
        levels = np.array(key)
        return np.where(levels == NO_LOAD, 0.0, self.base * self.ratio ** levels.astype(float))


@dataclass
class CapacityResult:
    settings: Settings
    starts: np.ndarray                 # (S,) step start, trace seconds
    workloads: tuple[str, ...]
    types: tuple[str, ...]
    rates: np.ndarray                  # (S, W) growth 1
    policies: list[PolicyRun]          # growth 1, whole catalog
    growth: list[dict]                 # {"growth", "name", "gpu_hours", "cost", "reconfigurations", "violations"}
    gpu_types: list[dict]              # {"option", "name", "gpu_hours", "cost", ...} or {"option", "error"}
    plans_solved: int
    seconds: float
    refinement: dict = field(default_factory=dict)


def demand(workload_set: WorkloadSet, trace: Trace, step_s: float, growth: float, headroom: float,
           duration_s: float | None = None) -> tuple[np.ndarray, Demand]:
    """(step starts, the scenario's rates and levels) for a trace and a growth factor."""
    starts, values = trace.steps(step_s, duration_s)
    end = trace.end() if duration_s is None else min(trace.end(), starts[0] + duration_s)
    hours = np.diff(np.append(starts, end)) / 3600.0
    names = [w.name for w in workload_set.workloads]
    if trace.is_scale:
        base = np.array([w.rate for w in workload_set.workloads])
        multiplier = values[:, :1] * growth
        levels = np.repeat(_levels(multiplier, headroom), len(names), axis=1)
        rates = multiplier * base[None, :]
    else:
        _check_columns(trace, names)
        base = np.ones(len(names))
        rates = values[:, [trace.columns.index(n) for n in names]] * growth
        levels = _levels(rates, headroom)
    return starts, Demand(rates, levels, base, 1.0 + headroom, hours)


def _levels(x: np.ndarray, headroom: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        exponent = np.ceil(np.log(x) / math.log1p(headroom) - 1e-9)
    return np.where(x > 0, exponent, NO_LOAD).astype(np.int64)


def _check_columns(trace: Trace, names: list[str]) -> None:
    import difflib

    for column in trace.columns:
        if column not in names:
            near = difflib.get_close_matches(column, names, 1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserError(f"trace column {column!r} is not a workload of the workloads file{hint}",
                            "name each rate column after a workload, or use one `scale` column", trace.source)
    missing = [n for n in names if n not in trace.columns]
    if missing:
        raise UserError(f"the trace has no column for workload {missing[0]!r}",
                        "give every workload a rate column, or use one `scale` column", trace.source)


class Planner:
    """Plans for level keys on one set of GPU types, each key solved once."""

    def __init__(self, workload_set: WorkloadSet, types: list[GpuType], settings: Settings):
        self.workload_set, self.types, self.settings = workload_set, types, settings
        self.plans: dict[tuple, StepPlan] = {}

    def solve_all(self, keys: set[tuple], scenario: Demand, bar) -> None:
        for key in sorted(keys - set(self.plans)):
            self.plans[key] = self.solve_key(key, scenario, self.settings.strategy, self.settings.time_limit_s)
            bar.update(1)

    def solve_key(self, key: tuple, scenario: Demand, strategy: str, time_limit_s: float) -> StepPlan:
        rates = scenario.planned(key)
        loaded = [replace(w, rate=max(float(r), MIN_PLANNED_RATE)) for w, r in zip(self.workload_set.workloads, rates)
                  if r > 0]
        if not loaded:
            return StepPlan(0.0, (0,) * len(self.types), (), strategy)
        try:     # infeasible at these rates, or over a type's max_count
            problem = build_problem(replace(self.workload_set, workloads=tuple(loaded)), self.types,
                                    self.settings.latency_model)
            assignment, _ = solve(problem, strategy, time_limit_s)
        except UserError as err:
            raise UserError(f"at {_rates_text(loaded)}: {err.what}", err.fix, err.where) from None
        gpus = [g for g in assignment.gpus if g.servers]
        counts = tuple(sum(1 for g in gpus if g.type_index == ti) for ti in range(len(self.types)))
        signature = tuple(sorted((problem.types[g.type_index].type, tuple(sorted(
            (problem.workloads[s.workload].name, s.replica, s.option.model, s.option.batch, s.option.share,
             s.option.replicas) for s in g.servers))) for g in gpus))
        return StepPlan(float(plan_cost(problem, gpus)), counts, signature, strategy)


def _rates_text(workloads) -> str:
    shown = ", ".join(f"{w.name}={w.rate:.4g}" for w in workloads[:3])
    return f"rates {shown}{', ...' if len(workloads) > 3 else ''} req/s"


def policy_keys(scenario: Demand, hysteresis_steps: int) -> dict[str, list[tuple]]:
    """Candidate level key per step for each policy (hysteresis: its scale-up/down targets; see run_policy)."""
    levels = scenario.levels
    observed = _shifted(levels, 1)            # step t acts on step t-1's rates (step 0 on its own)
    window = np.max([_shifted(observed, lag) for lag in range(hysteresis_steps)], axis=0)
    peak = tuple(levels.max(axis=0).tolist())
    return {"static-peak": [peak] * len(levels), "replan": [tuple(r) for r in observed.tolist()],
            "hysteresis": [tuple(r) for r in window.tolist()]}


def _shifted(rows: np.ndarray, lag: int) -> np.ndarray:
    """Row t holds rows[max(t - lag, 0)]."""
    return rows[np.maximum(np.arange(len(rows)) - lag, 0)]


def run_policy(name: str, targets: list[tuple], scenario: Demand, plans: dict[tuple, StepPlan],
               settings: Settings) -> PolicyRun:
    keys = _hysteresis(targets, scenario.hours, plans, settings) if name == "hysteresis" else targets
    in_force = [plans[k] for k in keys]
    gpus = np.array([p.gpus for p in in_force], dtype=int)
    cost_per_h = np.array([p.cost_per_h for p in in_force])
    capacity = np.array([scenario.planned(k) for k in keys])
    violated = (scenario.rates > capacity * (1 + RATE_TOLERANCE) + 1e-9).any(axis=1)
    moves = sum(1 for a, b in zip(in_force, in_force[1:]) if a.signature != b.signature)
    gpu_hours = float(gpus.sum(axis=1) @ scenario.hours)
    return PolicyRun(name, keys, gpus, cost_per_h, capacity, violated, moves, gpu_hours,
                     float(cost_per_h @ scenario.hours + moves * settings.move_cost))


def _hysteresis(targets: list[tuple], hours: np.ndarray, plans: dict[tuple, StepPlan],
                settings: Settings) -> list[tuple]:
    """Follow the window targets: up at once when a target level exceeds the current plan's; down once the cost
    the cheaper target would have saved since it became the target adds up to the move cost (break-even rule)."""
    current, forgone = targets[0], 0.0
    keys = []
    for target, step_h in zip(targets, hours):
        if target == current:
            forgone = 0.0
        elif any(t > c for t, c in zip(target, current)):
            current, forgone = target, 0.0
        else:
            forgone += (plans[current].cost_per_h - plans[target].cost_per_h) * step_h
            if forgone > 0 and forgone >= settings.move_cost:
                current, forgone = target, 0.0
        keys.append(current)
    return keys


def needed_keys(all_targets: dict[str, list[tuple]]) -> set[tuple]:
    return {k for targets in all_targets.values() for k in targets}


def plan_capacity(workload_set: WorkloadSet, types: list[GpuType], trace: Trace, settings: Settings,
                  growths: list[float], duration_s: float | None = None, progress: bool = False) -> CapacityResult:
    """All policies for every growth factor on the whole catalog, and (with more than one type) on each type
    alone at growth 1."""
    started = time.perf_counter()
    growths = sorted({1.0, *growths})
    scenarios = {}
    for g in growths:
        starts, scenarios[g] = demand(workload_set, trace, settings.step_s, g, settings.headroom, duration_s)
    targets = {g: policy_keys(s, settings.hysteresis_steps) for g, s in scenarios.items()}
    mix = Planner(workload_set, types, settings)
    singles = [Planner(workload_set, [t], settings) for t in types] if len(types) > 1 else []
    jobs = [(g, mix, scenarios[g], needed_keys(targets[g])) for g in growths]
    jobs += [(t.type, p, scenarios[1.0], needed_keys(targets[1.0])) for t, p in zip(types, singles)]
    total = len(set().union(*(k for _, _, _, k in jobs[:len(growths)]))) + sum(len(j[3]) for j in jobs[len(growths):])
    errors: dict = {}     # growth factor or single type -> why it cannot be planned
    with _bar(total, progress) as bar:
        for label, planner, scenario, keys in jobs:
            try:
                planner.solve_all(keys, scenario, bar)
            except UserError as err:
                if label == 1.0:
                    raise
                errors[label] = err.what
    compared = dict(mix.plans)     # the type comparison uses the same solver for every option (no refinement)
    refinement = {}
    if settings.ilp_budget_s > 0 and settings.strategy != "ilp":
        with _bar(settings.ilp_budget_s, progress, "ilp refinement", "s") as bar:
            refinement = _refine(mix, scenarios[1.0], targets[1.0], settings, bar)
    runs = {g: [run_policy(n, targets[g][n], scenarios[g], mix.plans, settings) for n in POLICIES]
            for g in growths if g not in errors}
    growth_rows = [{"growth": g, "error": errors[g]} if g in errors else {"growth": g, **r.summary()}
                   for g in growths for r in runs.get(g, [None])]
    type_rows = _type_rows(types, [mix, *singles], compared, errors, targets[1.0], scenarios[1.0], settings)
    return CapacityResult(settings, starts, tuple(w.name for w in workload_set.workloads),
                          tuple(t.type for t in types), scenarios[1.0].rates, runs[1.0], growth_rows, type_rows,
                          len(mix.plans) + sum(len(p.plans) for p in singles), time.perf_counter() - started,
                          refinement)


def _refine(mix: Planner, scenario: Demand, targets: dict[str, list[tuple]], settings: Settings, bar) -> dict:
    """Re-solve the heaviest plans (steps in force x cost per hour, over the policies) with the ILP, within
    ilp_budget_s; keep the ILP's plan where it is cheaper. Returns what it found (the greedy's cost error)."""
    weight: dict[tuple, float] = {}
    for name in POLICIES:
        for k in targets[name]:
            weight[k] = weight.get(k, 0.0) + mix.plans[k].cost_per_h
    deadline = time.perf_counter() + settings.ilp_budget_s
    pairs = []
    for key in sorted(weight, key=lambda k: -weight[k]):
        left = deadline - time.perf_counter()
        if left <= 0.05:
            break
        greedy = mix.plans[key]
        if greedy.cost_per_h == 0:
            continue
        began = time.perf_counter()
        exact = mix.solve_key(key, scenario, "ilp", min(settings.time_limit_s, left))
        bar.update(min(time.perf_counter() - began, left))
        pairs.append((greedy.cost_per_h, exact.cost_per_h, weight[key]))
        if exact.cost_per_h < greedy.cost_per_h - 1e-9:
            mix.plans[key] = exact
    if not pairs:
        return {"plans": 0}
    greedy_c, ilp_c, w = (np.array(c) for c in zip(*pairs))
    error = (greedy_c - ilp_c) / greedy_c
    return {"plans": len(pairs), "of": len(weight), "weight_covered": round(float(w.sum() / sum(weight.values())), 4),
            "improved": int((error > 1e-9).sum()), "mean_error": round(float(error.mean()), 4),
            "max_error": round(float(error.max()), 4)}


def _type_rows(types, planners, mix_plans, errors, targets, scenario, settings) -> list[dict]:
    """Policies on the whole catalog (the mix) and on each type alone, every option with the per-step solver's
    plans (the ILP refinement, applied to the mix only, would make the comparison unfair)."""
    if len(planners) == 1:
        return []
    options = [("mix (" + "+".join(t.type for t in types) + ")", mix_plans)]
    options += [(t.type, p.plans) for t, p in zip(types, planners[1:])]
    rows = []
    for option, plans in options:
        if option in errors:
            rows.append({"option": option, "error": errors[option]})
            continue
        rows += [{"option": option, **run_policy(n, targets[n], scenario, plans, settings).summary()}
                 for n in POLICIES]
    return rows


def cheapest(result: CapacityResult, policy: str = "replan") -> dict:
    """The cheapest single GPU type and the mix's cost, under one policy."""
    rows = [r for r in result.gpu_types if r.get("name") == policy]
    mix = next(r for r in rows if r["option"].startswith("mix"))
    single = [r for r in rows if r is not mix]
    best = min(single, key=lambda r: r["cost"]) if single else None
    return {"policy": policy, "mix": mix["cost"],
            "single_type": best["option"] if best else None, "single_cost": best["cost"] if best else None}


class _NoBar:
    def update(self, n: float) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _bar(total: float, progress: bool, desc: str = "plans", unit: str = "plan"):
    """Progress with an ETA on stderr (tqdm), or nothing."""
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    counts = "{n:.1f}/{total:.1f} s" if unit == "s" else "{n_fmt}/{total_fmt}"
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| " + counts + " [{elapsed}<{remaining}]")
