"""Strong lower bound up to MAX_WORKLOADS workloads: the LP relaxation of the set-cover master (patterns.py) over
a relaxed packing set, by column generation, valid whenever it stops (a Farley bound from the current duals).

Master (patterns.py), kinds k = (workload, type, variant, replicas r_k), packings c of one GPU type:
    min sum_c price_c x_c - w sum_k acc_k z_k   s.t.  sum_{k of i} z_k = 1,   sum_{c contains k} x_c >= r_k z_k.
Relaxation of the packings. A packing of n members at level l (rho_l at most the least pressure any member
exerts at its share) may hold any members whose shares sum to at most 100 with each member k at no less than
need_k(l, n): its smallest grid share at which some batch exerts at least rho_l and meets its latency bound next
to n-1 partners' scheduling delay and a partner pressure of (n-1) * rho_l. Every packing the packers accept
(linearised interference: patterns.Oracle, greedy_igniter.place, fits_linear) is such a set at the largest
level below its least member pressure, since a latency grows with partner pressure and count (sensitivity,
pressure and sched >= 0; checked, else no bound). Levels are quantiles of the kinds' least solo pressures.
Memory and max_count are dropped (relaxing only lowers the bound).
Relaxation of the rows. Kinds with the same need table (all levels and sizes) are one class, their cover rows
summed (a sum of valid rows is valid); a packing may hold up to |class| members of a class.
Pricing is then exact: a bounded knapsack with a cardinality, a DP over (count, grid units) for every (level,
size) at once. For any duals pi >= 0 of the class rows, U_t = the DP's best value on type t and
theta_t = min(1, price_t / U_t) make theta * pi dual feasible, with mu_i = min over kinds k of workload i of
(r_k theta pi_class(k) - w acc_k); sum_i mu_i is a lower bound on every plan in the candidate space (weak
duality), whatever the column generation's progress. Columns are the DP's best packings (reduced cost < 0);
with none left theta = 1 and the bound is the relaxed LP's optimum. Pricing duals are smoothed towards those of
the best bound so far (Wentges), starting from the share bound's. LPs: HiGHS (highspy), columns added in place.
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

LEVELS = 8              # levels of a packing's least member pressure per type (quantiles of the kinds' pmin)
COLUMNS_PER_ROUND = 30  # packings added per type and round (best (level, size) slices first)
TIME_SHARE = 0.3        # of a strategy's time limit spent on the bound
MAX_WORKLOADS = 200     # above this it does not beat the share bound within a few seconds (BENCHMARKS.md)
SMOOTHING = 0.7         # weight of the best bound's duals in the pricing duals (Wentges)
NO_FIT = 10**6          # need of a kind that cannot join a packing of that size at that level


@dataclass
class TypeTables:
    """Relaxed-pricing data of one GPU type."""
    type_index: int
    price: float
    units: int                     # grid shares of the type: capacity in grid steps
    levels: np.ndarray             # (L,) rho_l
    need: np.ndarray               # (classes, L, N) grid units of a member in a packing of n = 1..N members
    classes: list[list[int]]       # kind indices of each class
    class_rows: list[int] = field(default_factory=list)   # master row of each class


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
        return {"bound": round(self.value, 6), "bound_lp": round(self.lp_value, 6), "bound_converged": self.converged,
                "bound_rounds": self.rounds, "bound_columns": self.columns, "bound_classes": self.classes,
                "bound_seconds": round(self.seconds, 3)}


def lower_bound(problem: ProvisioningProblem, deadline: float, target: float = math.inf,
                seeds: list[Gpu] = ()) -> Bound | None:
    """The strong bound by column generation until converged, `deadline` (time.monotonic()) or a bound that
    proves `target` (a plan's cost) optimal; None when the relaxation does not apply (negative terms) or the
    instance is too large for it (MAX_WORKLOADS). `seeds`: a plan's GPUs, initial columns (a real packing is a
    relaxed one)."""
    start = time.monotonic()
    if len(problem.workloads) > MAX_WORKLOADS:
        return None
    kinds = kinds_of(problem)
    tables = []
    for ti, t in enumerate(problem.types):
        members = [k for k, kind in enumerate(kinds) if kind.type_index == ti]
        if members:
            tab = _tables(problem, kinds, members, ti)
            if tab is None:
                return None
            tables.append(tab)
    master = _Master(problem, kinds, tables)
    _seed(master, kinds, tables, seeds)
    # Wentges smoothing: price at a blend of the LP duals and the duals of the best bound so far (starting from
    # the interference-free share duals), so early rounds already give a bound and fewer rounds are needed
    stable = {t.type_index: t.price * t.need[:, 0, 0] / t.units for t in tables}
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
        if _rounded(problem, best) >= target - EPS or time.monotonic() > deadline:
            break
        for tab, col in found:
            master.add_column(tab, col)
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
        return share, {"bound": "share (strong bound not computed: over MAX_WORKLOADS or negative terms)"}
    return max(share, strong.value), strong.as_details()


def _rounded(problem: ProvisioningProblem, value: float) -> float:
    """With one GPU price and no accuracy reward every plan costs a whole number of GPUs: round up."""
    prices = {t.price_per_hour for t in problem.types}
    if len(prices) == 1 and problem.accuracy_weight == 0 and min(prices) > 0:
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


def _tables(problem: ProvisioningProblem, kinds: list[Kind], members: list[int], ti: int) -> TypeTables | None:
    """Need tables of one type's kinds (module docstring), grouped into classes."""
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
    n_max = max(1, int(np.searchsorted(np.cumsum(fitting), len(shares), side="right")))
    finite = pmin[np.isfinite(pmin)]
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, LEVELS), method="lower")) if len(finite) else np.zeros(1)
    need = np.full((len(members), len(levels), n_max), NO_FIT, dtype=np.int64)
    for li, rho in enumerate(levels):
        for n in range(1, n_max + 1):
            ok = usable & (press >= rho) & (lat * (1 + sens * (n - 1) * rho) + sched * (n - 1) <= lmax + EPS)
            need[:, li, n - 1] = np.where(ok.any(2), ok.argmax(2) + 1, NO_FIT).min(1)
    groups: dict[bytes, list[int]] = {}
    for i, k in enumerate(members):
        groups.setdefault(need[i].tobytes(), []).append(k)
    first = {k: i for i, k in enumerate(members)}
    classes = list(groups.values())
    return TypeTables(ti, problem.types[ti].price_per_hour, len(shares), levels,
                      np.stack([need[first[c[0]]] for c in classes]), classes)


