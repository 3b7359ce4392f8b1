"""Tests written to kill the mutants that survived mutation testing of igniter/provisioning (docs/testing.md,
"Mutation testing"). Each case is worked out by hand on tests/simple_perf_model.py, whose latency is
(base * 100 / share) ms, so every expected value below is arithmetic on the test's own numbers.

At 1 req/s a batch-1 server is busy under 1 % of the time (rho = latency / 1000 s), so the queueing model's
wait term is zero and its p99 is exactly the batch latency: the SLOs below are compared with that latency.
"""

from __future__ import annotations

import json
import stat
from dataclasses import replace

import pytest

from igniter.errors import UserError
from igniter.provisioning import ffd, greedy_igniter
from igniter.provisioning.candidates import build_problem
from igniter.ownership import mark
from igniter.provisioning.plan import Miss, build_plan, check_replaceable, gap, read_launch, read_plan, write_plan
from igniter.provisioning.strategy import (Assignment, Gpu, Server, alternatives, enforce_max_count, fits_linear,
                                           has_room, predicted, repair, violations, within_max_count)
from igniter.provisioning.workloads import GpuType, Workload, WorkloadSet, default_catalog
from tests.simple_perf_model import Model, SimplePerfModel


def problem_for(pm, workloads, types=None):
    """workloads: [(model, req/s, SLO ms)], named w0, w1, ..."""
    ws = WorkloadSet(tuple(Workload(f"w{i}", m, rate, slo) for i, (m, rate, slo) in enumerate(workloads)))
    return build_problem(ws, types or default_catalog(pm))


def at_share(problem, wi: int, share: float):
    """Workload wi's (batch-1) option moved to a grid share, whether or not that share meets its SLO."""
    option = problem.options[wi][0]
    shares = list(problem.row(option)["shares"])
    return problem.with_share(option, shares.index(share))


def shares_of(gpus):
    return [[(s.workload, s.option.share) for s in g.servers] for g in gpus]


# -- strategy.py: the full-model re-check --------------------------------------------------------------------

def test_predicted_covers_a_second_gpu_type_when_the_first_is_unused():
    # two host types; only the second is used: 2 ms base at 25 % of 4 cores = 8 ms, 125 req/s, p99 = 8 ms
    pm = SimplePerfModel({"m": Model(2.0, 0.0)}, cores=4)
    types = [GpuType("first", 1.0, None, pm), GpuType("second", 2.0, None, pm)]
    problem = problem_for(pm, [("m", 1.0, 10.0)], types)
    option = next(o for o in problem.options[0] if o.type_index == 1 and o.share == 25.0)
    found = predicted(problem, [Gpu(0, []), Gpu(1, [Server(0, 0, option)])])
    assert found == [[], [pytest.approx({"latency_ms": 8.0, "throughput_rps": 125.0, "p99_ms": 8.0})]]


def test_a_host_filled_exactly_is_no_violation():
    # two 500 MB servers on a 1000 MB host at 50 % each (100 %), each p99 exactly its SLO: 2 ms x 100/50 = 4 ms
    pm = SimplePerfModel({"m": Model(2.0, 0.0, memory_mb=500.0)}, cores=4, memory_mb=1000.0)
    problem = problem_for(pm, [("m", 1.0, 4.0)] * 2)
    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 50.0)), Server(1, 0, at_share(problem, 1, 50.0))])]
    assert predicted(problem, gpus)[0][0]["p99_ms"] == 4.0
    assert violations(problem, gpus) == []


def test_a_one_percent_overrun_is_a_violation_on_a_100_core_host():
    # 100 cores: shares are whole percents, so 101 % is a real overfill (1 ms base: every p99 is far below SLO)
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=100)
    problem = problem_for(pm, [("m", 1.0, 100.0)] * 2)
    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 51.0)), Server(1, 0, at_share(problem, 1, 50.0))])]
    assert violations(problem, gpus) == [(0, -1, pytest.approx(101.0))]


