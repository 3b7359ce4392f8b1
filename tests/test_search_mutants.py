"""The provisioning search (igniter/provisioning/ilp.py, patterns.py, bounds.py, __init__.py) on instances small enough
to work out by hand on tests/simple_perf_model.py (latency = base x 100 / share ms; pressure 0: no interference).
Written to kill the sampled mutants of those modules (docs/mutation/provisioning.md)."""

from __future__ import annotations

import math
import time

import pytest

from igniter import provisioning
from igniter.provisioning import bounds, ilp
from igniter.provisioning.candidates import build_problem
from igniter.provisioning.solvers import SolverFailed
from igniter.provisioning.strategy import Assignment, Gpu, Server
from igniter.provisioning.workloads import Workload, WorkloadSet, default_catalog
from tests.simple_perf_model import Model, SimplePerfModel


def quarter_problem(n: int, slo: float = 10.0):
    """n workloads of base 1 ms at 1 req/s on 4-core hosts: 4 ms at 25 % (one core) meets the SLO, no interference:
    four fit one host."""
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 0.0)}, cores=4)
    ws = WorkloadSet(tuple(Workload(f"w{i}", "m", 1.0, slo) for i in range(n)))
    return build_problem(ws, default_catalog(pm))


def one_each(problem, share: float = 25.0):
    """Every workload alone on its own host at `share`."""
    out = []
    for wi in range(len(problem.workloads)):
        option = next(o for o in problem.options[wi] if o.share == share and o.replicas == 1)
        out.append(Gpu(0, [Server(wi, 0, option)]))
    return out


def test_a_window_packs_three_lone_quarter_servers_onto_one_host():
    # three hosts at 25 % each: the window of the three least loaded (75 % <= 200 %) re-packs them into one
    problem = quarter_problem(3)
    gpus, status, tries, error = ilp._improve_by_windows(problem, one_each(problem), time.monotonic() + 60)
    assert ([sorted(s.workload for s in g.servers) for g in gpus], status, tries, error) == (
        [[0, 1, 2]], "heuristic", 1, {})


def test_a_solver_failure_in_a_window_keeps_what_the_windows_gained(monkeypatch):
    problem = quarter_problem(3)
    warm = one_each(problem)

    def crash(*args):
        raise SolverFailed("cbc died")

    monkeypatch.setattr(ilp, "_repack", crash)
    gpus, status, tries, error = ilp._improve_by_windows(problem, warm, time.monotonic() + 60)
    assert ([g.servers for g in gpus], status, tries, error) == (
        [g.servers for g in warm], "fallback", 1, {"solver_error": "cbc died"})


def test_repack_skips_a_window_whose_solo_shares_overfill_it(monkeypatch):
    # SLOs 1.5 ms and 3 ms: the least shares meeting them are 75 % (1.33 ms) and 50 % (2 ms), 125 % > one host:
    # refused before any packing is tried
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 0.0)}, cores=4)
    problem = build_problem(WorkloadSet((Workload("w0", "m", 1.0, 1.5), Workload("w1", "m", 1.0, 3.0))),
                            default_catalog(pm))
    items = [Server(wi, 0, problem.options[wi][0]) for wi in (0, 1)]
    assert [s.option.share for s in items] == [75.0, 50.0]
    monkeypatch.setattr(ilp.greedy_igniter, "pack", lambda *a: pytest.fail("packed a window that cannot fit"))
    assert ilp._repack(problem, items, [0], time.monotonic() + 60) is None
    # on 100 cores (1 % steps) SLOs 1.98 ms and 2.02 ms need 51 % (1.96 ms) and 50 % (2 ms): 101 % is an overfill too
    wide = SimplePerfModel({"m": Model(1.0, 0.0, 0.0)}, cores=100)
    problem = build_problem(WorkloadSet((Workload("w0", "m", 1.0, 1.98), Workload("w1", "m", 1.0, 2.02))),
                            default_catalog(wide))
    items = [Server(wi, 0, problem.options[wi][0]) for wi in (0, 1)]
    assert [s.option.share for s in items] == [51.0, 50.0]
    assert ilp._repack(problem, items, [0], time.monotonic() + 60) is None


def test_bounded_keeps_a_bound_the_strategy_computed(monkeypatch):
    problem = quarter_problem(2)
    found = Assignment(one_each(problem), 1.5, "optimal", {"bound": 1.5})
    monkeypatch.setattr(bounds, "best_bound", lambda *a: pytest.fail("bounded again"))
    assert provisioning.bounded(problem, found, 10.0) is found and found.details == {"bound": 1.5}


