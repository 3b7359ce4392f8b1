"""Interference-aware packing as an integer program (pulp + bundled CBC), warm-started from the greedy.

Items are the servers (workload replicas; the replica count comes from the warm start), each with a few
candidate options (batch, share). Slots are GPUs (per type, at most what the warm start's cost allows).

    min   sum_j price_j * y_j  -  accuracy_weight * sum x[i,o,j] * acc_o / replicas_o
    s.t.  sum_{o,j} x[i,o,j] = 1                                   every server placed once
          sum_{i,o} share_o x[i,o,j] <= 100 y_j                    MPS share per GPU
          sum_{i,o} mem_o x[i,o,j]   <= mem_j y_j                  memory per GPU
          P_j = sum pressure_o x[i,o,j],  N_j = sum x[i,o,j]         partner pressure, co-runner count
          a_o (P_j - pressure_o) + sched_o (N_j - 1) <= slack_o + M_io (1 - x[i,o,j])
                 (linearised interference: latency = solo + sum over partners of solo*sensitivity*pressure
                  + sched; slack = what the queueing model allows minus the solo latency)
          y_j >= y_{j+1} within a type; server i only in slots at positions <= i (symmetry breaking)

The result is repaired and compared with the warm start by igniter.provisioning.solve (as for every strategy).
After each solve every GPU is re-checked with the full perf model + queueing model; a violated co-located set
is forbidden by a no-good cut (sum of its x <= size-1, in every slot of that type) and the ILP re-solved
(bounded). When the greedy warm start already meets the lower bound nothing is searched. Up to SMALL_SERVERS
servers the whole instance is one ILP; above, the greedy solution is improved by re-packing the servers of the
WINDOW least-loaded GPUs into one GPU fewer (skipped when their smallest solo shares cannot fit; the greedy's
insertion first, then a local ILP of at most WINDOW_ILP_S), until the time limit or MAX_FAILED_WINDOWS windows
in a row did not shrink. The lower bound (bounds.py: the relaxed set-cover LP by column generation, at least the
interference-free share bound) is computed first, in TIME_SHARE of the limit, and holds for the whole candidate
set; the status is "optimal" only when the plan's cost meets it (a solver's "optimal" covers only the options its
ILP was given: "feasible"). A solver failure (solvers.SolverFailed) keeps the best plan found so far: "fallback".
"""

from __future__ import annotations

import math
import time
import warnings

import pulp

# PuLP 3.x deprecates LpVariable()/PULP_CBC_CMD in favour of 4.0 APIs; the bundled CBC is what we want.
warnings.filterwarnings("ignore", message=r".*PuLP 4\.0.*", category=DeprecationWarning)

from igniter.provisioning import bounds, greedy_igniter, patterns
from igniter.provisioning.candidates import Option, ProvisioningProblem
from igniter.provisioning.solvers import SolverFailed
from igniter.provisioning.solvers import solve as run_solver
from igniter.provisioning.strategy import EPS, Assignment, Gpu, Server, cost, memory_limit, violations

NAME = "ilp"
SMALL_SERVERS = 40
BATCH_KEYS_PER_TYPE = 2        # (model, batch) configurations per type and server
SHARE_LEVELS = 3               # lowest shares per configuration
CUT_ROUNDS = 5
WINDOW = 5
WINDOW_ILP_S = 0.3             # CBC time per window: proving a window cannot shrink is what is slow
MAX_FAILED_WINDOWS = 3         # consecutive windows that did not shrink before giving up
THREADS = 2
CG_SHARE = 0.75               # of the time left after the enumeration, for column generation (exact pricing)
ENUMERATION_S = 2.0          # enumerate every packing for at most this long, then generate columns


def solve(problem: ProvisioningProblem, time_limit_s: float = 10.0, warm: list[Gpu] | None = None) -> Assignment:
    """``warm``: a feasible start (igniter.provisioning.solve gives the repaired greedy); without one the greedy's
    unrepaired packing is used as the start."""
    start = time.monotonic()
    warm = [g for g in (warm if warm is not None else greedy_igniter.solve(problem).gpus) if g.servers]
    bound, details = bounds.best_bound(problem, cost(problem, warm), start + bounds.TIME_SHARE * time_limit_s,
                                       warm)
    if cost(problem, warm) <= bound + EPS:   # the greedy already meets a valid bound: nothing to search
        return Assignment(warm, bound, "optimal", {"mode": "greedy meets the bound", **details})
    try:
        gpus, status, found_bound, more = _search(problem, warm, start + time_limit_s)
    except SolverFailed as e:   # a crashed solver: the warm start is the best plan found so far
        gpus, status, found_bound, more = warm, "fallback", -math.inf, {"mode": "fallback", "solver_error": str(e)}
    details.update(more)
    gpus = [g for g in gpus if g.servers]
    bound = max(bound, found_bound)
    if status != "fallback" and cost(problem, gpus) <= bound + EPS:
        status = "optimal"
    elif status == "optimal":   # the solver's optimum over the options it was given, not a proven one
        status = "feasible"
    return Assignment(gpus, bound, status, details)