def test_fits_linear_hand_worked():
    # the linearised check the brute-force enumerations of test_provision/test_bounds rely on
    free = SimplePerfModel({"m": Model(1.0, 0.0, 0.0, 0.0, 500.0)}, cores=4, memory_mb=1000.0)
    problem = problem_for(free, [("m", 1.0, 10.0)] * 3)
    assert fits_linear(problem, 0, [at_share(problem, 0, 50.0), at_share(problem, 1, 50.0)])       # 100 %, 1000 MB
    assert not fits_linear(problem, 0, [at_share(problem, 0, 75.0), at_share(problem, 1, 50.0)])   # 125 %
    assert not fits_linear(problem, 0, [at_share(problem, w, 25.0) for w in range(3)])             # 1500 MB
    wide = problem_for(SimplePerfModel({"m": Model(1.0, 0.0)}, cores=100), [("m", 1.0, 10.0)] * 2)
    assert not fits_linear(wide, 0, [at_share(wide, 0, 51.0), at_share(wide, 1, 50.0)])            # 101 %
    # pressure 1, sensitivity 1: at 50 % each takes 2 ms x (1 + 0.5) = 3 ms; it fits SLO 3.5 ms, not 2.5 ms
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 1.0, 1.0)}, cores=4)
    for slo, fits in ((3.5, True), (2.5, False)):
        problem = problem_for(pm, [("m", 1.0, slo)] * 2)
        assert fits_linear(problem, 0, [at_share(problem, 0, 50.0), at_share(problem, 1, 50.0)]) is fits
    # one 3 ms scheduling delay per co-runner: 2 + 3 = 5 ms, exactly the SLO
    sched = SimplePerfModel({"m": Model(1.0, 0.0, sched_ms=3.0)}, cores=4)
    problem = problem_for(sched, [("m", 1.0, 5.0)] * 2)
    assert fits_linear(problem, 0, [at_share(problem, 0, 50.0), at_share(problem, 1, 50.0)])


# -- strategy.py: max_count ----------------------------------------------------------------------------------

def two_types_problem(max_a: int | None, max_b: int | None):
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    types = [GpuType("A", 1.0, max_a, pm), GpuType("B", 1.0, max_b, pm)]
    return problem_for(pm, [("m", 1.0, 40.0)] * 4, types)


def used(problem, type_indices):
    """One GPU per type index, each holding one server (workload k on the k-th GPU)."""
    return [Gpu(ti, [Server(k, 0, next(o for o in problem.options[k] if o.type_index == ti))])
            for k, ti in enumerate(type_indices)]


def test_within_max_count_counts_only_used_gpus_of_each_type():
    problem = two_types_problem(1, 2)
    assert within_max_count(problem, used(problem, [0, 1, 1]) + [Gpu(0, [])])       # A 1 of 1 (one empty), B 2 of 2
    assert not within_max_count(problem, used(problem, [0, 0]))                      # A 2 of 1
    assert not within_max_count(problem, used(problem, [0, 1, 1, 1]))                # B 3 of 2
    assert within_max_count(two_types_problem(None, 1), used(problem, [0, 0, 0, 1]))  # A unbounded


def test_has_room_while_a_type_is_below_its_max_count():
    problem = two_types_problem(1, 2)
    one_each = used(problem, [0, 1])
    assert not has_room(problem, one_each, 0)                    # A: 1 used of 1
    assert has_room(problem, one_each, 1)                        # B: 1 used of 2
    assert has_room(problem, [Gpu(0, []), *used(problem, [1])], 0)   # an empty A does not count
    assert has_room(two_types_problem(None, 2), used(problem, [0, 0, 0]), 0)   # unbounded


def test_enforce_max_count_names_the_type_and_the_figures():
    problem = two_types_problem(1, 2)
    enforce_max_count(problem, used(problem, [0, 1, 1]) + [Gpu(0, [])])             # at the limits: no error
    with pytest.raises(UserError) as err:
        enforce_max_count(problem, used(problem, [1, 0, 1, 1]))
    assert str(err.value) == ("the 4 workloads need 3 GPUs of type 'B', but its max_count is 2 (GPU catalog). "
                              "To fix: raise max_count in the GPU catalog, add another GPU type, or provision "
                              "fewer or lighter workloads")


def test_alternatives_offer_each_other_type_once_at_the_same_replica_count():
    # two batches (1, 2) meet the SLO on each of two types (B costs twice as much): each other type is offered
    # once, at its first (cheapest) configuration with the server's replica count, never its second batch too
    pm = SimplePerfModel({"m": Model(2.0, 0.0)}, cores=4, batches=(1, 2))
    problem = problem_for(pm, [("m", 100.0, 40.0)], [GpuType("A", 1.0, None, pm), GpuType("B", 2.0, None, pm)])
    assert len({(o.type_index, o.batch) for o in problem.options[0]}) == 4
    for ti, other in ((0, 1), (1, 0)):
        for replicas in sorted({o.replicas for o in problem.options[0]}):
            option = min((o for o in problem.options[0] if o.type_index == ti and o.replicas == replicas),
                         key=lambda o: o.share)
            server = Server(0, replicas - 1, option)
            found = list(alternatives(problem, server))
            assert found[0] == server and len(found) == 2
            assert (found[1].workload, found[1].replica) == (0, replicas - 1)
            assert (found[1].option.type_index, found[1].option.replicas) == (other, replicas)
            assert found[1].option.share == min(o.share for o in problem.options[0]
                                                if o.type_index == other and o.replicas == replicas)


