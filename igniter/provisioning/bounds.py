"""Strong lower bound: the LP relaxation of the set-cover master (patterns.py) over a relaxed packing set, by
column generation, valid whenever it stops (a Farley bound from the current duals).

Master (patterns.py), kinds k = (workload, type, variant, replicas r_k), packings c of one GPU type:
    min sum_c price_c x_c - w sum_k acc_k z_k   s.t.  sum_{k of i} z_k = 1,   sum_{c contains k} x_c >= r_k z_k.
Relaxation of the packings. pmin_k is the least pressure kind k exerts at any (batch, share) meeting its latency
bound solo; in a packing each member exerts at least its pmin (interference only adds latency). Levels rho_l are
quantiles of the kinds' pmin; a kind's level is the largest rho_l <= pmin. A packing of n members is relaxed by
the levels (lo, hi) of its least and largest pmin: its leader (a member of level hi) has n-1 partners of
pressure >= rho_lo; every other member (levels lo..hi, one of them of level lo, its "least" member) has the
leader and n-2 more: pressure >= rho_hi + (n-2) rho_lo. Each member takes at least need_k: its smallest grid
share at which some batch meets its latency bound next to that partner pressure and n-1 partners' scheduling
delay, and the needs fit in 100 %. Every packing the packers accept (linearised interference: patterns.Oracle,
greedy_igniter.place, fits_linear) is such a set, since a latency grows with partner pressure and count
(sensitivity, pressure and sched >= 0; checked, else no bound). Pressure floors raise the levels per slice: a
member's (batch, share) tolerates its partners' pressure, so its pressure is at least the least pressure of any
point of its level's kinds tolerating that much (pressure grows with the share a member needs next to others),
which raises its partners' lower bounds in turn (_raised_levels: a monotone iteration, valid at every step).
Sizes above MAX_SIZE are priced at MAX_SIZE's needs (needs grow with the size). Sizes SMALL_SIZES (2 and 3,
where the levels are loosest) are not DP slices but enumerated class tuples, each member at its class's floor
next to the others' (_small_packings). Memory and max_count are dropped (relaxing only lowers the bound).
Relaxation of the rows. Kinds with the same tables are one class, their cover rows summed (a sum of valid rows
is valid); beyond MAX_CLASSES per type kinds are merged by coarser keys, a class taking its kinds' least needs.
A packing may hold up to |class| plain members of a class (and its leader and least member besides).
Pricing is then exact for the relaxation: a bounded knapsack with a cardinality over every (lo, hi, size) slice
at once, the least member a second DP layer, the leader added last; the small sizes by their tuples' dual
sums. For any duals pi >= 0 of the class rows,
U_t = the best value on type t and theta_t = min(1, price_t / U_t) make theta * pi dual feasible, with
mu_i = min over kinds k of workload i of (r_k theta pi_class(k) - w acc_k); sum_i mu_i is a lower bound on
every plan in the candidate space (weak duality), whatever the column generation's progress. Columns are the
best relaxed packings (reduced cost < 0); with none left theta = 1 and the bound is the relaxed LP's optimum.
Pricing duals are smoothed towards those of the best bound so far (Wentges), starting from the share bound's.
LPs: HiGHS (highspy), columns added in place.
Assumptions, as for patterns.py: the candidate space (share grid, kept batches, replica counts) and the
linearised interference deciding feasibility (the full model re-checks every plan).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from igniter.provisioning.candidates import ProvisioningProblem
from igniter.provisioning.patterns import Kind, kinds_of
from igniter.provisioning.strategy import EPS, Gpu

LEVELS = 8              # pmin levels per type (quantiles of the kinds' pmin); slices grow with LEVELS^2
COLUMNS_PER_ROUND = 80  # packings added per type and round (best slices first): fewer rounds, each a DP
TIME_SHARE = 0.5        # of a strategy's time limit spent on the bound (at large sizes worth more than the windows)
MAX_SIZE = 5            # packing sizes priced exactly; larger ones at this size's needs (the DP's count states)
MAX_CLASSES = 110       # classes per type; more kinds are merged (_classes): the pricing DP's length and
                        # the small tuples (C(classes + 2, 3))
SMOOTHING = 0.7         # weight of the best bound's duals in the pricing duals (Wentges)
SMALL_SIZES = (2, 3)     # packing sizes enumerated over class tuples (_small_packings): the DP's levels are
                        # loosest there
GRID_STEP = 0.002       # partner-pressure grid of the class floors (a query rounds down: floors only drop)
ROOM_TOL = 1e-4         # partner pressure a point tolerates beyond its room (fits_linear's EPS on latencies)
FLOOR_ROUNDS = 6        # rounds raising a slice's pressure levels (_raised_levels)
NO_FIT = 10**6          # need of a kind that cannot join a packing of that size at that level


@dataclass
class TypeTables:
    """Relaxed-pricing data of one GPU type. A slice is (pair p of levels (lo, hi), packing size n), flat index
    p * N + n - 1."""
    type_index: int
    price: float
    units: int                     # grid shares of the type: capacity in grid steps
    levels: np.ndarray             # (L,) rho_l, ascending
    pairs: np.ndarray              # (P, 2) level indices (lo, hi), lo <= hi: the levels of the least and the
                                   # largest member pmin
    need: np.ndarray               # (classes, P, N) grid units of a member that is not the leader (NO_FIT: its
                                   # pmin is outside [rho_lo, rho_hi + 1), or no share fits)
    lead: np.ndarray               # (classes, P, N) grid units of the leader (NO_FIT: its pmin is not in level hi)
    least: np.ndarray              # (classes, L) bool: may be the least member at level lo (its pmin is in level
                                   # lo: rho_lo <= pmin < rho_{lo + 1}; merged classes: any member's level)
    classes: list[list[int]]       # kind indices of each class
    class_rows: list[int] = field(default_factory=list)   # master row of each class
    small: dict[int, np.ndarray] = field(default_factory=dict)   # size n -> (packings, n) class tuples: the
                                   # sizes priced by enumeration (_small_packings) instead of by the DP


@dataclass
class Bound:
    value: float                   # the valid lower bound (rounded up to whole GPUs when one price, no reward)
    lp_value: float                # the restricted master's LP value (>= the relaxed LP optimum)
    converged: bool                # no column of negative reduced cost left: value is the relaxed LP optimum
    rounds: int
    columns: int
    classes: int
    seconds: float

    def as_details(self) -> dict:
        lp = round(self.lp_value, 6) if math.isfinite(self.lp_value) else None   # None: no LP solved in time
        return {"bound": round(self.value, 6), "bound_lp": lp, "bound_converged": self.converged,
                "bound_rounds": self.rounds, "bound_columns": self.columns, "bound_classes": self.classes,
                "bound_seconds": round(self.seconds, 3)}


def lower_bound(problem: ProvisioningProblem, deadline: float, target: float = math.inf,
                seeds: list[Gpu] = ()) -> Bound | None:
    """The strong bound by column generation until converged, `deadline` (time.monotonic()) or a bound that
    proves `target` (a plan's cost) optimal or no better rounded bound is possible; None when the relaxation
    does not apply (negative terms). `seeds`: a plan's GPUs, initial columns (a real packing is a relaxed one)."""
    start = time.monotonic()
    kinds = kinds_of(problem)
    tables = []
    for ti, t in enumerate(problem.types):
        members = [k for k, kind in enumerate(kinds) if kind.type_index == ti]
        if members:
            tab = _tables(problem, kinds, members, ti, MAX_CLASSES)
            if tab is None:
                return None
            tables.append(tab)
    master = _Master(problem, kinds, tables)
    _seed(master, kinds, tables, seeds)
    # Wentges smoothing: price at a blend of the LP duals and the duals of the best bound so far (starting from
    # the interference-free share duals), so early rounds already give a bound and fewer rounds are needed
    stable = {t.type_index: t.price * t.lead[:, :, 0].min(1) / t.units for t in tables}
    best, rounds, converged, lp_value = -math.inf, 0, False, math.inf
    while True:
        rounds += 1
        if rounds == 1:
            lp_pi, weights = stable, (1.0,)
        else:
            lp_value, duals = master.solve()
            lp_pi = {t.type_index: np.maximum(0.0, np.asarray(duals)[t.class_rows]) for t in tables}
            weights = (SMOOTHING, 0.0)
        found = []
        for weight in weights:
            pis = {ti: weight * stable[ti] + (1 - weight) * lp_pi[ti] for ti in stable}
            scale = {}
            for tab in tables:
                value, columns = _price(tab, pis[tab.type_index])
                small_value, small_columns = _price_small(tab, pis[tab.type_index])
                value, columns = max(value, small_value), small_columns + columns
                scale[tab.type_index] = min(1.0, tab.price / value) if value > EPS else 1.0
                found += [(tab, col) for col in columns]
            value = _farley(problem, kinds, tables, pis, scale)
            if value > best:
                best, stable = value, {ti: scale[ti] * pis[ti] for ti in pis}
            if found:
                break
        if not found and rounds > 1:
            converged = True
            break
        if (_rounded(problem, best) >= min(target, _rounded(problem, lp_value)) - EPS
                or time.monotonic() > deadline):   # proves the target, or can rise no more: lp_value is above the LP
            break
        for tab, col in found:
            master.add_column(tab, col)
    converged = converged or best >= lp_value - EPS   # a valid bound at the restricted LP: its optimum
    return Bound(_rounded(problem, best), lp_value, converged, rounds, master.columns,
                 sum(len(t.classes) for t in tables), time.monotonic() - start)


def _seed(master, kinds: list[Kind], tables: list[TypeTables], gpus: list[Gpu]) -> None:
    kind_of = {(k.workload, k.type_index, k.options[0].model, k.replicas): i for i, k in enumerate(kinds)}
    class_of = {k: (tab, c) for tab in tables for c, members in enumerate(tab.classes) for k in members}
    for g in gpus:
        members = [kind_of.get((s.workload, g.type_index, s.option.model, s.option.replicas)) for s in g.servers]
        if members and None not in members and len({kinds[m].workload for m in members}) == len(members):
            col: dict[int, int] = {}
            for m in members:
                col[class_of[m][1]] = col.get(class_of[m][1], 0) + 1
            master.add_column(class_of[members[0]][0], col)


def best_bound(problem: ProvisioningProblem, target: float, deadline: float,
               plan: list[Gpu] = ()) -> tuple[float, dict]:
    """The better of the share bound and the strong bound (when it applies), with the strong bound's details."""
    share = problem.share_lower_bound()
    if target <= share + EPS:
        return share, {"bound": "share (the plan meets it)"}
    strong = lower_bound(problem, deadline, target, plan)
    if strong is None:
        return share, {"bound": "share (strong bound not computed: negative interference terms)"}
    return max(share, strong.value), strong.as_details()


def _rounded(problem: ProvisioningProblem, value: float) -> float:
    """With one GPU price and no accuracy reward every plan costs a whole number of GPUs: round up."""
    prices = {t.price_per_hour for t in problem.types}
    if len(prices) == 1 and problem.accuracy_weight == 0 and min(prices) > 0 and math.isfinite(value):
        price = prices.pop()
        return math.ceil(value / price - 1e-6) * price
    return value


def _farley(problem, kinds: list[Kind], tables: list[TypeTables], pis: dict, scale: dict) -> float:
    """sum_i min_k (r_k theta_t pi_class(k) - w acc_k): the dual objective of the scaled (feasible) duals."""
    pi_of_kind = {}
    for tab in tables:
        for members, pi in zip(tab.classes, pis[tab.type_index]):
            for k in members:
                pi_of_kind[k] = scale[tab.type_index] * float(pi)
    mu = [math.inf] * len(problem.workloads)
    for k, kind in enumerate(kinds):
        mu[kind.workload] = min(mu[kind.workload],
                                kind.replicas * pi_of_kind[k] - problem.accuracy_weight * kind.accuracy)
    return float(sum(mu))


def _tables(problem: ProvisioningProblem, kinds: list[Kind], members: list[int], ti: int,
            max_classes: int | None = None) -> TypeTables | None:
    """Need tables of one type's kinds (module docstring), grouped into classes (_classes)."""
    rows = [[problem.row(o) for o in kinds[k].options] for k in members]
    shares = rows[0][0]["shares"]
    b_max = max(len(r) for r in rows)

    def stacked(name):
        out = np.zeros((len(members), b_max, len(shares)))
        for i, rs in enumerate(rows):
            for b, r in enumerate(rs):
                out[i, b] = r[name]
        return out

    lat, sens, press, sched, lmax = (stacked(n) for n in ("latency", "sensitivity", "pressure", "sched", "max_latency"))
    usable = lmax > 0
    if (sens[usable] < 0).any() or (press[usable] < 0).any() or (sched[usable] < 0).any():
        return None
    solo_ok = usable & (lat <= lmax + EPS)
    pmin = np.where(solo_ok, press, np.inf).min(axis=(1, 2))
    solo_units = np.where(solo_ok.any(2), solo_ok.argmax(2) + 1, NO_FIT).min(1)
    fitting = np.sort(solo_units[solo_units < NO_FIT])
    # sizes 1..n_max - 1 exactly, n_max standing for n_max or more members (needs grow with the size)
    n_max = min(max(1, int(np.searchsorted(np.cumsum(fitting), len(shares), side="right"))), MAX_SIZE)
    finite = pmin[np.isfinite(pmin)]
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, LEVELS), method="lower")) if len(finite) else np.zeros(1)
    bucket = np.clip(np.searchsorted(levels, np.where(np.isfinite(pmin), pmin, levels[0]), side="right") - 1, 0, None)
    pairs = np.array([(lo, hi) for lo in range(len(levels)) for hi in range(lo, len(levels))])
    # a latency bound lat (1 + sens X) + sched (n - 1) <= lmax is "X <= room_n" (inf where sens is 0)
    room = []
    for n in range(1, n_max + 1):
        slack = lmax - lat - sched * (n - 1)
        room.append(np.where(solo_ok & (slack >= -EPS),
                             np.where(lat * sens > 0, np.maximum(slack, 0) / np.maximum(lat * sens, 1e-300), np.inf),
                             -np.inf))
    floors = [_PressureFloor(room[n - 1], press, bucket, len(levels)) for n in range(1, n_max + 1)]
    need = np.full((len(members), len(pairs), n_max), NO_FIT, dtype=np.int64)
    lead = np.full((len(members), len(pairs), n_max), NO_FIT, dtype=np.int64)
    for p, (lo, hi) in enumerate(pairs):
        inside = (bucket >= lo) & (bucket <= hi)
        for n in range(1, n_max + 1):
            # the leader has n - 1 partners of pressure >= r_lo; every other member has the leader (>= r_hi)
            # and n - 2 more
            r_lo, r_hi = _raised_levels(floors[n - 1], levels, lo, hi, n, n < n_max or n_max < MAX_SIZE)
            if not math.isfinite(r_lo + r_hi):
                continue                   # no packing of this slice: every need stays NO_FIT
            units = _first_units(room[n - 1] >= (n - 1) * r_lo - ROOM_TOL)
            lead[:, p, n - 1] = np.where(bucket == hi, units, NO_FIT)
            if n >= 2:
                units = _first_units(room[n - 1] >= r_hi + (n - 2) * r_lo - ROOM_TOL)
                need[:, p, n - 1] = np.where(inside, units, NO_FIT)
    least = bucket[:, None] == np.arange(len(levels))[None, :]
    classes, rows = _classes(members, bucket, need, lead, len(levels) - 1, max_classes)
    need, lead = np.stack([need[r].min(0) for r in rows]), np.stack([lead[r].min(0) for r in rows])
    # sizes enumerated instead (exact sizes only: n_max may stand for n_max or more members)
    small = [n for n in SMALL_SIZES if n < n_max or (n == n_max and n_max < MAX_SIZE)]
    workloads = [len({kinds[members[i]].workload for i in r}) for r in rows]
    found = {n: _small_packings(room[n - 1], press, rows, workloads, len(shares), n) for n in small}
    for n in small:
        need[:, :, n - 1] = NO_FIT
        lead[:, :, n - 1] = NO_FIT
    return TypeTables(ti, problem.types[ti].price_per_hour, len(shares), levels, pairs, need, lead,
                      np.stack([least[r].any(0) for r in rows]), classes, small=found)


