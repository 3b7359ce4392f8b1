"""The strong lower bound (provisioning/bounds.py), honest plan totals and the solver-failure fallback, on the
analytical fake perf model. Oracles: brute force over every partition of the servers and every option choice
(the linearised model decides, as for the packers), and a brute-force knapsack for the bound's pricing DP."""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import pulp
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402
from provision_oracle import partitions  # noqa: E402

from igniter.cli import provision as provision_cli  # noqa: E402
from igniter.provisioning import bounds, ffd, greedy_igniter, ilp  # noqa: E402
from igniter.provisioning import bounded  # noqa: E402
from igniter.provisioning import solve as provision_solve  # noqa: E402
from igniter.provisioning.candidates import build_problem  # noqa: E402
from igniter.provisioning.plan import build_plan  # noqa: E402
from igniter.provisioning.strategy import cost, fits_linear  # noqa: E402
from igniter.provisioning.workloads import (GpuType, Variant, Workload, WorkloadSet,  # noqa: E402
                                            default_catalog)

MODELS = ["alexnet", "resnet50", "vgg19", "ssd"]


def problem_of(specs, latency_model="queueing", keep=6):
    ws = WorkloadSet(tuple(Workload(f"w{i}", m, r, slo) for i, (m, r, slo) in enumerate(specs)))
    problem = build_problem(ws, default_catalog(FakePerfModel()), latency_model)
    for opts in problem.options:   # keep the brute force small: the bound sees the same candidates
        del opts[keep:]
    return problem


def brute_force_gpus(problem) -> int:
    """Fewest GPUs over every replica count offered, every partition of the servers into GPUs (one server
    per workload per GPU) and every option choice per server."""
    best = None
    replica_choices = [sorted({o.replicas for o in opts}) for opts in problem.options]
    for counts in itertools.product(*replica_choices):
        servers = [wi for wi, r in enumerate(counts) for _ in range(r)]
        for part in partitions(list(range(len(servers)))):
            if best is not None and len(part) >= best:
                continue

            def fits(group):
                ws = [servers[i] for i in group]
                choices = [[o for o in problem.options[w] if o.replicas == counts[w]] for w in ws]
                return len(set(ws)) == len(ws) and any(fits_linear(problem, 0, list(c))
                                                       for c in itertools.product(*choices))
            if all(fits(g) for g in part):
                best = len(part)
    return best


def brute_force_cost(problem) -> float:
    """Cheapest plan over every kind per workload (GPU type, model variant, replica count), every partition of the
    servers into GPUs of one type each and every option choice: price of the GPUs less the accuracy reward."""
    kinds = [sorted({(o.type_index, o.model, o.replicas) for o in opts}) for opts in problem.options]
    best = float("inf")
    for choice in itertools.product(*kinds):
        servers = [wi for wi, (_, _, r) in enumerate(choice) for _ in range(r)]
        reward = problem.accuracy_weight * sum(next(o.accuracy for o in problem.options[wi] if o.model == m)
                                               for wi, (_, m, _) in enumerate(choice))
        for part in partitions(list(range(len(servers)))):
            price = 0.0
            for group in part:
                ws = [servers[i] for i in group]
                ti = choice[ws[0]][0]
                options = [[o for o in problem.options[w] if (o.type_index, o.model, o.replicas) == choice[w]]
                           for w in ws]
                if (len(set(ws)) < len(ws) or any(choice[w][0] != ti for w in ws)
                        or not any(fits_linear(problem, ti, list(c)) for c in itertools.product(*options))):
                    break
                price += problem.types[ti].price_per_hour
            else:
                best = min(best, price - reward)
    return best


def test_strong_bound_valid_with_two_gpu_types_and_variants():
    """Two GPU types (the faster dearer) and a workload with a cheaper variant under an accuracy weight."""
    fast = FakePerfModel(name="fast", speed=1.6)
    types = default_catalog(FakePerfModel()) + [GpuType("fast", 1.5, None, fast, 16384.0)]
    ws = WorkloadSet((Workload("a", "ssd", 60, 80, 0.8, variants=(Variant("alexnet", 0.6),)),
                      Workload("b", "vgg19", 90, 70), Workload("c", "resnet50", 150, 45)), accuracy_weight=0.5)
    problem = build_problem(ws, types, "queueing")
    for opts in problem.options:
        del opts[5:]
    found = bounds.lower_bound(problem, deadline=float("inf"))
    assert found.converged and found.value <= brute_force_cost(problem) + 1e-9