# -- strategy.py: repair -------------------------------------------------------------------------------------

def test_repair_widens_a_lone_server_one_step_a_round_for_forty_rounds():
    # 100 cores (1 % steps); base 5 ms meets SLO 10 ms from 50 % up. Started at 1 % (a share the candidates would
    # never give), each round widens it one step: after the 40 rounds it is at 41 %, still missing
    pm = SimplePerfModel({"m": Model(5.0, 0.0)}, cores=100)
    problem = problem_for(pm, [("m", 1.0, 10.0)])
    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 1.0))])]
    assert repair(problem, gpus) == 40
    assert shares_of(gpus) == [[(0, 41.0)]] and gpus[0].servers[0].replica == 0
    [(gi, si, p99)] = violations(problem, gpus)
    assert (gi, si) == (0, 0) and p99 > 500.0 / 41.0 > 10.0            # 12.2 ms batches, and some queueing


def test_repair_cannot_widen_a_lone_server_past_the_whole_host():
    # base 5 ms: 5 ms at 100 % of the host meets SLO 6 ms (the candidates are built for that), then the SLO is
    # tightened to 4 ms: alone and already at the whole host there is nothing to fix, and nothing changes
    pm = SimplePerfModel({"m": Model(5.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 6.0)])
    problem.workloads = (replace(problem.workloads[0], slo_ms=4.0),)
    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 100.0))])]
    assert repair(problem, gpus) == 0
    assert shares_of(gpus) == [[(0, 100.0)]]


def test_repair_moves_a_server_at_the_whole_host_off_a_shared_gpu():
    # a (base 1, sensitivity 4) at 100 % next to b at 25 % (pressure 0.25): 1 x (1 + 4 x 0.25) = 2 ms > SLO 1.5;
    # it cannot widen (already 100 %), so it goes to a host of its own, where it takes 1 ms; b alone takes 4 ms
    pm = SimplePerfModel({"a": Model(1.0, 0.0, 1.0, 4.0), "b": Model(1.0, 0.0, 1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("a", 1.0, 1.5), ("b", 1.0, 10.0)])
    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 100.0)), Server(1, 0, at_share(problem, 1, 25.0))])]
    assert repair(problem, gpus) == 1
    assert shares_of(gpus) == [[(1, 25.0)], [(0, 100.0)]] and not violations(problem, gpus)


def test_repair_does_not_widen_past_100_percent_on_a_100_core_host():
    # 1 % steps. Both at 50 % miss SLO 2.5 ms next to each other (2 ms x (1 + 0.5) = 3 ms). Server 1 first: 51 %
    # would make 101 %, so it goes to a host of its own; server 0, then alone, widens to 51 %: 1.96 ms; 2 ms
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 1.0, 1.0)}, cores=100)
    problem = problem_for(pm, [("m", 1.0, 2.5)] * 2)
    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 50.0)), Server(1, 0, at_share(problem, 1, 50.0))])]
    assert repair(problem, gpus) == 2
    assert shares_of(gpus) == [[(0, 51.0)], [(1, 50.0)]] and not violations(problem, gpus)


def test_repair_relocates_only_in_the_first_half_of_its_rounds():
    # sensitivity 20: any pair misses SLO 4.5 ms; alone 50 % takes 2 ms. relocate (a stub here) puts what it is
    # given back where it came from, so only the rounds after the first half end the misses. rounds = 5 (half: 2):
    # round 0: both widen 25 -> 50 % (room: 100 %), nothing moved, relocate not called;
    # round 1: server 1 cannot widen (125 %): moved, relocated back; server 0, alone then, widens to 75 %;
    # round 2 (second half): server 1 again cannot widen (150 %): a host of its own; server 0 widens to 100 %;
    # round 3: no miss. 6 fixes, relocate called once
    pm = SimplePerfModel({"m": Model(1.0, 0.0, 1.0, 20.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 4.5)] * 2)
    calls = []

    def back_to_origin(problem, gpus, moved):
        calls.append([(gi, s.workload, s.option.share) for gi, s in moved])
        for gi, s in moved:
            gpus[gi].servers.append(s)

    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 25.0)), Server(1, 0, at_share(problem, 1, 25.0))])]
    assert repair(problem, gpus, back_to_origin, rounds=5) == 6
    assert calls == [[(0, 1, 50.0)]]
    assert shares_of(gpus) == [[(0, 100.0)], [(1, 50.0)]] and not violations(problem, gpus)