class _PressureFloor:
    """The least pressure a kind of level l exerts at any (batch, share) meeting its latency bound next to
    partner pressure X (and a fixed partner count), for any X: per level the kinds' (batch, share) points sorted
    by the partner pressure they tolerate (room), with the running minimum of their pressure."""

    def __init__(self, room: np.ndarray, press: np.ndarray, bucket: np.ndarray, n_levels: int):
        self.rooms, self.least = [], []
        for level in range(n_levels):
            r, q = room[bucket == level].ravel(), press[bucket == level].ravel()
            keep = r > -np.inf
            order = np.argsort(-r[keep], kind="stable")
            self.rooms.append(-r[keep][order])                       # ascending -room
            self.least.append(np.minimum.accumulate(q[keep][order]))

    def at(self, levels: range, partner_pressure: float) -> float:
        """min over kinds of the levels of their least pressure meeting the bound next to partner_pressure."""
        best = math.inf
        for level in levels:
            tolerating = int(np.searchsorted(self.rooms[level], -(partner_pressure - ROOM_TOL), side="right"))
            if tolerating:
                best = min(best, float(self.least[level][tolerating - 1]))
        return best


def _raised_levels(floor: _PressureFloor, levels: np.ndarray, lo: int, hi: int, n: int,
                   exact_size: bool) -> tuple[float, float]:
    """Lower bounds (r_lo, r_hi) on the pressure of every member but the leader and of the leader in a packing of
    slice (lo, hi, n), from rho_lo and rho_hi up: a member's (batch, share) meets its bound next to its partners'
    pressure, so its pressure is at least its level's floor there (_PressureFloor), which raises its partners'
    pressure in turn (a monotone iteration: every step is a valid bound). inf: no packing of the slice.
    exact_size: n members exactly (False: n or more, where more partners only raise the floors, but a third
    member need not be of level lo)."""
    r_lo, r_hi = float(levels[lo]), float(levels[hi])
    if n == 1:
        return r_lo, r_hi
    others = range(lo, lo + 1) if n == 2 and exact_size else range(lo, hi + 1)   # of two, the other is the least
    for _ in range(FLOOR_ROUNDS):
        new_hi = max(r_hi, floor.at(range(hi, hi + 1), (n - 1) * r_lo))
        if not math.isfinite(new_hi):
            return math.inf, math.inf
        new_lo = max(r_lo, floor.at(others, new_hi + (n - 2) * r_lo))
        if not math.isfinite(new_lo):
            return math.inf, math.inf
        if new_hi <= r_hi + EPS and new_lo <= r_lo + EPS:
            break
        r_lo, r_hi = new_lo, new_hi
    return r_lo, r_hi