def _search(problem: ProvisioningProblem, warm: list[Gpu], deadline: float):
    """The exact path, the whole-instance ILP or the windows, by size: (gpus, status, bound, details)."""
    exact = _solve_patterns(problem, warm, deadline)
    if exact is not None:
        return exact
    if sum(len(g.servers) for g in warm) <= SMALL_SERVERS:
        gpus, status, rounds = _solve_whole(problem, warm, deadline - time.monotonic())
        return gpus, status, -math.inf, {"mode": "whole", "cut_rounds": rounds}
    gpus, status, tries, error = _improve_by_windows(problem, warm, deadline)
    return gpus, status, -math.inf, {"mode": "windows", "windows_tried": tries, **error}


def _solve_patterns(problem: ProvisioningProblem, warm: list[Gpu], deadline: float):
    """Exact path (patterns.py) when the instance is small enough; None to use the heuristic paths.
    Every packing is enumerated when there are few; otherwise columns are generated (LP bound exact)."""
    if len(problem.workloads) > patterns.MAX_WORKLOADS:
        return None
    kinds = patterns.kinds_of(problem)
    try:
        packings = patterns.enumerate_packings(problem, kinds, time.monotonic() + ENUMERATION_S)
        lp_value, mode = None, "patterns (all packings)"
    except patterns.TooLarge:
        # most of the time left: when exact pricing does not converge the whole-instance ILP still gets the rest
        cg_deadline = time.monotonic() + CG_SHARE * (deadline - time.monotonic())
        packings, lp_value = patterns.generate_packings(problem, kinds, _seeds(kinds, warm), cg_deadline)
        mode = "patterns (column generation)"
        if lp_value is None:
            return None
    gpus, value, ilp_lp, proven = patterns.solve_master(problem, kinds, packings,
                                                        max(deadline - time.monotonic(), 1.0))
    if gpus is None:
        return None
    details = {"mode": mode, "packings": len(packings), "kinds": len(kinds)}
    if lp_value is None:   # all packings: the integer master itself is exact
        return gpus, "optimal" if proven else "feasible", value if proven else _rounded_bound(problem, ilp_lp), details
    bound = _rounded_bound(problem, lp_value)
    return gpus, "optimal" if value <= bound + EPS else "feasible", bound, details


def _seeds(kinds, warm: list[Gpu]) -> list[tuple[int, ...]]:
    """The warm start's GPUs as kind sets (initial columns)."""
    index = {(k.workload, k.type_index, k.options[0].model, k.replicas): i for i, k in enumerate(kinds)}
    seeds = []
    for g in warm:
        members = tuple(index.get((s.workload, g.type_index, s.option.model, s.option.replicas)) for s in g.servers)
        if None not in members and len({kinds[m].workload for m in members}) == len(members):
            seeds.append(members)
    return seeds


def _rounded_bound(problem: ProvisioningProblem, lp_value: float) -> float:
    """With one GPU price and no accuracy reward the cost is a multiple of the price: round the LP bound up."""
    prices = {t.price_per_hour for t in problem.types}
    if len(prices) == 1 and problem.accuracy_weight == 0 and min(prices) > 0:
        price = prices.pop()
        return math.ceil(round(lp_value / price, 6)) * price
    return lp_value


def _solve_whole(problem, warm: list[Gpu], time_left: float):
    items = sorted([s for g in warm for s in g.servers], key=lambda s: (-s.option.share, s.workload, s.replica))
    slots = _slots(problem, warm)
    cuts: list[tuple[int, list[tuple[int, Option]]]] = []
    status, gpus, rounds = "heuristic", warm, 0
    deadline = time.monotonic() + max(time_left, 0.5)
    for rounds in range(1, CUT_ROUNDS + 1):
        found, st = pack_ilp(problem, items, slots, warm, cuts, max(deadline - time.monotonic(), 0.2))
        if found is None:
            break
        bad = {gi for gi, _, _ in violations(problem, found)}
        if not bad:
            return found, st, rounds
        for gi in bad:
            cuts.append((found[gi].type_index, [(items.index(_item(items, s)), s.option) for s in found[gi].servers]))
        if time.monotonic() > deadline:
            break
    return gpus, status, rounds


def _item(items: list[Server], s: Server) -> Server:
    return next(i for i in items if i.workload == s.workload and i.replica == s.replica)


