"""Exact provisioning of small instances: enumerate every feasible GPU packing, then an integer set cover.

A *kind* is one way to split a workload into servers: (workload, GPU type, model variant, replicas k); each of
its k servers carries rate/k. A *packing* is a set of kinds (at most one server per workload on a GPU) that one
GPU can host: there are batches for its members and shares on the full 2.5 % grid such that every member meets
its SLO (queueing model of queueing.py, interference from the linearised perf model) with shares summing to at
most 100 and memory within the GPU's.

Feasibility oracle. For fixed batches the least share vector is the least fixpoint of "each member takes the
smallest grid share meeting its SLO given the others' current pressure": pressure grows with a member's share
and a member's latency grows with its partners' pressure, so iterating upwards from the solo minimum shares
reaches the least fixpoint (Tarski); the set fits iff that fixpoint fits. All batch tuples are tried at once
(numpy). Packings are closed under subsets, so they are enumerated level by level from feasible parents.

Master (CBC):  min  sum_c price_c x_c - accuracy_weight * sum_k acc_k z_k
               s.t. sum_{k of workload i} z_k = 1                  each workload picks one kind
                    sum_{c containing k} x_c >= replicas_k * z_k      its servers are all placed
                    x_c integer >= 0, z_k binary.
Solved to optimality the master's value is the optimum over this whole candidate space (every replica choice,
batch and share the candidates offer), so it is the lower bound and the gap is 0. Assumptions, stated: the
linearised interference decides feasibility (the full model re-checks the plan afterwards), and batches per
kind are those candidates.py keeps (the MAX_BATCHES needing the least solo share).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import pulp

from igniter.provisioning.candidates import SMALL_WORKLOADS, Option, ProvisioningProblem
from igniter.provisioning.solvers import solve as run_solver
from igniter.provisioning.strategy import EPS, Gpu, Server, memory_limit

MAX_WORKLOADS = SMALL_WORKLOADS   # above this the exact path is not attempted
MAX_PACKINGS = 60000        # enumeration budget (packings), beyond it the instance counts as large
MAX_TUPLES = 200000         # batch tuples evaluated per oracle call
COLUMNS_PER_TYPE = 10      # improving packings a pricing round returns per GPU type (best first)
PRICING_NODES = 300         # nodes of the capped (heuristic) pricing search


@dataclass
class Kind:
    workload: int
    type_index: int
    replicas: int
    accuracy: float
    options: list[Option]          # one per batch, at its smallest solo share (rows come from problem.row)


@dataclass
class Packing:
    type_index: int
    kinds: tuple[int, ...]
    options: tuple[Option, ...]    # the least-share configuration found for each member


class TooLarge(Exception):
    """The enumeration would exceed its budget: use the heuristic path instead."""


def kinds_of(problem: ProvisioningProblem) -> list[Kind]:
    out: dict[tuple, Kind] = {}
    for wi, opts in enumerate(problem.options):
        for o in opts:
            key = (wi, o.type_index, o.model, o.replicas)
            kind = out.setdefault(key, Kind(wi, o.type_index, o.replicas, o.accuracy, []))
            same = [i for i, p in enumerate(kind.options) if p.batch == o.batch]
            if not same:
                kind.options.append(o)
            elif o.share < kind.options[same[0]].share:
                kind.options[same[0]] = o
    kinds = [out[k] for k in sorted(out)]
    problem.prefetch_rows([o for kind in kinds for o in kind.options])
    for kind in kinds:
        kind.options = _undominated(problem, kind.options)
    return kinds


def _undominated(problem: ProvisioningProblem, options: list[Option]) -> list[Option]:
    """Drop batches another batch beats at every share: at least the slack, at most the interference terms
    (own sensitivity x latency, scheduling delay, pressure on others, memory). Whatever the co-runners, the
    dominating batch fits wherever the dominated one does, and presses less on them."""
    if len(options) < 2:
        return list(options)
    rows = [problem.row(o) for o in options]
    field = lambda name: np.stack([r[name] for r in rows])   # noqa: E731 - (options, shares)
    lmax, lat = field("max_latency"), field("latency")
    slack = np.where(lmax > 0, lmax - lat, -np.inf)
    own = lat * field("sensitivity")
    sched, press = field("sched"), field("pressure")
    memory = np.array([o.memory_mb for o in options])
    # beats[a, b]: a beats b (every pair at once; the loops over pairs were most of kinds_of's time)
    beats = ((memory[:, None] <= memory[None, :]) & (slack[:, None] >= slack[None, :] - EPS).all(2)
             & (own[:, None] <= own[None, :] + EPS).all(2) & (sched[:, None] <= sched[None, :] + EPS).all(2)
             & (press[:, None] <= press[None, :] + EPS).all(2))
    first = np.arange(len(options))[:, None] < np.arange(len(options))[None, :]
    dropped = (beats & (~beats.T | first) & ~np.eye(len(options), dtype=bool)).any(0)
    return [o for o, gone in zip(options, dropped) if not gone]


class Oracle:
    """Vectorised least-fixpoint share check of a set of kinds on one GPU type (module docstring)."""

    def __init__(self, problem: ProvisioningProblem, kinds: list[Kind]):
        self.problem, self.kinds = problem, kinds
        self.rows = [[problem.row(o) for o in k.options] for k in kinds]
        self._stacked: dict[tuple[int, str], np.ndarray] = {}

    def solve(self, members: tuple[int, ...]) -> Packing | None:
        ti = self.kinds[members[0]].type_index
        if sum(min(o.share for o in self.kinds[m].options) for m in members) > 100 + EPS:
            return None
        choices = [range(len(self.kinds[m].options)) for m in members]
        count = math.prod(len(c) for c in choices)
        if count > MAX_TUPLES:
            raise TooLarge(f"{count} batch tuples")
        tuples = np.stack(np.meshgrid(*[np.arange(len(c)) for c in choices], indexing="ij"),
                          -1).reshape(-1, len(members))                          # (T, n), product order
        n = len(members)
        lat = np.stack([self._field(m, "latency")[tuples[:, j]] for j, m in enumerate(members)], 1)   # (T, n, S)
        sens = np.stack([self._field(m, "sensitivity")[tuples[:, j]] for j, m in enumerate(members)], 1)
        press = np.stack([self._field(m, "pressure")[tuples[:, j]] for j, m in enumerate(members)], 1)
        sched = np.stack([self._field(m, "sched")[tuples[:, j]] for j, m in enumerate(members)], 1)
        lmax = np.stack([self._field(m, "max_latency")[tuples[:, j]] for j, m in enumerate(members)], 1)
        mem = np.stack([self._memory(m)[tuples[:, j]] for j, m in enumerate(members)], 1).sum(1)
        shares = self.rows[members[0]][0]["shares"]
        idx = np.zeros(tuples.shape, dtype=int)
        alive = mem <= memory_limit(self.problem, ti) + EPS
        partners_sched = sched * (n - 1)
        for _ in range(4 * len(shares)):
            own = np.take_along_axis(press, idx[:, :, None], 2)[:, :, 0]
            partner = own.sum(1, keepdims=True) - own
            ok = (lat * (1 + sens * partner[:, :, None]) + partners_sched <= lmax + EPS) & (lmax > 0)
            ok &= np.arange(len(shares))[None, None, :] >= idx[:, :, None]           # shares only grow
            found = ok.any(2)
            alive &= found.all(1)
            new = np.where(found, ok.argmax(2), idx)
            alive &= shares[new].sum(1) <= 100 + EPS
            if not alive.any():
                return None
            if (new[alive] == idx[alive]).all():
                break
            idx = new
        total = np.where(alive, shares[idx].sum(1), np.inf)
        best = int(np.argmin(total))
        if not np.isfinite(total[best]):
            return None
        options = tuple(self.problem.with_share(self.kinds[m].options[tuples[best, j]], int(idx[best, j]))
                        for j, m in enumerate(members))
        return Packing(ti, members, options)

    def _field(self, m: int, name: str) -> np.ndarray:
        """(batches, shares) array of one kind's field, stacked once (pricing calls solve thousands of times)."""
        key = (m, name)
        if key not in self._stacked:
            self._stacked[key] = np.stack([r[name] if np.ndim(r[name]) else np.full(len(r["shares"]), r[name])
                                           for r in self.rows[m]])
        return self._stacked[key]

    def _memory(self, m: int) -> np.ndarray:
        return np.array([o.memory_mb for o in self.kinds[m].options])