def _small_packings(room: np.ndarray, press: np.ndarray, rows: list[list[int]], workloads: list[int], units: int,
                    n: int) -> np.ndarray:
    """Every class tuple (c_1 <= ... <= c_n, a class at most as often as it has workloads) that may be a packing
    of n members: each member's pressure is at least its class's floor next to the others' (the least pressure
    of any of its kinds' (batch, share) tolerating that partner pressure, _class_floors), raised in rounds from
    the solo floors (every round a valid bound), and the least units of each next to its partners' floors fit in
    the GPU. A relaxation: every real packing of n members passes for its kinds' classes."""
    floor, least_units = _class_floors(room, press, rows, n)
    tuples = _class_tuples(len(rows), n, np.array(workloads))
    if not len(tuples):
        return tuples
    grid_index = lambda x: np.minimum(np.floor(x / GRID_STEP), floor.shape[1] - 1).astype(np.int64)  # noqa: E731
    tuples = tuples[np.isfinite(floor[tuples, 0]).all(1)]        # each member fits next to no pressure at all
    pressure = floor[tuples, 0]
    for _ in range(FLOOR_ROUNDS):
        raised = np.maximum(pressure, floor[tuples, grid_index(pressure.sum(1, keepdims=True) - pressure)])
        alive = np.isfinite(raised).all(1)
        changed = not np.array_equal(raised[alive], pressure[alive])
        tuples, pressure = tuples[alive], raised[alive]
        if not changed:
            break
    total = least_units[tuples, grid_index(pressure.sum(1, keepdims=True) - pressure)].sum(1)
    return tuples[total <= units]