def _slots(problem, warm: list[Gpu]) -> list[int]:
    """Slot types: per type at most max_count and at most what the warm start's cost could buy."""
    budget = cost(problem, warm) + problem.accuracy_weight * len(problem.workloads) + EPS
    slots = []
    for ti, t in enumerate(problem.types):
        n = min(t.max_count or 10**9, math.floor(budget / t.price_per_hour + EPS) if t.price_per_hour > 0 else 10**9,
                sum(len(g.servers) for g in warm))
        slots += [ti] * n
    return slots


def item_options(problem: ProvisioningProblem, server: Server) -> list[Option]:
    """The options an ILP item may take: its current one plus the cheapest few per type (same replica count)."""
    chosen = [server.option]
    for ti in range(len(problem.types)):
        same = [o for o in problem.options[server.workload] if o.type_index == ti and o.replicas == server.option.replicas]
        keys = []
        for o in same:
            if (o.model, o.batch) not in keys:
                keys.append((o.model, o.batch))
        for key in keys[:BATCH_KEYS_PER_TYPE]:
            chosen += sorted((o for o in same if (o.model, o.batch) == key), key=lambda o: o.share)[:SHARE_LEVELS]
    unique = []
    for o in chosen:
        if all((o.type_index, o.model, o.batch, o.share) != (u.type_index, u.model, u.batch, u.share) for u in unique):
            unique.append(o)
    return unique


def pack_ilp(problem: ProvisioningProblem, items: list[Server], slots: list[int], warm: list[Gpu] | None,
             cuts: list, time_limit_s: float):
    """Solve the packing ILP of `items` into `slots` (type index per slot). Returns (gpus, status) or (None, why)."""
    opts = [item_options(problem, s) for s in items]
    prob = pulp.LpProblem("igniter_provision", pulp.LpMinimize)
    position = [sum(1 for k in slots[:j] if k == slots[j]) for j in range(len(slots))]
    y = [pulp.LpVariable(f"y_{j}", cat="Binary") for j in range(len(slots))]
    x = {}
    for i, options in enumerate(opts):
        for oi, o in enumerate(options):
            for j, ti in enumerate(slots):
                if ti == o.type_index and position[j] <= i:
                    x[i, oi, j] = pulp.LpVariable(f"x_{i}_{oi}_{j}", cat="Binary")
    reward = problem.accuracy_weight * pulp.lpSum(v * opts[i][oi].accuracy / opts[i][oi].replicas
                                                  for (i, oi, j), v in x.items())
    prob += pulp.lpSum(problem.types[ti].price_per_hour * y[j] for j, ti in enumerate(slots)) - reward
    by_slot: dict[int, list] = {j: [] for j in range(len(slots))}
    for (i, oi, j), v in x.items():
        by_slot[j].append((i, oi, v))
    for i in range(len(items)):
        prob += pulp.lpSum(v for (ii, _, _), v in x.items() if ii == i) == 1, f"place_{i}"
    max_press = sum(max(o.pressure for o in options) for options in opts)
    for j, ti in enumerate(slots):
        terms = by_slot[j]
        prob += pulp.lpSum(opts[i][oi].share * v for i, oi, v in terms) <= 100 * y[j], f"share_{j}"
        limit = memory_limit(problem, ti)
        if math.isfinite(limit):
            prob += pulp.lpSum(opts[i][oi].memory_mb * v for i, oi, v in terms) <= limit * y[j], f"mem_{j}"
        if j + 1 < len(slots) and slots[j + 1] == ti:
            prob += y[j] >= y[j + 1], f"order_{j}"
        for i, oi, v in terms:
            prob += v <= y[j]
        _latency_rows(prob, j, terms, opts, max_press, len(items))
    for n, (ti, members) in enumerate(cuts):
        for j, tj in enumerate(slots):
            if tj == ti:
                vs = [x.get((i, _index(opts[i], o), j)) for i, o in members]
                if all(v is not None for v in vs):
                    prob += pulp.lpSum(vs) <= len(vs) - 1, f"cut_{n}_{j}"
    if warm:
        _warm_start(items, opts, slots, position, warm, x, y)
    run_solver(prob, max(0.1, round(time_limit_s, 2)), THREADS, bool(warm))   # SolverFailed: ilp.solve's fallback
    if pulp.LpStatus[prob.status] != "Optimal" and prob.sol_status not in (1, 2):
        return None, pulp.LpStatus[prob.status]
    gpus = [Gpu(ti) for ti in slots]
    for (i, oi, j), v in x.items():
        if (v.value() or 0) > 0.5:
            gpus[j].servers.append(Server(items[i].workload, items[i].replica, opts[i][oi]))
    if sum(len(g.servers) for g in gpus) != len(items):
        return None, "incomplete"
    return [g for g in gpus if g.servers], "optimal" if prob.sol_status == 1 else "feasible"