# (specs, latency model): small random instances (seeded) plus one where the share bound is 3 and the optimum 5
CASES = [([("ssd", 225, 58), ("vgg19", 217, 94), ("ssd", 201, 36), ("resnet50", 295, 79)], "queueing")]
_rng = random.Random(7)
for _ in range(6):
    CASES.append(([(_rng.choice(MODELS), round(_rng.uniform(20, 300)), round(_rng.uniform(30, 120)))
                   for _ in range(_rng.choice([3, 4]))], _rng.choice(["queueing", "half-slo"])))


@pytest.mark.parametrize("merged", [False, True])
@pytest.mark.parametrize("specs,latency_model", CASES)
def test_strong_bound_never_above_brute_force_optimum(specs, latency_model, merged, monkeypatch):
    """Also with the kinds merged into few classes and every size above 2 priced at size 2's needs (the
    coarser relaxation large instances get)."""
    try:
        problem = problem_of(specs, latency_model)
    except Exception as e:   # a random workload no GPU can serve: nothing to bound
        pytest.skip(f"infeasible instance: {e}")
    if merged:
        monkeypatch.setattr(bounds, "MAX_CLASSES", 2)
        monkeypatch.setattr(bounds, "MAX_SIZE", 2)
    found = bounds.lower_bound(problem, deadline=float("inf"))
    optimum = brute_force_gpus(problem) * problem.types[0].price_per_hour
    assert found.value <= optimum + 1e-9


def test_strong_bound_beats_the_share_bound_where_interference_costs_gpus():
    """Interference costs this set two GPUs over its solo shares (brute force: 5); the relaxation, which prices
    partner pressure and scheduling delay, is above the interference-free share bound and still below 5."""
    problem = problem_of(CASES[0][0])
    assert brute_force_gpus(problem) == 5
    assert problem.share_lower_bound() < bounds.lower_bound(problem, deadline=float("inf")).value <= 5


def relaxed_packing_maximum(tab, pi) -> float:
    """The relaxed pricing problem by enumeration, from its definition (bounds.py's docstring): a slice is a pair
    of levels (lo, hi) and a size n (n = N: N or more members); a packing is a leader class (lead table), and for
    n >= 2 a least class (allowed at level lo) and n - 2 (N: at least N - 2) plain members, at most |class| of a
    class (need table), all within the GPU's units; its value is the members' duals."""
    classes, P, N = tab.need.shape
    best = 0.0
    for p, (lo, _) in enumerate(tab.pairs):
        for n in range(1, N + 1):
            for leader in range(classes):
                if n == 1:
                    if tab.lead[leader, p, 0] <= tab.units:
                        best = max(best, pi[leader])
                    continue
                for least in range(classes):
                    if not tab.least[least, lo]:
                        continue
                    room = tab.units - tab.lead[leader, p, n - 1] - tab.need[least, p, n - 1]
                    for counts in itertools.product(*[range(len(m) + 1) for m in tab.classes]):
                        plain = sum(counts)
                        if (plain == n - 2 or (n == N and plain > n - 2)) and \
                                sum(q * tab.need[c, p, n - 1] for c, q in enumerate(counts)) <= room:
                            best = max(best, pi[leader] + pi[least] + float(np.dot(counts, pi)))
    return best


def is_relaxed_packing(tab, col: dict[int, int]) -> bool:
    """Is the multiset of classes a packing of some slice (the definition above)?"""
    N = tab.need.shape[2]
    total = sum(col.values())
    n = min(total, N)
    for p, (lo, _) in enumerate(tab.pairs):
        for leader in [c for c in col if col[c]]:
            rest = dict(col)
            rest[leader] -= 1
            leasts = [c for c in rest if rest[c] and tab.least[c, lo]] if total > 1 else [None]
            for least in leasts:
                plain = dict(rest)
                if least is not None:
                    plain[least] -= 1
                units = tab.lead[leader, p, n - 1] + (tab.need[least, p, n - 1] if least is not None else 0)
                units += sum(q * tab.need[c, p, n - 1] for c, q in plain.items())
                if units <= tab.units and all(q <= len(tab.classes[c]) for c, q in plain.items()):
                    return True
    return False