# -- ffd.py --------------------------------------------------------------------------------------------------

def test_first_fit_keeps_a_one_percent_overfill_off_a_100_core_host():
    # 100 cores, no interference, 1 req/s, SLO 10 ms: base 5.05 ms needs 51 % (50.5), 4.95 ms 50 %, 4.85 ms 49 %:
    # 51 % opens host A; 50 % does not fit beside it (101 %): host B; 49 % fits A exactly (100 %)
    pm = SimplePerfModel({"a": Model(5.05, 0.0), "b": Model(4.95, 0.0), "c": Model(4.85, 0.0)}, cores=100)
    problem = problem_for(pm, [("a", 1.0, 10.0), ("b", 1.0, 10.0), ("c", 1.0, 10.0)])
    assert shares_of(ffd.solve(problem).gpus) == [[(0, 51.0), (2, 49.0)], [(1, 50.0)]]


# -- plan.py -------------------------------------------------------------------------------------------------

def test_plan_gap_is_relative_and_never_clamped():
    assert gap(4.0, 3.0) == 0.25
    assert gap(4.0, 5.0) == -0.25          # an invalid bound shows, it is not hidden
    assert gap(0.5, 0.25) == 0.5           # a cost below 1 is still a cost
    assert gap(0.0, 0.0) == 0.0            # free hosts only: no division by zero


def test_plan_lists_share_and_memory_overruns_and_says_infeasible():
    # no interference, 600 MB servers on a 1000 MB host: 75 % + 50 % = 125 %, 1200 MB; every p99 within SLO
    pm = SimplePerfModel({"m": Model(1.0, 0.0, memory_mb=600.0)}, cores=4, memory_mb=1000.0)
    problem = problem_for(pm, [("m", 1.0, 10.0)] * 2)
    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 75.0)), Server(1, 0, at_share(problem, 1, 50.0))])]
    plan = build_plan(problem, Assignment(gpus, 1.0, "heuristic"), "ffd")
    assert plan.totals.misses == [Miss(gpu="gpu0", share=125.0), Miss(gpu="gpu0", memory_mb=1200.0)]
    assert (plan.totals.status, plan.totals.gap) == ("infeasible", None)


def test_plan_orders_gpus_by_type_name_then_workload_and_rounds_to_four_digits():
    # type "b" is listed first in the catalog, "a" second: the plan lists a's GPU first. Base 1 ms at 75 % of 4
    # cores: 1.3333 ms (4 digits), 750 req/s
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0)] * 3, [GpuType("b", 1.0, None, pm), GpuType("a", 2.0, None, pm)])

    def on(ti, wi, share):
        option = next(o for o in problem.options[wi] if o.type_index == ti and o.replicas == 1)
        return Server(wi, 0, problem.with_share(option, list(problem.row(option)["shares"]).index(share)))

    gpus = [Gpu(0, [on(0, 2, 25.0), on(0, 0, 25.0)]), Gpu(1, [on(1, 1, 75.0)])]
    plan = build_plan(problem, Assignment(gpus, 0.0, "heuristic"), "igniter")
    assert [(g.id, g.type, [s.name for s in g.servers]) for g in plan.gpus] == [
        ("gpu0", "a", ["gpu0-w1-r0"]), ("gpu1", "b", ["gpu1-w0-r0", "gpu1-w2-r0"])]
    fast = plan.gpus[0].servers[0]
    assert (fast.predicted_latency_ms, fast.predicted_throughput_rps) == (1.3333, 750.0)
    assert (plan.totals.cost, plan.totals.objective, plan.totals.gap) == (3.0, 3.0, 1.0)
    assert list(plan.by_workload()) == ["w0", "w1", "w2"]
    assert [s.name for s in plan.by_workload()["w2"]] == ["gpu1-w2-r0"]


# -- greedy_igniter.py ---------------------------------------------------------------------------------------

