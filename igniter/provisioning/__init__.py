"""Provisioning: workloads + perf model -> plan.json + per-server Triton repositories.

``run`` is the whole stage for the CLI: read the inputs, build the candidates, solve with one strategy of
``STRATEGIES``, build the typed plan. Every interference-aware strategy goes through the same finish (``solve``),
done once here rather than inside each: the full perf model re-checks every GPU, ``repair`` fixes what it says
misses an SLO, and the result is never worse than the warm start (the repaired greedy) the strategy was given;
for every strategy a plan over a GPU type's max_count is refused (``enforce_max_count``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from igniter.errors import UserError
from igniter.provisioning import bounds, ffd, greedy_igniter, ilp
from igniter.provisioning.candidates import ProvisioningProblem, build_problem
from igniter.provisioning.plan import Plan, build_plan
from igniter.provisioning.repository import keep_stateful_on_one_server, repository_models, repository_types
from igniter.provisioning.strategy import (EPS, Assignment, Gpu, Strategy, cost, enforce_max_count, repair,
                                           violations, within_max_count)
from igniter.provisioning.workloads import (default_catalog, known_models, load_catalog, load_perf_model,
                                            load_workloads)


@dataclass(frozen=True)
class StrategyEntry:
    strategy: Strategy
    about: str
    checked: bool = True      # re-checked and repaired by the full model; False: kept as packed (a baseline)
    warm_start: bool = False  # given the repaired greedy as a start, and never returns worse


MIN_SEARCH_S = 0.5   # search time a strategy gets even when the warm start used up the limit

STRATEGIES: dict[str, StrategyEntry] = {
    "ilp": StrategyEntry(ilp, "integer program over the candidates, warm-started from the greedy", warm_start=True),
    "igniter": StrategyEntry(greedy_igniter, "the published iGniter greedy"),
    "ffd": StrategyEntry(ffd, "interference-blind first-fit decreasing (baseline: SLO misses are kept, not repaired)",
                         checked=False),
}


def load_inputs(workloads: str | Path, perf_model: str | Path | None, catalog: str | Path | None,
                loader: Callable[[Path], Any] = load_perf_model, src_repo: str | Path | None = None):
    """(workload set, GPU types): the workloads file checked against the models the catalog (or the one perf model)
    and the source repository know."""
    if catalog:
        types = load_catalog(catalog, loader)
    elif perf_model:
        types = default_catalog(loader(Path(perf_model)))
    else:
        raise UserError("no performance model given", "pass --perf-model MODEL_FILE (or --gpus CATALOG.yaml)")
    workload_set = load_workloads(workloads, known_models(types) | repository_models(src_repo))
    types = repository_types(types, src_repo, {v.model for w in workload_set.workloads for v in w.models()})
    return workload_set, types


def load_problem(workloads: str | Path, perf_model: str | Path | None, catalog: str | Path | None,
                 latency_model: str = "queueing", loader: Callable[[Path], Any] = load_perf_model,
                 src_repo: str | Path | None = None) -> ProvisioningProblem:
    """With a source repository its configs constrain the plan (batch limits; an ensemble is planned as its
    composing models: repository.RepositoryPerfModel)."""
    workload_set, types = load_inputs(workloads, perf_model, catalog, loader, src_repo)
    problem = build_problem(workload_set, types, latency_model)
    keep_stateful_on_one_server(problem)
    return problem


def solve(problem: ProvisioningProblem, strategy: str, time_limit_s: float) -> tuple[Assignment, float]:
    """Run one registered strategy with the shared finish; returns (assignment, seconds)."""
    entry = STRATEGIES.get(strategy)
    if entry is None:
        raise UserError(f"unknown strategy {strategy!r}", f"use one of {', '.join(sorted(STRATEGIES))}")
    start = time.perf_counter()
    warm = finish(problem, greedy_igniter.solve(problem, time_limit_s, None)) if entry.warm_start else None
    left = max(time_limit_s - (time.perf_counter() - start), MIN_SEARCH_S)   # the warm start counts against the limit
    found = entry.strategy.solve(problem, left, warm.gpus if warm else None)
    if entry.checked:
        found = finish(problem, found, warm)
    enforce_max_count(problem, found.gpus)   # a hard limit for every strategy: what does not fit is refused
    if found.status == "optimal" and cost(problem, found.gpus) > found.lower_bound + EPS:
        found.status = "feasible"   # a solver's optimum over the options it was given, or repaired after
    return found, time.perf_counter() - start


def bounded(problem: ProvisioningProblem, found: Assignment, time_limit_s: float) -> Assignment:
    """The strong lower bound (bounds.py) for a plan whatever its strategy (ilp computes it itself), in
    bounds.TIME_SHARE of the limit; for plans that are written (run), not for every solve (capacity's many)."""
    if "bound" not in found.details:
        # a plan that misses SLOs proves nothing about the optimum: bound the instance, not just up to its cost
        target = math.inf if violations(problem, found.gpus) else cost(problem, found.gpus)
        lower, details = bounds.best_bound(problem, target, time.monotonic() + bounds.TIME_SHARE * time_limit_s,
                                           [] if math.isinf(target) else found.gpus)
        found.lower_bound = max(found.lower_bound, lower)
        found.details.update(details)
    return found


def finish(problem: ProvisioningProblem, found: Assignment, warm: Assignment | None = None) -> Assignment:
    """Repair what the full model says misses an SLO; then the warm start instead if the result still misses, or
    is worse without the warm start being over a type's max_count where the result is not."""
    gpus = [Gpu(g.type_index, list(g.servers)) for g in found.gpus]
    repairs = repair(problem, gpus, greedy_igniter.relocate)
    gpus = [g for g in gpus if g.servers]
    details = {**found.details, "repairs": repairs}
    if warm is not None and (violations(problem, gpus) or (
            cost(problem, gpus) > cost(problem, warm.gpus) + EPS
            and within_max_count(problem, warm.gpus) >= within_max_count(problem, gpus))):
        return Assignment(warm.gpus, max(found.lower_bound, warm.lower_bound), "heuristic",
                          {**details, "fallback": "warm start (the strategy's plan was worse or missed an SLO)"})
    return Assignment(gpus, found.lower_bound, found.status, details)


def run(workloads, perf_model, catalog, strategy: str = "ilp", time_limit_s: float = 10.0,
        latency_model: str = "queueing", loader: Callable[[Path], Any] = load_perf_model,
        src_repo: str | Path | None = None) -> tuple[ProvisioningProblem, Assignment, Plan, float]:
    """Inputs -> (problem, assignment, plan, solve seconds)."""
    problem = load_problem(workloads, perf_model, catalog, latency_model, loader, src_repo)
    start = time.perf_counter()
    assignment, _ = solve(problem, strategy, time_limit_s)
    assignment = bounded(problem, assignment, time_limit_s)
    return problem, assignment, build_plan(problem, assignment, strategy), time.perf_counter() - start
