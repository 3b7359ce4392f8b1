"""Tests written to kill mutants of igniter/provisioning's output side (plan.py's misses and refusals, summary.py,
check.py, solvers.py) that survived sampled mutation testing (docs/mutation/provisioning.md). Every expected value
is worked out by hand from the test's own numbers (tests/simple_perf_model.py: latency = base x 100 / share ms).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import pulp
import pytest

from igniter.errors import UserError
from igniter.provisioning import check, solvers
from igniter.provisioning import plan as plan_module
from igniter.provisioning.candidates import ProvisioningProblem, build_problem
from igniter.provisioning.plan import (GpuPlan, Miss, Plan, ServerPlan, Totals, _misses, build_plan,
                                       check_replaceable, write_plan)
from igniter.provisioning.strategy import Assignment, Gpu, Server
from igniter.provisioning.summary import summary, worst_p99
from igniter.provisioning.workloads import Workload, WorkloadSet, default_catalog
from tests.simple_perf_model import Model, SimplePerfModel


def problem_for(pm, workloads, accuracy_weight: float = 0.0):
    """workloads: [(model, req/s, SLO ms, accuracy)], named w0, w1, ..."""
    ws = WorkloadSet(tuple(Workload(f"w{i}", m, rate, slo, acc) for i, (m, rate, slo, acc) in enumerate(workloads)),
                     accuracy_weight)
    return build_problem(ws, default_catalog(pm))


def at_share(problem, wi: int, share: float):
    option = problem.options[wi][0]
    return problem.with_share(option, list(problem.row(option)["shares"]).index(share))


# -- plan.py: _misses ----------------------------------------------------------------------------------------

def test_misses_at_and_over_each_limit_hand_worked():
    # a 1000 MB host; the misses are read from the predictions given (no perf model involved)
    pm = SimplePerfModel({"m": Model(1.0, 0.0, memory_mb=500.0)}, cores=4, memory_mb=1000.0)
    problem = problem_for(pm, [("m", 1.0, 10.0, 1.0)] * 3)
    base = problem.options[0][0]

    def server(wi, share, memory):
        return Server(wi, 0, replace(base, workload=wi, share=share, memory_mb=memory))

    exact = Gpu(0, [server(0, 50.0, 500.0), server(1, 50.0, 500.0)])      # exactly 100 % and 1000 MB
    over = Gpu(0, [server(0, 50.0, 500.0), server(2, 50.5, 500.5)])       # 100.5 % and 1000.5 MB
    preds = [[{"p99_ms": 10.0}, {"p99_ms": 9.0}],                        # at the SLO, under it
             [{"p99_ms": 10.25}, {"p99_ms": math.inf}]]                  # over it, unbounded
    assert _misses(problem, [exact, over], preds) == [
        Miss(gpu="gpu1", share=100.5), Miss(gpu="gpu1", memory_mb=1000.5),
        Miss(server="gpu1-w0-r0", slo_ms=10.0, predicted_p99_ms=10.25),
        Miss(server="gpu1-w2-r0", slo_ms=10.0, predicted_p99_ms=None)]
    # the replica number is part of the name
    assert _misses(problem, [Gpu(0, [Server(1, 3, base)])], [[{"p99_ms": 11.0}]]) == [
        Miss(server="gpu0-w1-r3", slo_ms=10.0, predicted_p99_ms=11.0)]


# -- plan.py: build_plan ---------------------------------------------------------------------------------------

def test_build_plan_with_an_accuracy_weight_hand_worked():
    # one host at price 1, accuracy_weight 2, the served model's accuracy 0.75: accuracy term 1.5, objective
    # 1 - 1.5 = -0.5 (a negative objective is allowed: it is not a cost); gap 0 (no positive objective)
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0, 0.75)], accuracy_weight=2.0)
    plan = build_plan(problem, Assignment([Gpu(0, [Server(0, 0, at_share(problem, 0, 25.0))])], -1.0, "heuristic"),
                      "igniter")
    t = plan.totals
    assert (t.cost, t.accuracy_term, t.objective, t.lower_bound, t.gap) == (1.0, 1.5, -0.5, -1.0, 0.0)
    assert plan.accuracy_weight == 2.0
    assert plan.gpus[0].servers[0].accuracy == 0.75


def test_build_plan_records_an_unbounded_p99_as_none_and_a_finite_miss_as_its_figure():
    # base 1 ms at 25 % of 4 cores: 4 ms a batch, 250 req/s solo. At 300 req/s the queue grows without bound
    # (p99 None); at 1 req/s the p99 is the 4 ms batch latency, over a 3 ms SLO
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0, 1.0), ("m", 1.0, 3.0, 1.0)])
    option = at_share(problem, 0, 25.0)
    slow = replace(option, workload=1)
    gpus = [Gpu(0, [Server(0, 0, replace(option, rate=300.0))]), Gpu(0, [Server(1, 0, slow)])]
    plan = build_plan(problem, Assignment(gpus, 1.0, "heuristic"), "ffd")
    assert [s.predicted_p99_ms for _, s in plan.servers()] == [None, 4.0]
    assert plan.totals.misses == [Miss(server="gpu0-w0-r0", slo_ms=10.0, predicted_p99_ms=None),
                                  Miss(server="gpu1-w1-r0", slo_ms=3.0, predicted_p99_ms=4.0)]
    assert (plan.totals.status, plan.totals.gap) == ("infeasible", None)


def test_build_plan_of_no_types_says_gpu():
    empty = ProvisioningProblem((), [], 0.0, [], {})
    plan = build_plan(empty, Assignment([], 0.0, "optimal"), "ffd")
    assert (plan.hardware_kind, plan.gpus, plan.totals.gpus, plan.totals.cost) == ("gpu", [], 0, 0.0)


# -- plan.py: check_replaceable ----------------------------------------------------------------------------------

def _a_plan_directory(tmp_path):
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0, 1.0)])
    out = tmp_path / "out"
    write_plan(build_plan(problem, Assignment([Gpu(0, [Server(0, 0, at_share(problem, 0, 25.0))])], 1.0,
                                              "heuristic"), "ffd"), problem, out, None, {})
    return out


def test_a_plan_directory_serving_a_live_deployment_is_refused_naming_the_pids(tmp_path, monkeypatch):
    # the live-server lookup (igniter.triton.server.owned_servers_under, tested against real tritonservers in
    # test_ownership.py) is replaced by a fake that names two pids under this directory
    out = _a_plan_directory(tmp_path)
    seen = []
    monkeypatch.setattr(plan_module, "owned_servers_under", lambda root: seen.append(root) or [4242, 77])
    with pytest.raises(UserError) as err:
        check_replaceable(out)
    assert seen == [out]
    assert str(err.value) == (f"output directory {out} holds a live deployment (tritonserver pid 4242, 77). To fix: "
                              "run `igniter down --state <its state.json>` first, or choose another --out")
    monkeypatch.setattr(plan_module, "owned_servers_under", lambda root: [])
    check_replaceable(out)                                         # nothing live: replaceable


def test_foreign_files_are_named_five_at_most(tmp_path):
    out = _a_plan_directory(tmp_path)
    for name in "fedcba":
        (out / f"{name}.txt").write_text("x")
    with pytest.raises(UserError) as err:
        check_replaceable(out)
    assert str(err.value) == (f"output directory {out} holds files igniter did not write (a.txt, b.txt, c.txt, "
                              "d.txt, e.txt). To fix: move them elsewhere, or choose another --out")


def test_an_igniter_json_file_over_one_mib_counts_as_foreign(tmp_path):
    # only the first MiB of a file beside a plan is read: a larger JSON file cannot be told to be igniter's
    out = _a_plan_directory(tmp_path)
    big = out / "state.json"
    big.write_text(json.dumps({"format": "igniter-state", "pad": "x" * (1536 * 1024)}))
    with pytest.raises(UserError, match=r"holds files igniter did not write \(state\.json\)"):
        check_replaceable(out)
    big.write_text(json.dumps({"format": "igniter-state", "pad": "x" * (1000 * 1024)}))
    check_replaceable(out)


# -- summary.py ------------------------------------------------------------------------------------------------

def _server(name, workload, replica, replicas, share, rate, p99, accuracy=None, model="m", batch=1, slo=20.0):
    return ServerPlan(name=name, workload=workload, replica=replica, replicas=replicas, model=model,
                      accuracy=accuracy, batch=batch, share=share, max_queue_delay_us=0, rate=rate,
                      slo_ms=slo, predicted_latency_ms=1.0, predicted_p99_ms=p99, predicted_throughput_rps=10.0)


def test_summary_splits_each_gpus_price_by_share_hand_worked():
    # GPU "x1" (price 2): a r1 at 50 %, b r0 at 25 % -> a gets 2 x 50/75 = 1.33333, b 0.66667.
    # GPU "x0" (price 1): a r0 alone at 60 % -> 1. a: 2.33333 per hour over x0 and x1, b: 0.66667 on x1.
    # rates 10.00004 + 10.00004 = 20.00008 -> 20.0001 (4 digits); accuracy term 0.3 x 0.77777 = 0.233331 -> 0.2333
    a0 = _server("x0-a-r0", "a", 0, 2, 60.0, 10.00004, 12.0, accuracy=0.77777, model="big", batch=4, slo=30.0)
    a1 = _server("x1-a-r1", "a", 1, 2, 50.0, 10.00004, 15.5, accuracy=0.77777, model="big", batch=2, slo=30.0)
    b0 = _server("x1-b-r0", "b", 0, 1, 25.0, 5.0, None)
    gpus = [GpuPlan(id="x1", type="T", kind="gpu", backend="mps", price_per_hour=2.0, servers=[a1, b0]),
            GpuPlan(id="x0", type="T", kind="gpu", backend="mps", price_per_hour=1.0, servers=[a0])]
    totals = Totals(gpus=2, cost=3.0, accuracy_term=0.2333, objective=2.7667, lower_bound=2.5, gap=0.0964,
                    status="feasible", misses=[Miss(server="x1-b-r0", slo_ms=20.0)])
    plan = Plan(format="igniter-plan", version=3, strategy="ilp", latency_model="queueing", hardware_kind="gpu",
                accuracy_weight=0.3, gpus=gpus, totals=totals)
    assert summary(plan) == {
        "strategy": "ilp", "status": "feasible", "gpus": 2, "cost": 3.0, "accuracy_weight": 0.3,
        "accuracy_term": 0.2333, "objective": 2.7667, "lower_bound": 2.5, "gap": 0.0964,
        "misses": [{"server": "x1-b-r0", "slo_ms": 20.0}],
        "workloads": [
            {"workload": "a", "model": "big", "replicas": 2, "batch": 2, "share": 50.0, "rate": 20.0001,
             "slo_ms": 30.0, "predicted_p99_ms": 15.5, "price_per_hour": 2.3333, "accuracy": 0.77777,
             "accuracy_term": 0.2333, "gpus": ["x0", "x1"], "servers": ["x1-a-r1", "x0-a-r0"]},
            {"workload": "b", "model": "m", "replicas": 1, "batch": 1, "share": 25.0, "rate": 5.0, "slo_ms": 20.0,
             "predicted_p99_ms": None, "price_per_hour": 0.6667, "accuracy": None, "accuracy_term": 0.0,
             "gpus": ["x1"], "servers": ["x1-b-r0"]}]}


def test_worst_p99_is_the_slowest_replica_or_none_when_one_is_unbounded():
    assert worst_p99([3.0, 7.5, 5.0]) == 7.5
    assert worst_p99([3.0, None]) is None
    assert worst_p99([None]) is None


# -- check.py --------------------------------------------------------------------------------------------------

def test_diff_trees_hand_worked(tmp_path):
    actual, expected = tmp_path / "actual", tmp_path / "expected"
    for root in (actual, expected):
        (root / "sub").mkdir(parents=True)
        (root / "same.txt").write_text("one\n")
        (root / "solve.json").write_text(f'{{"seconds": {len(root.name)}}}\n')   # differs, never compared
    (actual / "sub" / "c.txt").write_text("a\nb\nc\n")
    (expected / "sub" / "c.txt").write_text("a\nB\nc")                            # no newline at its end
    (actual / "bin").write_bytes(b"\xff\x00")
    (expected / "bin").write_bytes(b"\xfe\x00")
    (actual / "extra.txt").write_text("x\n")
    (expected / "missing.txt").write_text("y\n")
    assert check.diff_trees(actual, expected) == {
        "bin": "Binary files actual/bin and expected/bin differ\n",
        "extra.txt": f"Only in {actual}: extra.txt (this run does not write it)\n",
        "missing.txt": f"Only in the expected output: missing.txt (missing from {actual})\n",
        "sub/c.txt": ("--- actual/sub/c.txt\n+++ expected/sub/c.txt\n@@ -1,3 +1,3 @@\n a\n-b\n-c\n+B\n+c\n"
                      "\\ No newline at end of file\n")}


def test_diff_trees_of_a_missing_directory_lists_every_expected_file(tmp_path):
    (tmp_path / "expected").mkdir()
    (tmp_path / "expected" / "plan.json").write_text("{}")
    (tmp_path / "expected" / "solve.json").write_text("{}")
    assert check.diff_trees(tmp_path / "nowhere", tmp_path / "expected") == {
        "plan.json": f"Only in the expected output: plan.json (missing from {tmp_path / 'nowhere'})\n"}


def test_check_plan_compares_a_fresh_write_without_touching_out_dir(tmp_path):
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0, 1.0)])
    plan = build_plan(problem, Assignment([Gpu(0, [Server(0, 0, at_share(problem, 0, 25.0))])], 1.0, "heuristic"),
                      "ffd")
    out = tmp_path / "out"
    write_plan(plan, problem, out, None, {"seconds": 1.0})
    assert check.check_plan(plan, problem, out, None, {"seconds": 2.0}) == {}       # solve.json is not compared
    launch = out / "triton_repo" / "gpu0-w0-r0" / "launch.json"
    launch.write_text(launch.read_text().replace('"share": 25.0', '"share": 50.0'))
    before = launch.read_text()
    diffs = check.check_plan(plan, problem, out, None, {})
    assert list(diffs) == ["triton_repo/gpu0-w0-r0/launch.json"]
    assert '-  "share": 50.0,\n+  "share": 25.0,\n' in diffs["triton_repo/gpu0-w0-r0/launch.json"]
    assert launch.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- solvers.py ------------------------------------------------------------------------------------------------

def _tiny_milp():
    # min x + 2y s.t. x + y >= 1.5, x <= 1, x, y integer >= 0: optimum x = 1, y = 1, value 3
    prob = pulp.LpProblem("tiny", pulp.LpMinimize)
    x = pulp.LpVariable("x", 0, 1, cat="Integer")
    y = pulp.LpVariable("y", 0, None, cat="Integer")
    prob += x + 2 * y
    prob += x + y >= 1.5
    return prob, x, y


@pytest.mark.parametrize("backend", ["cbc", "highs", None])
def test_solve_finds_the_hand_worked_optimum_quietly_and_leaves_no_temporary(backend, capfd, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    prob, x, y = _tiny_milp()
    solvers.solve(prob, time_limit_s=5.0, backend=backend)
    assert (x.value(), y.value(), pulp.value(prob.objective)) == (1.0, 1.0, 3.0)
    assert capfd.readouterr().out == ""                               # no solver log on stdout (--json)
    assert list(tmp_path.iterdir()) == []


def test_a_solver_error_is_solver_failed_with_its_first_line(monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    made = []

    def crash(self, solver):
        made.append(solver.tmpDir)
        raise pulp.PulpSolverError("cbc died\nsecond line")

    monkeypatch.setattr(pulp.LpProblem, "solve", crash)
    with pytest.raises(solvers.SolverFailed) as err:
        solvers.solve(_tiny_milp()[0], 1.0)
    assert str(err.value) == "cbc died"
    assert made and made[0].startswith(str(tmp_path / "igniter-solver-"))      # CBC's files go to our directory
    assert list(tmp_path.iterdir()) == []                                     # ... which is removed

    def crash_quietly(self, solver):
        raise pulp.PulpSolverError("")

    monkeypatch.setattr(pulp.LpProblem, "solve", crash_quietly)
    with pytest.raises(solvers.SolverFailed) as err:
        solvers.solve(_tiny_milp()[0])
    assert str(err.value) == "PulpSolverError"


def test_cbc_gets_the_time_limit_threads_and_warm_start(monkeypatch):
    seen = {}
    monkeypatch.setattr(pulp.LpProblem, "solve", lambda self, solver: seen.update(
        limit=solver.timeLimit, options=solver.optionsDict, msg=solver.msg, mip=solver.mip))
    solvers.solve(_tiny_milp()[0], 7.5, threads=3, warm_start=True)
    assert seen == {"limit": 7.5, "options": {"threads": 3, "warmStart": True, "timeMode": "elapsed"}, "msg": False,
                    "mip": True}
    solvers.solve(_tiny_milp()[0])
    assert seen == {"limit": None, "options": {"threads": 2, "warmStart": False, "timeMode": "elapsed"}, "msg": False,
                    "mip": True}


def test_highs_gets_the_time_limit_and_no_log(monkeypatch):
    seen = {}
    monkeypatch.setattr(pulp.LpProblem, "solve", lambda self, solver: seen.update(
        kind=type(solver).__name__, limit=solver.timeLimit, msg=solver.msg, threads=solver.threads))
    solvers.solve(_tiny_milp()[0], 4.0, backend="highs")
    assert seen == {"kind": "HiGHS", "limit": 4.0, "msg": False, "threads": None}


def test_native_stdout_goes_to_stderr_meanwhile_and_comes_back(capfd):
    with solvers.native_stdout_to_stderr():
        os.write(1, b"native banner\n")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert (out, err) == ("after\n", "native banner\n")


def test_a_plan_is_built_in_a_hidden_sibling_of_out_dir_and_swapped_in(tmp_path, monkeypatch):
    # beside OUT_DIR (one filesystem: the rename is atomic), named after it and hidden
    made = []
    real = plan_module.swap_in_directory
    monkeypatch.setattr(plan_module, "swap_in_directory", lambda new, out: made.append(new) or real(new, out))
    out = _a_plan_directory(tmp_path)
    [tmp] = made
    assert tmp.parent == out.parent and tmp.name.startswith(".out.") and not tmp.exists()