def _class_tuples(classes: int, n: int, workloads: np.ndarray) -> np.ndarray:
    """(T, n) every non-decreasing n-tuple of class indices, a class at most as often as it has workloads."""
    grid = np.stack(np.meshgrid(*[np.arange(classes)] * n, indexing="ij"), -1).reshape(-1, n)
    tuples = grid[(np.diff(grid, axis=1) >= 0).all(1)]
    repeats = np.ones(tuples.shape, dtype=np.int64)   # how often each member's class occurs up to it
    for j in range(1, n):
        repeats[:, j] = np.where(tuples[:, j] == tuples[:, j - 1], repeats[:, j - 1] + 1, 1)
    return tuples[(repeats <= workloads[tuples]).all(1)]


def _class_floors(room: np.ndarray, press: np.ndarray, rows: list[list[int]], n: int):
    """Per class and partner pressure X on the grid k * GRID_STEP: the least pressure and the least grid units of
    any of its kinds' (batch, share) meeting the latency bound next to X (inf / NO_FIT: none). A point tolerates
    every X up to its room (rounded down to the grid: floors only drop)."""
    finite = room[np.isfinite(room) & (room > -np.inf)]
    top = max(float(press[np.isfinite(press)].max(initial=0.0)) * (n - 1), float(finite.max(initial=0.0)))
    size = int(min(top, 10.0) / GRID_STEP) + 2
    floor = np.full((len(rows), size), np.inf)
    least_units = np.full((len(rows), size), NO_FIT, dtype=np.int64)
    units = np.broadcast_to(np.arange(1, press.shape[2] + 1), press.shape)
    for c, r in enumerate(rows):
        rm, q, u = room[r].ravel(), press[r].ravel(), units[r].ravel()
        ok = rm > -np.inf
        at = np.where(np.isinf(rm[ok]), size - 1,
                      np.minimum(np.floor((np.maximum(rm[ok], 0) + ROOM_TOL) / GRID_STEP), size - 1)).astype(np.int64)
        np.minimum.at(floor[c], at, q[ok])
        np.minimum.at(least_units[c], at, u[ok])
        floor[c] = np.minimum.accumulate(floor[c][::-1])[::-1]        # tolerating X_k: every point from k up
        least_units[c] = np.minimum.accumulate(least_units[c][::-1])[::-1]
    return floor, least_units