def _latency_rows(prob, j: int, terms, opts, max_press: float, n_items: int) -> None:
    """Interference rows of slot j through two auxiliary sums, so each row has four terms."""
    if len(terms) < 2:
        return
    P = pulp.LpVariable(f"P_{j}", lowBound=0)
    N = pulp.LpVariable(f"N_{j}", lowBound=0)
    prob += P == pulp.lpSum(opts[i][oi].pressure * v for i, oi, v in terms), f"press_{j}"
    prob += N == pulp.lpSum(v for _, _, v in terms), f"count_{j}"
    for i, oi, v in terms:
        o = opts[i][oi]
        a = o.solo_latency_ms * o.sensitivity
        rhs = o.slack_ms + a * o.pressure + o.sched_ms
        big_m = a * max_press + o.sched_ms * n_items - rhs
        if big_m > 0:
            prob += a * P + o.sched_ms * N <= rhs + big_m * (1 - v), f"lat_{j}_{v.name}"


def _index(options: list[Option], o: Option) -> int:
    return next(k for k, u in enumerate(options) if (u.type_index, u.model, u.batch, u.share) ==
                (o.type_index, o.model, o.batch, o.share))


def _warm_start(items, opts, slots, position, warm: list[Gpu], x, y) -> None:
    """Greedy solution as CBC's initial point, GPUs relabelled so the symmetry rules hold."""
    index = {(s.workload, s.replica): i for i, s in enumerate(items)}
    free = {ti: [j for j, t in enumerate(slots) if t == ti] for ti in set(slots)}
    for v in x.values():
        v.setInitialValue(0)
    for v in y:
        v.setInitialValue(0)
    ordered = sorted((g for g in warm if g.servers), key=lambda g: min(index[(s.workload, s.replica)] for s in g.servers))
    for g in ordered:
        if not free.get(g.type_index):
            return
        j = free[g.type_index].pop(0)
        y[j].setInitialValue(1)
        for s in g.servers:
            i = index[(s.workload, s.replica)]
            var = x.get((i, _index(opts[i], s.option), j))
            if var is not None:
                var.setInitialValue(1)


def _improve_by_windows(problem, warm: list[Gpu], deadline: float):
    """Greedy + local ILP: re-pack the servers of the least-loaded GPUs of a type into one GPU fewer."""
    gpus = [Gpu(g.type_index, list(g.servers)) for g in warm]
    tries, failures, failed = 0, 0, set()
    while time.monotonic() < deadline - 0.3:
        window = _next_window(gpus, failed)
        if window is None:
            break
        tries += 1
        items = sorted([s for gi in window for s in gpus[gi].servers],
                       key=lambda s: (-s.option.share, s.workload, s.replica))
        slots = [gpus[window[0]].type_index] * (len(window) - 1)
        try:
            found = _repack(problem, items, slots, deadline)
        except SolverFailed as e:   # keep what the windows already gained: the best plan found so far
            return gpus, "fallback", tries, {"solver_error": str(e)}
        if found is None:
            failed.add(tuple(sorted(_key(gpus[gi]) for gi in window)))
            failures += 1
            if failures >= MAX_FAILED_WINDOWS:
                break
            continue
        failures = 0
        gpus = [g for gi, g in enumerate(gpus) if gi not in window] + found
    return gpus, "heuristic", tries, {}


def _repack(problem, items: list[Server], slots: list[int], deadline: float) -> list[Gpu] | None:
    """The window's servers in len(slots) GPUs, or None: skipped when even their smallest solo shares overfill
    the slots (interference only adds), then the greedy's own insertion, then the ILP (time-boxed)."""
    if sum(min(o.share for o in item_options(problem, s)) for s in items) > 100 * len(slots) + EPS:
        return None
    found = greedy_igniter.pack(problem, items)
    if len(found) > len(slots) or violations(problem, found):
        found, _ = pack_ilp(problem, items, slots, None, [], min(WINDOW_ILP_S, deadline - time.monotonic()))
    return None if found is None or violations(problem, found) else found


def _key(g: Gpu):
    return tuple(sorted((s.workload, s.replica) for s in g.servers))


def _next_window(gpus: list[Gpu], failed: set):
    by_load = sorted(range(len(gpus)), key=lambda gi: (gpus[gi].share(), gi))
    for ti in sorted({g.type_index for g in gpus}):
        ids = [gi for gi in by_load if gpus[gi].type_index == ti]
        for start in range(0, max(len(ids) - 1, 0)):
            window = ids[start:start + WINDOW]
            if len(window) < 2 or sum(gpus[gi].share() for gi in window) > 100 * (len(window) - 1) + EPS:
                continue
            if tuple(sorted(_key(gpus[gi]) for gi in window)) not in failed:
                return window
    return None
