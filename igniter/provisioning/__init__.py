"""Provisioning: workloads + perf model -> plan.json + per-server Triton repositories.

``run`` is the whole stage for the CLI: read the inputs, build the candidates, solve with one strategy
(a module with ``solve(problem, time_limit_s) -> Assignment``: ilp, igniter, ffd), build the plan.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from igniter.errors import UserError
from igniter.provisioning import ffd, greedy_igniter, ilp
from igniter.provisioning.candidates import ProvisioningProblem, build_problem
from igniter.provisioning.plan import build_plan
from igniter.provisioning.repository import keep_stateful_on_one_server, repository_models, repository_types
from igniter.provisioning.strategy import Assignment
from igniter.provisioning.workloads import (default_catalog, known_models, load_catalog, load_perf_model,
                                            load_workloads)

STRATEGIES = {"ilp": ilp, "igniter": greedy_igniter, "ffd": ffd}


def load_problem(workloads: str | Path, perf_model: str | Path | None, catalog: str | Path | None,
                 latency_model: str = "queueing", loader: Callable[[Path], Any] = load_perf_model,
                 src_repo: str | Path | None = None) -> ProvisioningProblem:
    """With a source repository its configs constrain the plan (batch limits; an ensemble is planned as its
    composing models: repository.RepositoryPerfModel)."""
    if catalog:
        types = load_catalog(catalog, loader)
    elif perf_model:
        types = default_catalog(loader(Path(perf_model)))
    else:
        raise UserError("no performance model given", "pass --perf-model MODEL_FILE (or --gpus CATALOG.yaml)")
    workload_set = load_workloads(workloads, known_models(types) | repository_models(src_repo))
    types = repository_types(types, src_repo, {v.model for w in workload_set.workloads for v in w.models()})
    problem = build_problem(workload_set, types, latency_model)
    keep_stateful_on_one_server(problem)
    return problem


def solve(problem: ProvisioningProblem, strategy: str, time_limit_s: float) -> tuple[Assignment, float]:
    start = time.perf_counter()
    assignment = STRATEGIES[strategy].solve(problem, time_limit_s)
    return assignment, time.perf_counter() - start


def run(workloads, perf_model, catalog, strategy: str = "ilp", time_limit_s: float = 10.0,
        latency_model: str = "queueing", loader: Callable[[Path], Any] = load_perf_model, src_repo=None):
    """Inputs -> (problem, assignment, plan dict, solve seconds)."""
    problem = load_problem(workloads, perf_model, catalog, latency_model, loader, src_repo)
    assignment, seconds = solve(problem, strategy, time_limit_s)
    return problem, assignment, build_plan(problem, assignment, strategy), seconds