def enumerate_packings(problem: ProvisioningProblem, kinds: list[Kind], deadline: float) -> list[Packing]:
    """Every feasible packing, level by level (a set is tried only when all its subsets one smaller fit)."""
    oracle = Oracle(problem, kinds)
    level = {}
    for m in range(len(kinds)):
        p = oracle.solve((m,))
        if p is not None:
            level[(m,)] = p
    found = list(level.values())
    while level:
        nxt = {}
        for members in level:
            for m in range(members[-1] + 1, len(kinds)):
                cand = members + (m,)
                if (kinds[m].type_index != kinds[members[0]].type_index
                        or any(kinds[x].workload == kinds[m].workload for x in members)
                        or any(sub not in level for sub in itertools.combinations(cand, len(members)))):
                    continue
                p = oracle.solve(cand)
                if p is not None:
                    nxt[cand] = p
            if time.monotonic() > deadline or len(found) + len(nxt) > MAX_PACKINGS:
                raise TooLarge("packing enumeration budget")
        found += nxt.values()
        level = nxt
    return found


def solve_master(problem: ProvisioningProblem, kinds: list[Kind], packings: list[Packing], time_limit_s: float):
    """The set-cover master; returns (gpus, objective, lp_bound, proven_optimal)."""
    prob, x, z = _master_model(problem, kinds, packings, integer=True)
    for ti, t in enumerate(problem.types):
        if t.max_count:
            prob += pulp.lpSum(x[c] for c, p in enumerate(packings) if p.type_index == ti) <= t.max_count
    run_solver(prob, max(1, math.ceil(time_limit_s)))
    if prob.sol_status not in (1, 2):
        return None, math.inf, -math.inf, False
    chosen = {i for i, v in enumerate(z) if (v.value() or 0) > 0.5}
    gpus = _expand(kinds, packings, x, chosen)
    proven = prob.sol_status == 1
    return gpus, float(pulp.value(prob.objective)), _lp_bound(prob, x, z) if not proven else None, proven