def test_greedy_puts_a_server_where_the_extra_share_is_smallest_hand_worked():
    # 10 cores (10 % steps), 1 req/s, SLO 10 ms. Solo: a (base 5.5) and b (5.5) need 60 %, c (1.9) 20 %.
    # a 60 % opens GPU0; b 60 % does not fit beside it: GPU1. c: on GPU0 it needs 20 % itself (a presses 0),
    # but its pressure (0.5 x 0.2) slows a (sensitivity 3) to 9.17 x 1.3 = 11.9 ms: a must widen to 80 %
    # (6.875 x 1.3 = 8.9 ms), extra share 20 %. On GPU1 b presses 0.5 x 0.6 = 0.3: c needs 30 % (6.33 x 1.3 =
    # 8.2 ms), b is insensitive: extra 10 %. The smaller extra wins, though GPU0 is tried first (c's own need
    # there is smaller, and first-fit would have put it there, breaking a's SLO)
    pm = SimplePerfModel({"a": Model(5.5, 0.0, 0.0, 3.0), "b": Model(5.5, 0.0, 0.5, 0.0),
                          "c": Model(1.9, 0.0, 0.5, 1.0)}, cores=10)
    problem = problem_for(pm, [("a", 1.0, 10.0), ("b", 1.0, 10.0), ("c", 1.0, 10.0)])
    packed = greedy_igniter.solve(problem)
    assert shares_of(packed.gpus) == [[(0, 60.0)], [(1, 60.0), (2, 30.0)]] and packed.status == "heuristic"
    assert shares_of(ffd.solve(problem).gpus) == [[(0, 60.0), (2, 20.0)], [(1, 60.0)]]


def test_relocate_never_puts_a_server_back_on_the_gpu_it_came_from():
    # no interference: the server would fit its origin (50 %), but repair took it off there
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0)] * 2)
    gpus = [Gpu(0, [Server(0, 0, at_share(problem, 0, 25.0))])]
    greedy_igniter.relocate(problem, gpus, [(0, Server(1, 0, at_share(problem, 1, 25.0)))])
    assert shares_of(gpus) == [[(0, 25.0)], [(1, 25.0)]]


def test_place_on_gpus_with_different_numbers_of_residents():
    # no interference: each group fits as it is; the one-resident group is padded to the three-member one's
    # size, and fills its host exactly (75 + 25 %)
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0)] * 4)
    x, y, z, new = (Server(w, 0, at_share(problem, w, share)) for w, share in enumerate([75.0, 25.0, 25.0, 25.0]))
    placed = greedy_igniter.place(problem, [[x], [y, z]], new)
    assert [[(s.workload, s.option.share) for s in group] for group in placed] == [
        [(0, 75.0), (3, 25.0)], [(1, 25.0), (2, 25.0), (3, 25.0)]]


def test_place_counts_one_scheduling_delay_per_co_runner_and_memory_up_to_the_limit():
    # solo 4 ms at 25 % meets SLO 6 ms, but each co-runner adds 3 ms: 4 + 3 = 7 ms, so both widen to 50 %
    # (2 + 3 = 5 ms); two 500 MB servers fill the 1000 MB host exactly
    pm = SimplePerfModel({"m": Model(1.0, 0.0, memory_mb=500.0, sched_ms=3.0)}, cores=4, memory_mb=1000.0)
    problem = problem_for(pm, [("m", 1.0, 6.0)] * 2)
    resident, new = Server(0, 0, at_share(problem, 0, 25.0)), Server(1, 0, at_share(problem, 1, 25.0))
    [placed] = greedy_igniter.place(problem, [[resident]], new)
    assert [(s.workload, s.option.share) for s in placed] == [(0, 50.0), (1, 50.0)]


def test_greedy_goes_to_another_type_when_its_own_is_at_max_count():
    # three servers of 75 % (no two fit one host); A (cheaper) has max_count 1, B max_count 1: w0 on A, w1 on B,
    # w2 over both limits stays on its own type, A (enforce_max_count then refuses the plan)
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    types = [GpuType("A", 1.0, 1, pm), GpuType("B", 2.0, 1, pm)]
    problem = problem_for(pm, [("m", 1.0, 1.4)] * 3, types)     # 1 ms x 100/75 = 1.33 ms: 75 % needed
    assert {o.share for o in problem.options[0] if o.replicas == 1} == {75.0, 100.0}
    gpus = greedy_igniter.solve(problem).gpus
    assert [(g.type_index, [s.workload for s in g.servers]) for g in gpus] == [(0, [0]), (1, [1]), (0, [2])]