@pytest.mark.parametrize("seed", range(6))
def test_pricing_dp_is_the_exact_maximum_of_the_relaxed_packings(seed):
    """_price's value = the best relaxed packing by enumeration (random tables: needs grow with the size, some
    members fit nowhere), and every column it returns is a relaxed packing worth more than the GPU's price."""
    rng = np.random.default_rng(seed)
    n_classes, levels, sizes, units = 4, 2, 3, 12
    pairs = np.array([(lo, hi) for lo in range(levels) for hi in range(lo, levels)])
    need = np.sort(rng.integers(1, 5, size=(n_classes, len(pairs), sizes)), axis=2)
    lead = np.sort(rng.integers(1, 5, size=(n_classes, len(pairs), sizes)), axis=2)
    need[rng.random(need.shape) < 0.15] = bounds.NO_FIT
    lead[rng.random(lead.shape) < 0.15] = bounds.NO_FIT
    least = rng.random((n_classes, levels)) < 0.6
    tab = bounds.TypeTables(0, 1.0, units, np.arange(levels, dtype=float), pairs, need, lead, least,
                            [list(range(int(rng.integers(1, 3)))) for _ in range(n_classes)])
    pi = rng.random(n_classes)
    value, columns = bounds._price(tab, pi)
    assert value == pytest.approx(relaxed_packing_maximum(tab, pi), abs=1e-12)
    for col in columns:
        assert sum(q * pi[c] for c, q in col.items()) > 1.0
        assert is_relaxed_packing(tab, col), col
    assert columns or value <= 1.0 + 1e-9
    if columns:   # the best slice's packing first: it attains the maximum
        assert sum(q * pi[c] for c, q in columns[0].items()) == pytest.approx(value, abs=1e-12)


def test_plan_gap_is_against_the_strong_bound():
    problem = problem_of(CASES[0][0])
    assignment = bounded(problem, provision_solve(problem, "igniter", 30.0)[0], 30.0)   # as igniter provision does
    totals = build_plan(problem, assignment, "igniter").totals
    strong = bounds.lower_bound(problem, deadline=float("inf")).value
    assert totals.lower_bound == strong > problem.share_lower_bound()
    assert totals.gap == pytest.approx((totals.cost - strong) / totals.cost, abs=1e-4)


def test_plan_with_slo_misses_says_infeasible_and_has_no_gap():
    problem = problem_of([("vgg19", 100, 60), ("vgg19", 80, 70), ("ssd", 60, 90), ("resnet50", 200, 40),
                          ("alexnet", 300, 30), ("ssd", 90, 80)])
    plan = build_plan(problem, ffd.solve(problem), "ffd")
    missed = sorted(s.name for _, s in plan.servers()
                    if s.predicted_p99_ms is None or s.predicted_p99_ms > s.slo_ms)
    assert missed, "the interference-blind packing should miss an SLO on this set"
    assert plan.totals.status == "infeasible" and plan.totals.gap is None
    assert sorted(m.server for m in plan.totals.misses if m.server) == missed
    good = build_plan(problem, greedy_igniter.solve(problem), "igniter")
    assert good.totals.misses == [] and good.totals.status != "infeasible"
    assert all(s.predicted_p99_ms <= s.slo_ms for _, s in good.servers())


@pytest.fixture
def dying_cbc(tmp_path, monkeypatch):
    """CBC replaced by an executable that exits 1 (what a crashed or killed cbc looks like to pulp), and a
    private temporary directory to see what a failed run leaves behind."""
    cbc = tmp_path / "cbc"
    cbc.write_text("#!/bin/sh\nexit 1\n")
    cbc.chmod(0o755)
    monkeypatch.setattr(pulp.PULP_CBC_CMD, "pulp_cbc_path", str(cbc))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