def _lp_bound(prob, x, z) -> float:
    """The LP relaxation's value (a valid bound when the integer solve stopped early)."""
    for v in (*x, *z):
        v.cat = pulp.LpContinuous
    run_solver(prob)
    return float(pulp.value(prob.objective))


def _expand(kinds: list[Kind], packings: list[Packing], x, chosen: set[int]) -> list[Gpu]:
    """Integer packings -> GPUs, each chosen kind's replicas placed once (extra cover dropped)."""
    placed = {i: 0 for i in chosen}
    gpus = []
    for c, p in enumerate(packings):
        for _ in range(int(round(x[c].value() or 0))):
            g = Gpu(p.type_index)
            for m, o in zip(p.kinds, p.options):
                if m in chosen and placed[m] < kinds[m].replicas:
                    g.servers.append(Server(kinds[m].workload, placed[m], o))
                    placed[m] += 1
            if g.servers:
                gpus.append(g)
    return gpus


def generate_packings(problem: ProvisioningProblem, kinds: list[Kind], seeds: list[tuple[int, ...]],
                      deadline: float) -> tuple[list[Packing], float | None]:
    """Column generation for the master's LP: (packings generated, LP value when proven optimal over ALL
    packings, else None). Pricing is an exact depth-first search over kinds with positive dual, pruned by
    a fractional-knapsack completion bound (_Completion) and by subset-closed feasibility."""
    oracle = Oracle(problem, kinds)
    completion = _Completion(problem, kinds)
    memo: dict[frozenset, Packing | None] = {}

    def fits(members: tuple[int, ...]) -> Packing | None:
        key = frozenset(members)
        if key not in memo:
            memo[key] = oracle.solve(tuple(sorted(members)))
        return memo[key]

    columns = {}
    for members in [(m,) for m in range(len(kinds))] + seeds:
        p = fits(members)
        if p is not None:
            columns[frozenset(members)] = p
    while time.monotonic() < deadline:
        value, duals = _master_lp(problem, kinds, list(columns.values()))
        found = _price(problem, kinds, duals, fits, deadline, completion)
        if found is None:
            return list(columns.values()), None
        fresh = [p for p in found if frozenset(p.kinds) not in columns]
        if not fresh:
            return list(columns.values()), value
        for p in fresh:
            columns[frozenset(p.kinds)] = p
    return list(columns.values()), None