def test_greedy_counts_the_new_gpus_server_in_its_scheduling_estimate():
    # the scheduling case above through the whole greedy: the second server fits beside the first at 50 % each
    pm = SimplePerfModel({"m": Model(1.0, 0.0, memory_mb=500.0, sched_ms=3.0)}, cores=4, memory_mb=1000.0)
    problem = problem_for(pm, [("m", 1.0, 6.0)] * 2)
    assert shares_of(greedy_igniter.solve(problem).gpus) == [[(0, 50.0), (1, 50.0)]]


def test_greedy_keeps_filling_a_gpu_it_placed_on():
    # no interference: four 25 % servers fill one host
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0)] * 4)
    assert shares_of(greedy_igniter.solve(problem).gpus) == [[(0, 25.0), (1, 25.0), (2, 25.0), (3, 25.0)]]


def test_greedy_compares_the_first_four_placements_and_keeps_the_first_of_equals():
    # 10 cores, 1 req/s, SLO 10 ms. The newcomer n (base 1.9: 20 %) presses 0.5 x 0.2 = 0.1. Residents t3, t4,
    # t5 (bases 2.9, 3.9, 4.9 at 30, 40, 50 %: 9.7-9.8 ms) have sensitivity 3: x 1.3 pushes each over 10 ms, so
    # they widen one or two steps (t3 to 40 %: 9.4 ms; t4 to 60 %: 8.5; t5 to 70 %: 9.1): extra 10, 20, 20 %.
    # q (base 5.9 at 60 %) is insensitive: extra 0. n needs 20 % everywhere, so the GPUs are tried emptiest
    # first, q's last: it wins among the four placements compared
    pm = SimplePerfModel({"t3": Model(2.9, 0.0, 0.0, 3.0), "t4": Model(3.9, 0.0, 0.0, 3.0),
                          "t5": Model(4.9, 0.0, 0.0, 3.0), "q": Model(5.9, 0.0), "n": Model(1.9, 0.0, 0.5),
                          "t6": Model(5.9, 0.0, 0.0, 3.0), "q7": Model(6.9, 0.0), "t7": Model(6.9, 0.0, 0.0, 3.0),
                          "q8": Model(7.9, 0.0)}, cores=10)
    names = ("t3", "t4", "t5", "q", "q", "n", "t6", "q7", "t7", "q8")
    problem = problem_for(pm, [(m, 1.0, 10.0) for m in names])
    shares = [30.0, 40.0, 50.0, 60.0, 60.0, 20.0, 60.0, 70.0, 70.0, 80.0]
    s = [Server(w, 0, at_share(problem, w, share)) for w, share in enumerate(shares)]
    newcomer = s[5]
    gpus = greedy_igniter.pack(problem, [newcomer], [Gpu(0, [s[w]]) for w in range(4)])
    assert shares_of(gpus) == [[(0, 30.0)], [(1, 40.0)], [(2, 50.0)], [(3, 60.0), (5, 20.0)]]
    # two equal q hosts: the first of the two takes it
    gpus = greedy_igniter.pack(problem, [newcomer], [Gpu(0, [s[3]]), Gpu(0, [s[4]])])
    assert shares_of(gpus) == [[(3, 60.0), (5, 20.0)], [(4, 60.0)]]
    # t6 (base 5.9 at 60 %) must widen to 80 % (extra 20); a fifth host, q7 at 70 % (extra 0), is not compared:
    # the best of the first four is t3's host, t3 widened to 40 %
    gpus = greedy_igniter.pack(problem, [newcomer], [Gpu(0, [s[w]]) for w in (0, 1, 2, 6, 7)])
    assert shares_of(gpus) == [[(0, 40.0), (5, 20.0)], [(1, 40.0)], [(2, 50.0)], [(6, 60.0)], [(7, 70.0)]]
    # a placement that fails does not end the search: t7 at 70 % would need 90 % beside n (110 %); q8 takes it
    gpus = greedy_igniter.pack(problem, [newcomer], [Gpu(0, [s[8]]), Gpu(0, [s[9]])])
    assert shares_of(gpus) == [[(8, 70.0)], [(9, 80.0), (5, 20.0)]]