def test_bounded_bounds_a_feasible_plan_up_to_its_cost_with_its_gpus_as_seeds(monkeypatch):
    problem = quarter_problem(2)
    plan = one_each(problem)                       # 2 hosts, feasible
    calls = []
    monkeypatch.setattr(bounds, "best_bound", lambda p, target, deadline, seeds: calls.append((target, seeds)) or (
        0.5, {"bound": 0.5}))
    found = provisioning.bounded(problem, Assignment(plan, 1.0, "feasible", {}), 10.0)
    assert calls == [(2.0, plan)] and found.lower_bound == 1.0 and found.details == {"bound": 0.5}
    # a plan that misses an SLO proves nothing: the instance is bounded without a target or seeds
    over = [Gpu(0, [s for g in one_each(problem, 75.0) for s in g.servers])]          # 150 % on one host
    calls.clear()
    found = provisioning.bounded(problem, Assignment(over, 0.0, "heuristic", {}), 10.0)
    assert calls == [(math.inf, [])] and found.lower_bound == 0.5


# -- capacity.py -----------------------------------------------------------------------------------------------

def test_trace_columns_must_name_the_workloads_exactly():
    import numpy as np

    from igniter.errors import UserError
    from igniter.provisioning.capacity import _check_columns
    from igniter.provisioning.traces import Trace

    def columns(*names):
        return Trace(np.zeros(1), names, np.zeros((1, len(names))), "t.csv")

    _check_columns(columns("b", "a"), ["a", "b"])                                   # any order
    with pytest.raises(UserError) as err:
        _check_columns(columns("a", "bee"), ["a", "be"])
    assert str(err.value) == ("trace column 'bee' is not a workload of the workloads file (did you mean 'be'?) "
                              "(t.csv). To fix: name each rate column after a workload, or use one `scale` column")
    with pytest.raises(UserError) as err:
        _check_columns(columns("zzz"), ["a"])
    assert str(err.value) == ("trace column 'zzz' is not a workload of the workloads file (t.csv). To fix: name each "
                              "rate column after a workload, or use one `scale` column")
    with pytest.raises(UserError) as err:
        _check_columns(columns("a"), ["a", "b", "c"])
    assert str(err.value) == ("the trace has no column for workload 'b' (t.csv). To fix: give every workload a rate "
                              "column, or use one `scale` column")


def test_rates_text_names_three_workloads_then_dots():
    from igniter.provisioning.capacity import _rates_text

    ws = [Workload(f"w{i}", "m", rate, 10.0) for i, rate in enumerate([1.0, 2.5, 123456.0, 4.0])]
    assert _rates_text(ws[:3]) == "rates w0=1, w1=2.5, w2=1.235e+05 req/s"
    assert _rates_text(ws) == "rates w0=1, w1=2.5, w2=1.235e+05, ... req/s"


# -- ilp.py: slots, the packing ILP, cut rounds, the column-generation path ------------------------------------

def test_slots_count_what_the_warm_starts_cost_and_accuracy_reward_could_buy():
    # accuracy_weight 1, accuracy 1 each: the warm start's objective is 2 hosts - 2 = 0; the budget adds back the
    # most reward any plan gets (1 per workload): 2, so two slots at price 1
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 0.0)}, cores=4)
    problem = build_problem(WorkloadSet((Workload("w0", "m", 1.0, 10.0), Workload("w1", "m", 1.0, 10.0)), 1.0),
                            default_catalog(pm))
    assert ilp._slots(problem, one_each(problem)) == [0, 0]
    plain = quarter_problem(3)
    assert ilp._slots(plain, one_each(plain)) == [0, 0, 0]                    # 3 hosts' cost, 3 servers


def test_the_packing_ilp_places_each_server_whole():
    # 10 cores (10 % steps), SLO 3 ms: base 1 ms needs 40 % (2.5 ms; 30 % gives 3.33 ms). Three need 120 %: they do
    # not fit one host, though 5/6 of each would
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 0.0)}, cores=10)
    problem = build_problem(WorkloadSet(tuple(Workload(f"w{i}", "m", 1.0, 3.0) for i in range(3))), default_catalog(pm))
    items = [Server(wi, 0, problem.options[wi][0]) for wi in range(3)]
    assert [s.option.share for s in items] == [40.0] * 3
    found, status = ilp.pack_ilp(problem, items, [0], None, [], 10.0)
    assert (found, status) == (None, "Infeasible")
    found, status = ilp.pack_ilp(problem, items, [0, 0], None, [], 10.0)
    assert sorted(len(g.servers) for g in found) == [1, 2] and status == "optimal"