def _items(tab: TypeTables, pi: np.ndarray):
    """Bounded-knapsack items by binary splitting: (class, copies) for the classes worth anything."""
    n_max = tab.need.shape[2]
    out = []
    for c, members in enumerate(tab.classes):
        if pi[c] <= EPS or (tab.need[c] >= NO_FIT).all():
            continue
        left, q = min(len(members), n_max), 1
        while left > 0:
            take = min(q, left)
            out.append((c, take))
            left -= take
            q *= 2
    return out


def _price(tab: TypeTables, pi: np.ndarray):
    """Best relaxed packing value over all (level, size) and the packings of negative reduced cost (as class
    multiplicities), best slices first."""
    L, N = tab.need.shape[1:]
    items = _items(tab, pi)
    V = np.full((L * N, N + 1, tab.units + 1), -np.inf)   # (level x size slice, members, grid units used at most)
    V[:, 0, :] = 0.0
    for c, q in items:
        shift = (q * tab.need[c]).ravel()
        for w in np.unique(shift[shift <= tab.units]):        # slices with the same weight: one slice operation
            idx = np.nonzero(shift == w)[0]
            sub = V[idx]
            V[idx, q:, w:] = np.maximum(sub[:, q:, w:], sub[:, :N + 1 - q, :tab.units + 1 - w] + q * pi[c])
    best = V.reshape(L, N, N + 1, tab.units + 1)[:, np.arange(N), np.arange(1, N + 1), tab.units]   # exactly n members
    value = float(best.max()) if np.isfinite(best).any() else 0.0
    columns, seen = [], set()
    for flat in np.argsort(-best, axis=None)[:3 * COLUMNS_PER_ROUND]:
        li, ni = np.unravel_index(flat, best.shape)
        if not best[li, ni] > tab.price * (1 + 1e-9) + EPS:
            break
        col = _backtrack(tab, pi, items, li, ni + 1)
        key = tuple(sorted(col.items()))
        if col and key not in seen:
            seen.add(key)
            columns.append(col)
        if len(columns) >= COLUMNS_PER_ROUND:
            break
    return value, columns


def _backtrack(tab: TypeTables, pi: np.ndarray, items, li: int, n: int) -> dict[int, int]:
    """The packing behind one (level, size) slice: the same DP with its choices kept."""
    U = tab.units
    V = np.full((n + 1, U + 1), -np.inf)
    V[0, :] = 0.0
    taken = np.zeros((len(items), n + 1, U + 1), dtype=bool)
    for j, (c, q) in enumerate(items):
        w = q * int(tab.need[c, li, n - 1])
        if w >= NO_FIT or q > n or w > U:
            continue
        cand = np.full((n + 1, U + 1), -np.inf)
        cand[q:, w:] = V[:n + 1 - q, :U + 1 - w] + q * pi[c]
        better = cand > V
        taken[j] = better
        V = np.where(better, cand, V)
    col: dict[int, int] = {}
    cnt, cap = n, U
    for j in range(len(items) - 1, -1, -1):
        if taken[j, cnt, cap]:
            c, q = items[j]
            col[c] = col.get(c, 0) + q
            cnt -= q
            cap -= q * int(tab.need[c, li, n - 1])
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
                if tab.need[c, :, 0].min() < NO_FIT:
                    self.add_column(tab, {c: 1})

    def add_column(self, tab: TypeTables, col: dict[int, int]) -> None:
        rows = np.array([tab.class_rows[c] for c in col], np.int32)
        self.h.addCol(tab.price, 0.0, self.inf, len(rows), rows, np.array([float(v) for v in col.values()]))
        self.columns += 1

    def solve(self) -> tuple[float, list[float]]:
        self.h.run()
        info = self.h.getInfo()
        return float(info.objective_function_value), list(self.h.getSolution().row_dual)