def _master_model(problem: ProvisioningProblem, kinds: list[Kind], packings: list[Packing], integer: bool):
    """min cost (- accuracy) s.t. one kind per workload and every chosen kind's replicas covered by packings;
    ``integer=False`` is its LP relaxation (bound and duals for pricing)."""
    prob = pulp.LpProblem("igniter_patterns" if integer else "igniter_master_lp", pulp.LpMinimize)
    x = [pulp.LpVariable(f"x_{c}", lowBound=0, cat="Integer" if integer else "Continuous") for c in range(len(packings))]
    z = [pulp.LpVariable(f"z_{k}", lowBound=0, upBound=1, cat="Binary" if integer else "Continuous")
         for k in range(len(kinds))]
    prob += (pulp.lpSum(problem.types[p.type_index].price_per_hour * x[c] for c, p in enumerate(packings))
             - problem.accuracy_weight * pulp.lpSum(k.accuracy * z[i] for i, k in enumerate(kinds)))
    for wi in range(len(problem.workloads)):
        prob += pulp.lpSum(z[i] for i, k in enumerate(kinds) if k.workload == wi) == 1, f"pick_{wi}"
    covering: dict[int, list] = {i: [] for i in range(len(kinds))}
    for c, p in enumerate(packings):
        for m in p.kinds:
            covering[m].append(x[c])
    for i, k in enumerate(kinds):
        prob += pulp.lpSum(covering[i]) - k.replicas * z[i] >= 0, f"cover_{i}"
    return prob, x, z


def _master_lp(problem: ProvisioningProblem, kinds: list[Kind], packings: list[Packing]):
    """LP relaxation of the master: (value, dual of every kind's cover row)."""
    prob, _, _ = _master_model(problem, kinds, packings, integer=False)
    run_solver(prob)
    duals = [max(0.0, prob.constraints[f"cover_{i}"].pi or 0.0) for i in range(len(kinds))]
    return float(pulp.value(prob.objective)), duals


def _price(problem: ProvisioningProblem, kinds: list[Kind], duals: list[float], fits, deadline: float,
           completion: "_Completion"):
    """Packings of negative reduced cost (price - sum of member duals), the best per GPU type; [] when none
    exists (the LP is then optimal over every packing); None when the search ran out of time. A search capped
    at PRICING_NODES nodes runs first: any column it finds is enough to go on; only when it finds none is
    the uncapped (exact) search needed."""
    for cap in (PRICING_NODES, None):
        found = _search(problem, kinds, duals, fits, deadline, cap, completion)
        if found is None or found or cap is None:
            return found
    return None


def _search(problem: ProvisioningProblem, kinds: list[Kind], duals: list[float], fits, deadline: float,
            cap: int | None, completion: "_Completion"):
    """Depth-first over kinds of positive dual (largest first); a branch is cut when its value plus the
    completion bound (_Completion.bound) cannot beat the best packing found or the GPU's price. Returns the
    COLUMNS_PER_TYPE best packings of negative reduced cost met on the way, per type."""
    found = []
    nodes = [0]
    for ti, t in enumerate(problem.types):
        cand = np.array(sorted((m for m in range(len(kinds)) if kinds[m].type_index == ti and duals[m] > EPS),
                               key=lambda m: (-duals[m], m)), dtype=int)
        best: list = [t.price_per_hour + 1e-7, None]
        improving: list = []

        def dfs(start: int, members: tuple[int, ...], value: float, room: float) -> bool:
            for j in range(start, len(cand)):
                if value + completion.bound(cand[j:], members, room, duals) <= best[0]:
                    return True
                nodes[0] += 1
                if time.monotonic() > deadline or (cap is not None and nodes[0] > cap):
                    return cap is not None and time.monotonic() <= deadline
                m = int(cand[j])
                if any(kinds[x].workload == kinds[m].workload for x in members):
                    continue
                p = fits(members + (m,))
                if p is None:
                    continue
                if value + duals[m] > t.price_per_hour + 1e-7:
                    improving.append((value + duals[m], p))
                if value + duals[m] > best[0]:
                    best[:] = [value + duals[m], p]
                if not dfs(j + 1, members + (m,), value + duals[m], 100.0 - sum(o.share for o in p.options)):
                    return False
            return True

        if not dfs(0, (), 0.0, 100.0):
            return None
        found += [p for _, p in sorted(improving, key=lambda vp: -vp[0])[:COLUMNS_PER_TYPE]]
    return found