def test_whole_instance_ilp_cuts_a_set_the_full_model_rejects():
    # pressure 1, sensitivity 1 at 50 % each: linearised 2 ms x (1 + 0.5) = 3 ms <= SLO 3.5 ms, so the ILP puts both
    # on one host; the full model (curvature 4) says 2 x (1 + 0.5 + 4 x 0.25) = 5 ms: cut, and the second round
    # keeps them apart
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 1.0, 1.0)}, cores=4, curvature=4.0)
    problem = build_problem(WorkloadSet(tuple(Workload(f"w{i}", "m", 1.0, 3.5) for i in range(2))), default_catalog(pm))
    warm = one_each(problem, share=50.0)
    gpus, status, rounds = ilp._solve_whole(problem, warm, 20.0)
    assert (sorted(len(g.servers) for g in gpus), rounds) == ([1, 1], 2)
    assert provisioning.violations(problem, gpus) == []


def test_column_generation_proves_one_host_when_enumeration_is_cut_short(monkeypatch):
    # no time to enumerate packings: columns are generated; three quarter servers fit one host, LP bound 1
    monkeypatch.setattr(ilp, "ENUMERATION_S", 0.0)
    problem = quarter_problem(3)
    gpus, status, bound, details = ilp._solve_patterns(problem, one_each(problem), time.monotonic() + 60)
    assert ([sorted(s.workload for s in g.servers) for g in gpus], status, bound, details["mode"]) == (
        [[0, 1, 2]], "optimal", 1.0, "patterns (column generation)")


def test_the_packing_ilp_keeps_each_host_within_its_share_and_memory():
    # 100 cores: 51 % + 50 % (SLOs 1.98 ms and 2.02 ms) is 101 %: two hosts, not one
    wide = SimplePerfModel({"m": Model(1.0, 0.0, 0.0)}, cores=100)
    problem = build_problem(WorkloadSet((Workload("w0", "m", 1.0, 1.98), Workload("w1", "m", 1.0, 2.02))),
                            default_catalog(wide))
    items = [Server(wi, 0, problem.options[wi][0]) for wi in (0, 1)]
    assert ilp.pack_ilp(problem, items, [0], None, [], 10.0) == (None, "Infeasible")
    # 600 MB servers on a 1000 MB host at 25 % each: the shares fit one host, the memory does not
    heavy = SimplePerfModel({"m": Model(1.0, 0.0, 0.0, memory_mb=600.0)}, cores=4, memory_mb=1000.0)
    problem = build_problem(WorkloadSet(tuple(Workload(f"w{i}", "m", 1.0, 10.0) for i in range(2))),
                            default_catalog(heavy))
    items = [Server(wi, 0, problem.options[wi][0]) for wi in (0, 1)]
    assert [s.option.share for s in items] == [25.0, 25.0]
    assert ilp.pack_ilp(problem, items, [0], None, [], 10.0) == (None, "Infeasible")


def test_capacity_progress_bar_counts_plans_and_a_type_that_cannot_carry_the_load_is_an_error_row():
    import numpy as np

    from igniter.provisioning.capacity import Settings, _bar, plan_capacity
    from igniter.provisioning.traces import Trace
    from igniter.provisioning.workloads import GpuType

    with _bar(3, True) as bar:
        assert (bar.desc, bar.unit, bar.total) == ("plans", "plan", 3)
        assert bar.bar_format == "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"
    with _bar(2.5, True, "ilp refinement", "s") as bar:
        assert (bar.desc, bar.unit) == ("ilp refinement", "s")
        assert bar.bar_format == "{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]"
    # two workloads needing 75 % each (SLO 1.5 ms, base 1 ms: 1.33 ms) take two hosts; type B has max_count 1
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 0.0)}, cores=4)
    ws = WorkloadSet((Workload("w0", "m", 1.0, 1.5), Workload("w1", "m", 1.0, 1.5)))
    types = [GpuType("A", 1.0, None, pm), GpuType("B", 1.0, 1, pm)]
    trace = Trace(np.array([0.0]), ("scale",), np.array([[1.0]]), "t.csv")
    result = plan_capacity(ws, types, trace, Settings(step_s=60.0, headroom=0.05), [1.0])
    rows = {(r["option"], r.get("name")): r for r in result.gpu_types}
    assert rows[("B", None)] == {"option": "B", "error": (
        "at rates w0=1, w1=1 req/s: the 2 workloads need 2 GPUs of type 'B', but its max_count is 1")}
    assert rows[("A", "static-peak")]["gpu_hours"] == round(2 * 1 / 3600, 4)     # a lone sample holds for 1 s


