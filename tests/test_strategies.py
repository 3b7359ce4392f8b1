"""The strategy registry: repair, the full-model re-check and "never worse than the warm start" around any strategy."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402

from igniter import provisioning  # noqa: E402
from igniter.errors import UserError  # noqa: E402
from igniter.provisioning import STRATEGIES, StrategyEntry, ffd, solve  # noqa: E402
from igniter.provisioning.candidates import build_problem, min_share_options  # noqa: E402
from igniter.provisioning.strategy import Assignment, Gpu, cost, servers_of, violations  # noqa: E402
from igniter.provisioning.workloads import Workload, WorkloadSet, default_catalog  # noqa: E402

SPECS = [("vgg19", 100, 60), ("ssd", 60, 90), ("resnet50", 150, 50), ("alexnet", 300, 30)]


@pytest.fixture
def problem():
    ws = WorkloadSet(tuple(Workload(f"w{i}", m, r, slo) for i, (m, r, slo) in enumerate(SPECS)))
    return build_problem(ws, default_catalog(FakePerfModel()))


def _servers(problem):
    return servers_of(problem, [min_share_options(problem, wi)[0] for wi in range(len(problem.workloads))])


def _register(monkeypatch, name, place, **kwargs):
    strategy = SimpleNamespace(NAME=name, solve=lambda p, t, warm: Assignment(place(p), 0.0, "heuristic"))
    monkeypatch.setitem(STRATEGIES, name, StrategyEntry(strategy, "test strategy", **kwargs))


def _placed(a: Assignment):
    return sorted((s.workload, s.replica) for g in a.gpus for s in g.servers)


def test_any_strategy_is_repaired(monkeypatch, problem):
    """Every server on one GPU overfills it and misses SLOs; the shared finish repairs that."""
    _register(monkeypatch, "crammed", lambda p: [Gpu(0, _servers(p))])
    crammed = Gpu(0, _servers(problem))
    assert violations(problem, [crammed]), "the test's starting point must miss"
    found, _ = solve(problem, "crammed", 5)
    assert not violations(problem, found.gpus)
    assert all(g.share() <= 100 + 1e-6 for g in found.gpus)
    assert _placed(found) == sorted((s.workload, s.replica) for s in crammed.servers)
    assert found.details["repairs"] > 0


def test_never_worse_than_the_warm_start(monkeypatch, problem):
    """A strategy that puts every server on a GPU of its own costs more than the greedy: the warm start wins."""
    _register(monkeypatch, "spread", lambda p: [Gpu(0, [s]) for s in _servers(p)], warm_start=True)
    greedy, _ = solve(problem, "igniter", 5)
    found, _ = solve(problem, "spread", 5)
    assert len(_servers(problem)) > len(greedy.gpus), "the test needs a spread worse than the greedy"
    assert cost(problem, found.gpus) == pytest.approx(cost(problem, greedy.gpus))
    assert "fallback" in found.details and found.status == "heuristic"


def test_the_baseline_is_kept_as_packed(problem):
    found, _ = solve(problem, "ffd", 5)
    raw = ffd.solve(problem)
    assert [[(s.workload, s.replica, s.option) for s in g.servers] for g in found.gpus] == \
           [[(s.workload, s.replica, s.option) for s in g.servers] for g in raw.gpus]


def test_unknown_strategy_is_a_user_error(problem):
    with pytest.raises(UserError, match="use one of ffd, igniter, ilp"):
        provisioning.solve(problem, "simplex", 1)


def test_a_crashing_solver_falls_back_to_the_warm_start(monkeypatch, problem):
    import pulp

    calls = []

    def crash(self, solver=None, **kwargs):
        calls.append(self.name)
        raise pulp.PulpSolverError("cbc exited with a signal")

    greedy, _ = solve(problem, "igniter", 5)
    monkeypatch.setattr(pulp.LpProblem, "solve", crash)
    monkeypatch.setattr("igniter.provisioning.patterns.MAX_WORKLOADS", 0)   # past the exact path, to the packing ILP
    found, _ = solve(problem, "ilp", 5)
    assert calls, "the packing ILP was tried"
    assert not violations(problem, found.gpus)
    assert cost(problem, found.gpus) == pytest.approx(cost(problem, greedy.gpus))