def test_place_keeps_each_gpus_pressure_and_limits_to_itself():
    # 4 cores, 1 req/s, SLO 5 ms. hog (75 %) presses 0.75; n (sensitivity 10) next to it takes at least
    # 1 ms x (1 + 7.5) = 8.5 ms even at 100 %: that group fails. Beside the quiet server n meets 4 ms at 25 %:
    # the other group's pressure must not reach it
    pm = SimplePerfModel({"hog": Model(1.0, 0.0, 1.0, 0.0), "quiet": Model(1.0, 0.0), "n": Model(1.0, 0.0, 0.0, 10.0),
                          "big": Model(1.0, 0.0, memory_mb=600.0)}, cores=4, memory_mb=1000.0)
    problem = problem_for(pm, [("hog", 1.0, 5.0), ("quiet", 1.0, 5.0), ("n", 1.0, 5.0), ("big", 1.0, 5.0),
                               ("big", 1.0, 5.0)])
    hog, quiet, n, big, big2 = (Server(w, 0, at_share(problem, w, s)) for w, s in enumerate([75.0, 25.0, 25.0,
                                                                                              25.0, 25.0]))
    placed = greedy_igniter.place(problem, [[hog], [quiet]], n)
    assert placed[0] is None and [(s.workload, s.option.share) for s in placed[1]] == [(1, 25.0), (2, 25.0)]
    # memory: two 600 MB servers overfill the 1000 MB host whatever their shares; the other group still fits
    placed = greedy_igniter.place(problem, [[big], [quiet]], big2)
    assert placed[0] is None and [(s.workload, s.option.share) for s in placed[1]] == [(1, 25.0), (4, 25.0)]


def test_place_with_three_members_counts_two_scheduling_delays():
    # 1 ms per co-runner, SLO 5 ms: at 25 % 4 + 2 x 1 = 6 ms misses, at 50 % 2 + 2 = 4 ms fits but three of
    # them need 150 %: no fit
    pm = SimplePerfModel({"m": Model(1.0, 0.0, sched_ms=1.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 5.0)] * 3)
    a, b, c = (Server(w, 0, at_share(problem, w, 25.0)) for w in range(3))
    assert greedy_igniter.place(problem, [[a, b]], c) == [None]


def test_place_accepts_a_latency_exactly_at_the_slo():
    # 3 ms per co-runner, SLO exactly 5 ms: at 50 % each takes 2 + 3 = 5 ms, so both fit there (100 %)
    pm = SimplePerfModel({"m": Model(1.0, 0.0, sched_ms=3.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 5.0)] * 2)
    resident, new = Server(0, 0, at_share(problem, 0, 25.0)), Server(1, 0, at_share(problem, 1, 25.0))
    [placed] = greedy_igniter.place(problem, [[resident]], new)
    assert [(s.workload, s.option.share) for s in placed] == [(0, 50.0), (1, 50.0)]


def test_place_refuses_101_percent_on_a_100_core_host():
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=100)
    problem = problem_for(pm, [("m", 1.0, 10.0)] * 2)
    assert greedy_igniter.place(problem, [[Server(0, 0, at_share(problem, 0, 51.0))]],
                                Server(1, 0, at_share(problem, 1, 50.0))) == [None]


def test_greedy_never_places_a_server_on_a_gpu_of_another_type():
    # a type-B host with room is not where a server configured for type A goes: it opens an A host
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0)] * 2, [GpuType("A", 1.0, None, pm), GpuType("B", 2.0, None, pm)])
    on_b = next(o for o in problem.options[0] if o.type_index == 1 and o.share == 25.0 and o.replicas == 1)
    on_a = next(o for o in problem.options[1] if o.type_index == 0 and o.share == 25.0 and o.replicas == 1)
    gpus = greedy_igniter.pack(problem, [Server(1, 0, on_a)], [Gpu(1, [Server(0, 0, on_b)])])
    assert [(g.type_index, [s.workload for s in g.servers]) for g in gpus] == [(1, [0]), (0, [1])]