def test_the_exact_path_enumerates_every_packing_when_there_are_few():
    problem = quarter_problem(3)
    gpus, status, bound, details = ilp._solve_patterns(problem, one_each(problem), time.monotonic() + 60)
    assert ([sorted(s.workload for s in g.servers) for g in gpus], status, bound, details["mode"]) == (
        [[0, 1, 2]], "optimal", 1.0, "patterns (all packings)")


def test_no_perf_model_and_no_catalog_is_one_line(tmp_path):
    from igniter.errors import UserError

    with pytest.raises(UserError) as err:
        provisioning.load_inputs(tmp_path / "w.yaml", None, None)
    assert str(err.value) == "no performance model given. To fix: pass --perf-model MODEL_FILE (or --gpus CATALOG.yaml)"


def test_negative_interference_terms_leave_the_share_bound():
    # a negative sensitivity (interference that speeds a server up) breaks the relaxation's monotonicity
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 1.0, -0.1)}, cores=4)
    problem = build_problem(WorkloadSet(tuple(Workload(f"w{i}", "m", 1.0, 10.0) for i in range(2))),
                            default_catalog(pm))
    assert bounds.best_bound(problem, 1e9, time.monotonic() + 30) == (
        problem.share_lower_bound(), {"bound": "share (strong bound not computed: negative interference terms)"})


def test_with_share_rereads_every_term_at_the_new_share():
    # scheduling delay that depends on the share (2 ms x 100 / share): at 25 % 8 ms, at 50 % 4 ms
    class ShareSched(SimplePerfModel):
        def linear_terms(self, model, batch, share):
            t = super().linear_terms(model, batch, share)
            return t._replace(sched_ms=2.0 * 100.0 / share)

    pm = ShareSched({"m": Model(1.0, 0.0, 1.0, 0.5)}, cores=4)
    problem = build_problem(WorkloadSet((Workload("w0", "m", 1.0, 100.0),)), default_catalog(pm))
    option = next(o for o in problem.options[0] if o.share == 25.0)
    moved = problem.with_share(option, 1)                                  # the grid: 25, 50, 75, 100
    assert (moved.share, moved.solo_latency_ms, moved.sensitivity, moved.pressure, moved.sched_ms) == (
        50.0, 2.0, 0.5, 0.5, 4.0)
    assert (option.sched_ms, option.solo_latency_ms) == (8.0, 4.0)


def test_finish_falls_back_to_a_cheaper_warm_start_and_says_why():
    problem = quarter_problem(2)
    apart = one_each(problem)                                              # 2 hosts
    together = [Gpu(0, [s for g in one_each(problem) for s in g.servers])]  # 1 host, 50 %
    found = provisioning.finish(problem, Assignment(apart, 0.5, "optimal", {}), Assignment(together, 1.0, "optimal"))
    assert ([len(g.servers) for g in found.gpus], found.lower_bound, found.status, found.details) == (
        [2], 1.0, "heuristic", {"repairs": 0, "fallback": "warm start (the strategy's plan was worse or missed an SLO)"})


def test_share_bound_in_whole_gpus_at_their_price():
    # three quarter servers at price 2 per host: 3 x 0.5 = 1.5 of GPU price, 0.75 of one GPU -> one GPU, 2.0
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 0.0)}, cores=4)
    from igniter.provisioning.workloads import GpuType

    problem = build_problem(WorkloadSet(tuple(Workload(f"w{i}", "m", 1.0, 10.0) for i in range(3))),
                            [GpuType("g", 2.0, None, pm)])
    assert problem.share_lower_bound() == 2.0


def test_the_strong_bound_writes_nothing_on_stdout(capfd):
    # HiGHS logs to file descriptor 1 unless told not to: --json output must stay one JSON document
    problem = quarter_problem(5)
    found = bounds.lower_bound(problem, time.monotonic() + 30)
    assert found is not None and found.rounds >= 2 and found.value == 2.0
    assert capfd.readouterr().out == ""