class _Completion:
    """Upper bound on the duals that more members can add to a packing: a fractional knapsack over the
    candidates, each weighing the least share at which it meets its SLO next to the members (their scheduling
    delay and at least their least solo pressures pmin, interference only grows with more partners), in the
    room the members leave at their least shares (the oracle's least total share for the members alone: any
    superset gives them at least as much)."""

    def __init__(self, problem: ProvisioningProblem, kinds: list[Kind]):
        rows = [[problem.row(o) for o in k.options] for k in kinds]
        b_max = max(len(r) for r in rows)
        s_max = max(len(r[0]["shares"]) for r in rows)   # GPU types and CPU hosts have different grids
        self.shares = np.full((len(kinds), s_max), np.inf)
        for i, rs in enumerate(rows):
            self.shares[i, :len(rs[0]["shares"])] = rs[0]["shares"]

        def stacked(name):   # padding has no latency bound (lmax 0): never usable
            out = np.zeros((len(kinds), b_max, s_max))
            for i, rs in enumerate(rows):
                for b, r in enumerate(rs):
                    out[i, b, :len(r[name])] = r[name]
            return out

        self.lat, self.sens, self.press, self.sched, self.lmax = (
            stacked(n) for n in ("latency", "sensitivity", "pressure", "sched", "max_latency"))
        solo = (self.lmax > 0) & (self.lat <= self.lmax + EPS)
        self.pmin = np.where(solo, self.press, np.inf).min(axis=(1, 2))
        self.pmin = np.where(np.isfinite(self.pmin), self.pmin, 0.0)
        self.workload = np.array([k.workload for k in kinds])

    def bound(self, cand: np.ndarray, members: tuple[int, ...], room: float, duals: list[float]) -> float:
        """The larger of: the best single candidate that fits next to the members, and the fractional knapsack
        of two or more (each then also has another candidate as partner: one more scheduling delay and at least
        the candidates' least pmin more pressure)."""
        if not len(cand):
            return 0.0
        cand = cand[~np.isin(self.workload[cand], self.workload[list(members)])]
        if not len(cand):
            return 0.0
        value = np.array([duals[m] for m in cand])
        partners = float(self.pmin[list(members)].sum()) if members else 0.0
        alone = self._weights(cand, partners, len(members))
        single = float(value[alone <= room + EPS].max(initial=0.0))
        several = self._weights(cand, partners + float(self.pmin[cand].min()), len(members) + 1)
        return max(single, _fractional_knapsack(value, several, room))

    def _weights(self, cand: np.ndarray, partner_pressure: float, partners: int) -> np.ndarray:
        """Least share of each candidate meeting its SLO next to that partner pressure and count (inf: none)."""
        ok = (self.lmax[cand] > 0) & (self.lat[cand] * (1 + self.sens[cand] * partner_pressure)
                                     + self.sched[cand] * partners <= self.lmax[cand] + EPS)
        s_max = self.shares.shape[1]
        first = np.where(ok.any(2), ok.argmax(2), s_max).min(1)
        return np.where(first < s_max, self.shares[cand, np.minimum(first, s_max - 1)], np.inf)


def _fractional_knapsack(value: np.ndarray, weight: np.ndarray, room: float) -> float:
    keep = np.isfinite(weight)
    value, weight = value[keep], weight[keep]
    if not len(value):
        return 0.0
    order = np.argsort(-value / weight)
    cum = np.cumsum(weight[order])
    k = int(np.searchsorted(cum, room + EPS, side="right"))
    total = float(value[order][:k].sum())
    if k < len(order):
        total += float(value[order][k]) * max(room - (cum[k - 1] if k else 0.0), 0.0) / float(weight[order][k])
    return total