# the greedy's 4 GPUs are above the bound (3), so ilp runs CBC
SOLVER_SPECS = [("vgg19", 266, 96), ("ssd", 282, 92), ("ssd", 143, 105), ("alexnet", 165, 76), ("vgg19", 188, 73)]


def test_solver_failure_falls_back_to_the_best_plan_and_cleans_up(dying_cbc):
    problem = problem_of(SOLVER_SPECS)
    greedy_cost = cost(problem, greedy_igniter.solve(problem).gpus)
    ilp.ENUMERATION_S, saved = 0.0, ilp.ENUMERATION_S   # skip the enumeration: go through CBC at once
    try:
        assignment = ilp.solve(problem, 5.0)
    finally:
        ilp.ENUMERATION_S = saved
    assert assignment.status == "fallback" and "solver_error" in assignment.details
    assert cost(problem, assignment.gpus) <= greedy_cost
    assert build_plan(problem, assignment, "ilp").totals.status == "fallback"
    assert list(dying_cbc.iterdir()) == []


def test_cli_reports_fallback_after_solver_failure(dying_cbc, tmp_path, monkeypatch):
    wl = tmp_path / "w.yaml"
    wl.write_text("workloads:\n" + "".join(f"  - {{name: w{i}, model: {m}, rate: {r}, slo_ms: {s}}}\n"
                                           for i, (m, r, s) in enumerate(SOLVER_SPECS)))
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: FakePerfModel()))
    monkeypatch.setattr(ilp, "ENUMERATION_S", 0.0)
    out = tmp_path / "plan"
    result = CliRunner().invoke(provision_cli.provision, ["--workloads", str(wl), "--perf-model", "x.json",
                                                          "--out", str(out), "--time-limit", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "fallback"
    assert json.loads((out / "plan.json").read_text())["totals"]["status"] == "fallback"
    assert "solver_error" in json.loads((out / "solve.json").read_text())["details"]
    assert list(dying_cbc.iterdir()) == []
    assert not any(p.suffix in (".mps", ".mst") for p in Path(os.environ["TMPDIR"]).rglob("*"))


@pytest.mark.parametrize("seed", range(3))
def test_exact_pricing_finds_the_best_packing_of_the_enumeration(seed):
    """patterns._search (exact: no node cap), pruned by the completion bound, returns the packing of largest
    dual sum whenever one beats the GPU price, against the same maximum over every enumerated packing."""
    from igniter.provisioning import patterns
    problem = problem_of(SOLVER_SPECS)
    kinds = patterns.kinds_of(problem)
    packings = patterns.enumerate_packings(problem, kinds, deadline=float("inf"))
    oracle = patterns.Oracle(problem, kinds)
    rng = np.random.default_rng(seed)
    duals = list(rng.uniform(0.0, 0.7, len(kinds)))
    best = max(sum(duals[m] for m in p.kinds) for p in packings)
    found = patterns._search(problem, kinds, duals, lambda ms: oracle.solve(tuple(sorted(ms))), float("inf"), None,
                             patterns._Completion(problem, kinds))
    if best > 1.0 + 1e-7:   # the best first, then other packings of negative reduced cost
        assert sum(duals[m] for m in found[0].kinds) == pytest.approx(best, abs=1e-9)
        assert all(sum(duals[m] for m in p.kinds) > 1.0 for p in found)
    else:
        assert found == []


@pytest.fixture(scope="module")
def v100_types(tmp_path_factory):
    """The catalog of the perf model fitted on iGniter's V100 profiles (../shared), as BENCHMARKS.md uses."""
    from conftest import shared_data

    from igniter.model import PerfModel
    from igniter.profiling.importers import import_profiles
    out = tmp_path_factory.mktemp("v100")
    import_profiles("igniter", shared_data("igniter-v100"), out / "profiles")
    PerfModel.fit(out / "profiles").save(out / "v100.model.json")
    return default_catalog(PerfModel.load(out / "v100.model.json"))


def test_strong_bound_proves_six_gpus_for_the_papers_twelve_workloads_under_half_slo(v100_types):
    """iGniter's 12-workload set under its own half-SLO rule: iGniter's published greedy uses 6 V100s and the
    exact path (column generation over the real packings, then the integer master; BENCHMARKS.md) proved 6
    optimal in 15-36 s. The relaxed LP alone is above 5 GPUs, so the bound is 6 and the plan is proven
    without any MILP (the generous limit keeps this independent of the machine's load)."""
    from igniter.provisioning.workloads import known_models, load_workloads
    ws = load_workloads(Path(__file__).resolve().parents[1] / "examples" / "workloads-12.yaml",
                        known_models(v100_types))
    problem = build_problem(ws, v100_types, "half-slo")
    strong = bounds.lower_bound(problem, deadline=float("inf"))
    # the column generation may stop before its LP optimum once its rounded bound cannot rise any more
    assert problem.share_lower_bound() == 5 and strong.value == 6 and 5 < strong.lp_value <= 6
    assignment, _ = provision_solve(problem, "ilp", 60.0)
    assert len(assignment.gpus) == 6 and assignment.status == "optimal"
    assert assignment.details["mode"] == "greedy meets the bound"


def test_a_bound_stopped_before_any_lp_is_still_valid_and_strict_json():
    """A deadline already past: one pricing round at the share duals, no LP solved; the Farley bound of that
    round is still below the brute-force optimum, and the details (provision --json's `bound`) are strict JSON."""
    problem = problem_of(CASES[0][0])
    found = bounds.lower_bound(problem, deadline=0.0)
    assert found.rounds == 1 and not found.converged
    assert found.value <= brute_force_gpus(problem) * problem.types[0].price_per_hour + 1e-9
    details = json.loads(json.dumps(found.as_details(), allow_nan=False))
    assert details["bound_lp"] is None and details["bound_converged"] is False


@pytest.mark.parametrize("merged", [False, True])
@pytest.mark.parametrize("specs", [CASES[0][0], SOLVER_SPECS, [("alexnet", 60, 90), ("alexnet", 40, 120),
                                                                ("resnet50", 50, 110), ("alexnet", 90, 100)]])
def test_enumerated_small_packings_hold_every_real_packing_of_their_size(specs, merged, monkeypatch):
    """The sizes the bound prices by enumeration (bounds.SMALL_SIZES) are a relaxation: every packing the exact
    oracle accepts (patterns.enumerate_packings: every feasible set of kinds, least-fixpoint shares) of such a
    size is among the class tuples, also with the kinds merged into 2 classes; and those sizes are left out of
    the DP (no slice of theirs can take a leader)."""
    from igniter.provisioning import patterns
    if merged:
        monkeypatch.setattr(bounds, "MAX_CLASSES", 2)
    problem = problem_of(specs)
    kinds = patterns.kinds_of(problem)
    real = patterns.enumerate_packings(problem, kinds, deadline=float("inf"))
    tab = bounds._tables(problem, kinds, list(range(len(kinds))), 0, bounds.MAX_CLASSES)
    class_of = {k: c for c, members in enumerate(tab.classes) for k in members}
    assert tab.small, "the instance should have sizes priced by enumeration"
    for n, tuples in tab.small.items():
        allowed = {tuple(t) for t in tuples.tolist()}
        of_size = [p for p in real if len(p.kinds) == n]
        assert all(tuple(sorted(class_of[k] for k in p.kinds)) in allowed for p in of_size)
        assert (tab.lead[:, :, n - 1] == bounds.NO_FIT).all()
    assert len(allowed) >= 1


@pytest.mark.parametrize("n", [2, 3])
def test_class_tuples_are_the_multisets_a_packing_can_hold(n):
    """Against itertools: every non-decreasing tuple, a class at most as often as it has workloads."""
    workloads = np.array([1, 3, 2, 1, 2])
    expected = [t for t in itertools.combinations_with_replacement(range(len(workloads)), n)
                if all(t.count(c) <= workloads[c] for c in set(t))]
    assert [tuple(t) for t in bounds._class_tuples(len(workloads), n, workloads).tolist()] == expected
