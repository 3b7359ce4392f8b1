"""Provisioning: workloads + perf model -> plan.json + per-server Triton repositories.

``run`` is the whole stage for the CLI: read the inputs, build the candidates, solve with one strategy
(a module with ``solve(problem, time_limit_s) -> Assignment``: ilp, igniter, ffd), build the plan.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from igniter.errors import UserError
from igniter.provisioning import bounds, ffd, greedy_igniter, ilp
from igniter.provisioning.candidates import ProvisioningProblem, build_problem
from igniter.provisioning.plan import build_plan
from igniter.provisioning.strategy import Assignment, cost, violations
from igniter.provisioning.workloads import (default_catalog, known_models, load_catalog, load_perf_model,
                                            load_workloads)

STRATEGIES = {"ilp": ilp, "igniter": greedy_igniter, "ffd": ffd}


def load_problem(workloads: str | Path, perf_model: str | Path | None, catalog: str | Path | None,
                 latency_model: str = "queueing", loader: Callable[[Path], Any] = load_perf_model) -> ProvisioningProblem:
    if catalog:
        types = load_catalog(catalog, loader)
    elif perf_model:
        types = default_catalog(loader(Path(perf_model)))
    else:
        raise UserError("no performance model given", "pass --perf-model MODEL_FILE (or --gpus CATALOG.yaml)")
    return build_problem(load_workloads(workloads, known_models(types)), types, latency_model)


def solve(problem: ProvisioningProblem, strategy: str, time_limit_s: float) -> tuple[Assignment, float]:
    start = time.perf_counter()
    assignment = STRATEGIES[strategy].solve(problem, time_limit_s)
    if "bound" not in assignment.details:   # the plan's lower bound is the strong one whatever the strategy
        # a plan that misses SLOs proves nothing about the optimum: bound the instance, not just up to its cost
        target = math.inf if violations(problem, assignment.gpus) else cost(problem, assignment.gpus)
        lower, details = bounds.best_bound(problem, target, time.monotonic() + bounds.TIME_SHARE * time_limit_s,
                                           [] if math.isinf(target) else assignment.gpus)
        assignment.lower_bound = max(assignment.lower_bound, lower)
        assignment.details.update(details)
    return assignment, time.perf_counter() - start


def run(workloads, perf_model, catalog, strategy: str = "ilp", time_limit_s: float = 10.0,
        latency_model: str = "queueing", loader: Callable[[Path], Any] = load_perf_model):
    """Inputs -> (problem, assignment, plan dict, solve seconds)."""
    problem = load_problem(workloads, perf_model, catalog, latency_model, loader)
    assignment, seconds = solve(problem, strategy, time_limit_s)
    return problem, assignment, build_plan(problem, assignment, strategy), seconds