def _price_small(tab: TypeTables, pi: np.ndarray):
    """Best value of the enumerated small packings and those worth more than the price (best first)."""
    value, columns = 0.0, []
    for tuples in tab.small.values():
        if not len(tuples):
            continue
        worth = pi[tuples].sum(1)
        value = max(value, float(worth.max()))
        for t in np.argsort(-worth)[:COLUMNS_PER_ROUND]:
            if worth[t] <= tab.price * (1 + 1e-9) + EPS:
                break
            col: dict[int, int] = {}
            for c in tuples[t]:
                col[int(c)] = col.get(int(c), 0) + 1
            columns.append(col)
    return value, columns


def _classes(members: list[int], bucket: np.ndarray, need: np.ndarray, lead: np.ndarray, widest: int,
             max_classes: int | None):
    """Kinds with the same tables are one class (a sum of cover rows is a valid row). Above max_classes, kinds
    are grouped by coarser keys instead (pmin level, solo units and the leader's units next to one partner of
    each level, in ever coarser steps; pmin level, solo units and the units next to the heaviest partner; then
    pmin level and solo units, halved until few enough), each class at its kinds' least tables (a
    relaxation: every packing of the kinds is one of their classes). widest: the pair (lowest, highest level).
    Returns (kind indices, rows) per class."""
    solo = lead[:, :, 0].min(1)
    # the units a kind needs as the leader next to one partner of each level, coarsened step by step
    beside = np.minimum(lead[:, :, min(1, lead.shape[2] - 1)], NO_FIT // 2)
    keys = [np.concatenate([need.reshape(len(members), -1), lead.reshape(len(members), -1)], 1)]
    keys += [np.concatenate([bucket[:, None], solo[:, None], beside // step], 1) for step in range(1, 9)]
    keys.append(np.stack([bucket, solo, need[:, widest, min(1, need.shape[2] - 1)]], 1))
    step = 1
    while step <= NO_FIT:
        keys.append(np.stack([bucket, solo // step], 1))
        step *= 2
    for key in keys:
        groups: dict[bytes, list[int]] = {}
        for i in range(len(members)):
            groups.setdefault(key[i].tobytes(), []).append(i)
        if max_classes is None or len(groups) <= max_classes:
            break
    rows = list(groups.values())
    return [[members[i] for i in r] for r in rows], rows


def _first_units(ok: np.ndarray) -> np.ndarray:
    """(kinds,) least grid units over batches at which ok holds (NO_FIT: none)."""
    return np.where(ok.any(2), ok.argmax(2) + 1, NO_FIT).min(1)


def _items(tab: TypeTables, pi: np.ndarray):
    """Bounded-knapsack items by binary splitting: (class, copies) for the classes worth anything."""
    out = []
    for c, members in enumerate(tab.classes):
        if pi[c] <= EPS or (tab.need[c] >= NO_FIT).all():
            continue
        left, q = len(members), 1
        while left > 0:
            take = min(q, left)
            out.append((c, take))
            left -= take
            q *= 2
    return out


def _operations(tab: TypeTables, pi: np.ndarray):
    """The DP's steps: (class, copies, least) with least False: plain members by binary splitting (at most
    |class| copies), least True: one copy as the packing's least member."""
    ops = [(c, q, False) for c, q in _items(tab, pi)]
    return ops + [(c, 1, True) for c in dict.fromkeys(c for c, _, _ in ops)]


def _knapsack(tab: TypeTables, pi: np.ndarray, ops, slices: np.ndarray):
    """The members other than the leader, for each slice (flat index) at once: best dual value by count state
    (0..N-2 members exactly, N-1: N-1 or more) and grid units used at most, without (V[0]) and with (V[1]) the
    least member (pmin in level lo); and each step's choices with, for the last count state, the state it came
    from (for _backtrack)."""
    N = tab.need.shape[2]
    U = tab.units
    V = np.full((2, len(slices), N, U + 1), -np.inf)
    V[0, :, 0, :] = 0.0
    units = np.arange(U + 1)
    lo = tab.pairs[slices // N, 0]
    taken = []
    for c, q, least in ops:
        w = q * tab.need[c].reshape(-1)[slices]                    # (slices,) weight of the step in each slice
        fits = (w <= U) & (tab.least[c, lo] if least else True)
        if not fits.any():
            taken.append(None)
            continue
        rows = np.nonzero(fits)[0]                                 # the slices the step can join
        before = V[0, rows]                    # plain steps all come first: only layer 0 has values then
        source = np.full(before.shape, -np.inf)
        if q < N - 1:
            source[:, q:N - 1] = before[:, :N - 1 - q]
        top = before[:, max(0, N - 1 - q):]                      # every state that q more members saturate
        source[:, N - 1] = top.max(1)
        came = top.argmax(1) + max(0, N - 1 - q)
        start = units[None, :] - w[rows][:, None]                # (rows, U + 1) units before the step
        index = np.maximum(start, 0)
        cand = np.where((start >= 0)[:, None, :], np.take_along_axis(source, index[:, None, :], 2) + q * pi[c],
                        -np.inf)
        to = 1 if least else 0
        now = V[to, rows]
        better = cand > now
        V[to, rows] = np.where(better, cand, now)
        at = np.full(len(slices), -1)
        at[rows] = np.arange(len(rows))
        taken.append((at, better, np.take_along_axis(came, index, 1)))
    return V, taken


def _price(tab: TypeTables, pi: np.ndarray):
    """Best relaxed packing value over every slice and the packings of negative reduced cost (as class
    multiplicities), best slices first. A packing of slice (lo, hi, n) is its leader (pmin in level hi) plus,
    for n > 1, its least member (pmin in level lo) and n - 2 members of pmin in between."""
    P, N = tab.need.shape[1:]
    U = tab.units
    slices = np.arange(P * N)
    worth = np.nonzero(pi > EPS)[0]
    if not len(worth):
        return 0.0, []
    ops = _operations(tab, pi)
    V, taken = _knapsack(tab, pi, ops, slices)
    n_of = slices % N + 1
    own = tab.lead[worth].reshape(len(worth), -1)                  # (leader candidates, slices)
    left = U - own
    rest = np.where((n_of == 1)[None, :], 0.0, V[1][slices[None, :], (n_of - 1)[None, :], np.maximum(left, 0)])
    value_by = np.where(left >= 0, rest, -np.inf) + pi[worth][:, None]
    best_leader = value_by.argmax(0)
    best = value_by[best_leader, slices]
    value = float(best.max()) if np.isfinite(best).any() else 0.0
    chosen = np.array([s for s in np.argsort(-best)[:3 * COLUMNS_PER_ROUND]
                       if best[s] > tab.price * (1 + 1e-9) + EPS], dtype=int)
    if not len(chosen):
        return value, []
    columns, seen = [], set()
    for s in chosen:
        c_lead = int(worth[best_leader[s]])
        col = _backtrack(tab, ops, taken, int(s), int(n_of[s]) - 1, U - int(tab.lead[c_lead].reshape(-1)[s]))
        col[c_lead] = col.get(c_lead, 0) + 1
        key = tuple(sorted(col.items()))
        if key not in seen:
            seen.add(key)
            columns.append(col)
        if len(columns) >= COLUMNS_PER_ROUND:
            break
    return value, columns


def _backtrack(tab: TypeTables, ops, taken, s: int, count: int, cap: int) -> dict[int, int]:
    """The members other than the leader behind slice s of a knapsack run: count state `count` (the least
    member among them when count > 0) within cap units."""
    N = tab.need.shape[2]
    col: dict[int, int] = {}
    layer = 1 if count > 0 else 0
    for t in range(len(ops) - 1, -1, -1):
        c, q, least = ops[t]
        if count == 0 or taken[t] is None or least != (layer == 1):
            continue
        at, better, came = taken[t]
        r = at[s]
        if r >= 0 and better[r, count, cap]:
            col[c] = col.get(c, 0) + q
            w = q * int(tab.need[c].reshape(-1)[s])
            count = int(came[r, cap]) if count == N - 1 else count - q
            cap -= w
            layer = 0
    return col


class _Master:
    """The relaxed master LP in HiGHS: x per packing column, z per kind; pick rows (= 1) and class rows (>= 0)."""

    def __init__(self, problem: ProvisioningProblem, kinds: list[Kind], tables: list[TypeTables]):
        import highspy

        from igniter.provisioning.solvers import native_stdout_to_stderr
        with native_stdout_to_stderr():
            self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.inf = highspy.kHighsInf
        n_w = len(problem.workloads)
        self.h.addRows(n_w, np.ones(n_w), np.ones(n_w), 0, np.zeros(0, np.int32), np.zeros(0, np.int32),
                       np.zeros(0))
        row = n_w
        class_of = {}
        for tab in tables:
            tab.class_rows = list(range(row, row + len(tab.classes)))
            for c, members in enumerate(tab.classes):
                for k in members:
                    class_of[k] = tab.class_rows[c]
            row += len(tab.classes)
        self.h.addRows(row - n_w, np.zeros(row - n_w), np.full(row - n_w, self.inf), 0, np.zeros(0, np.int32),
                       np.zeros(0, np.int32), np.zeros(0))
        for k, kind in enumerate(kinds):   # z_k: pick row of its workload, -r_k in its class row
            self.h.addCol(-problem.accuracy_weight * kind.accuracy, 0.0, self.inf, 2,
                          np.array([kind.workload, class_of[k]], np.int32), np.array([1.0, -float(kind.replicas)]))
        self.columns = 0
        for tab in tables:                 # singletons: every class's members alone, as many as fit
            for c in range(len(tab.classes)):
                if tab.lead[c, :, 0].min() < NO_FIT:
                    self.add_column(tab, {c: 1})

    def add_column(self, tab: TypeTables, col: dict[int, int]) -> None:
        rows = np.array([tab.class_rows[c] for c in col], np.int32)
        self.h.addCol(tab.price, 0.0, self.inf, len(rows), rows, np.array([float(v) for v in col.values()]))
        self.columns += 1

    def solve(self) -> tuple[float, list[float]]:
        self.h.run()
        info = self.h.getInfo()
        return float(info.objective_function_value), list(self.h.getSolution().row_dual)