def test_written_plan_files_hand_worked(tmp_path):
    # an 8-core host with servers of 1, 2 and 3 cores: pinned to cores 0 | 1-2 | 3-5 in plan order; the output
    # directory's parents are made; solve.json is indented JSON; the plan directory is rwxr-xr-x
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=8)
    problem = problem_for(pm, [("m", 1.0, 20.0)] * 3)
    gpus = [Gpu(0, [Server(w, 0, at_share(problem, w, share)) for w, share in enumerate([12.5, 25.0, 37.5])])]
    out = tmp_path / "deep" / "er" / "out"
    write_plan(build_plan(problem, Assignment(gpus, 1.0, "heuristic"), "ilp"), problem, out, None, {"b": 1, "a": 2})
    cpus = [json.loads((out / "triton_repo" / name / "launch.json").read_text())["cpus"]
            for name in ("gpu0-w0-r0", "gpu0-w1-r0", "gpu0-w2-r0")]
    assert cpus == [[0], [1, 2], [3, 4, 5]]
    assert (out / "solve.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_read_errors_name_the_file_and_what_it_is(tmp_path):
    plan, launch = tmp_path / "plan.json", tmp_path / "launch.json"
    fix = "To fix: re-run igniter provision (it writes plan.json and the launch specs; they are not edited by hand)"
    plan.write_text('{"format": "igniter-state"}')
    with pytest.raises(UserError) as err:
        read_plan(plan)
    assert str(err.value) == f"{plan} is not an igniter-plan file (format='igniter-state') (plan.json). {fix}"
    plan.write_text('{"format": "igniter-plan", "version": 1}')
    with pytest.raises(UserError) as err:
        read_plan(tmp_path)                                   # the directory holding it
    assert str(err.value) == (f"plan {plan} is version 1; this igniter reads version 3 (and version 2) (plan.json). "
                              f"{fix}")
    launch.write_text('{"format": "igniter-launch", "version": 3}')
    with pytest.raises(UserError) as err:
        read_launch(launch)
    assert str(err.value) == f"launch spec {launch} is version 3; this igniter reads version 2 (launch.json). {fix}"
    launch.write_text("{")
    with pytest.raises(UserError, match=r"^launch spec is not valid JSON: .* \(launch.json\)\. To fix: "):
        read_launch(launch)
    plan.write_text("[")
    with pytest.raises(UserError, match=r"^plan is not valid JSON: .* \(plan.json\)\. To fix: "):
        read_plan(plan)


def test_a_plan_directory_is_replaced_only_with_igniters_own_leftovers(tmp_path):
    # a stopped deployment leaves igniter JSON files and marked directories beside a plan: those may go;
    # anything else (another JSON, a list, a text file, a symlink to an igniter file, an unmarked directory) stays
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0)])
    out = tmp_path / "out"
    write_plan(build_plan(problem, Assignment([Gpu(0, [Server(0, 0, at_share(problem, 0, 25.0))])], 1.0,
                                              "heuristic"), "ffd"), problem, out, None, {})
    (out / "state.json").write_text('{"format": "igniter-state", "version": 2}')
    (out / "logs").mkdir()
    mark(out / "logs", "igniter apply")
    check_replaceable(out)                                      # igniter's leftovers only
    foreign = {"other.json": lambda p: p.write_text('{"format": "mine"}'),
               "list.json": lambda p: p.write_text('["igniter-x"]'),
               "notes.txt": lambda p: p.write_text("igniter-state"),
               "link.json": lambda p: p.symlink_to(out / "state.json"),
               "data": lambda p: p.mkdir()}
    for name, make in foreign.items():
        make(out / name)
        with pytest.raises(UserError, match=rf"holds files igniter did not write \({name}\)"):
            check_replaceable(out)
        (out / name).unlink() if name != "data" else (out / name).rmdir()
    for name in ("b.txt", "a.txt"):
        (out / name).write_text("x")
    with pytest.raises(UserError) as err:
        check_replaceable(out)
    assert str(err.value) == (f"output directory {out} holds files igniter did not write (a.txt, b.txt). "
                              "To fix: move them elsewhere, or choose another --out")


def test_plan_output_errors_are_these_lines(tmp_path):
    fix = "To fix: choose a new --out directory (igniter replaces only a plan directory it wrote)"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError) as err:
        check_replaceable(tmp_path / "file")
    assert str(err.value) == f"output directory {tmp_path / 'file'} exists and is not a directory. {fix}"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    with pytest.raises(UserError) as err:
        check_replaceable(tmp_path / "mine")
    assert str(err.value) == (f"output directory {tmp_path / 'mine'} is not an igniter output (it has no "
                              f".igniter-owned marker). {fix}")
    pm = SimplePerfModel({"m": Model(1.0, 0.0)}, cores=4)
    problem = problem_for(pm, [("m", 1.0, 10.0)])
    plan = build_plan(problem, Assignment([Gpu(0, [Server(0, 0, at_share(problem, 0, 25.0))])], 1.0, "heuristic"),
                      "ffd")
    with pytest.raises(UserError) as err:
        write_plan(plan, problem, tmp_path / "file" / "out", None, {})    # its parent is a file
    assert str(err.value) == (f"cannot write plan directory {tmp_path / 'file' / 'out'}: File exists. To fix: "
                              "choose a writable location with a shorter path")
