"""Candidate server configurations per workload: (GPU type, model variant, batch, share, replicas).

For every GPU type and model variant the perf model's linearised terms are tabulated once over its profiled
batches x the type's share grid (its igniter.backends backend's: 2.5 % MPS steps on a GPU, whole cores on a CPU
host), restricted to the shares the profiles support (usable_shares: no extrapolation below the profiled range on
a CPU host, at most one grid step below it on a GPU). A workload's rate is split over k
replicas, for the fewest k that let one server meet the SLO solo (queueing model, see queueing.py) and
REPLICA_CHOICES - 1 more on small instances (smaller servers sometimes pack better); each (batch, share)
whose solo latency fits under the latency the queueing model allows is a candidate, and its slack
(allowed - solo latency) is what co-runners' interference may use up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from igniter import backends
from igniter.errors import UserError
from igniter.provisioning import queueing
from igniter.provisioning.workloads import MAX_SERVERS, GpuType, Workload, WorkloadSet

MAX_EXTRA_REPLICAS = 4           # replicas tried beyond the capacity estimate before a workload is infeasible
MAX_REPLICAS = 64                # servers one workload may be split over; more is refused (bounded search)
REPLICA_CHOICES = 3              # replica counts offered per workload, from the fewest that meet the SLO,
SMALL_WORKLOADS = 16             # ... on instances this small (the exact path); larger ones get the fewest only
MAX_BATCHES = 6                  # batches kept per (type, variant): those needing the least share
SHARE_LEVELS = (0, 1, 2, 4, 8)   # grid steps above the minimum share kept as candidates
EPS = 1e-6


@dataclass(frozen=True)
class Option:
    """One way to serve one replica of a workload: everything the packers and the plan writer need."""
    workload: int                # index into problem.workloads
    type_index: int              # index into problem.types
    model: str
    accuracy: float
    batch: int
    share: float
    replicas: int
    rate: float                  # req/s carried by this replica
    memory_mb: float
    solo_latency_ms: float
    occupancy: float             # batch occupancy / latency (queueing.py)
    sensitivity: float
    pressure: float
    sched_ms: float
    max_latency_ms: float        # largest batch latency that still meets the SLO at this rate
    extra_ms: float              # transfer + path terms (queueing.py)
    queue_delay_us: int
    slowdown: float = 1.0        # the host's path slowdown (queueing.path_slowdown)

    @property
    def slack_ms(self) -> float:
        return self.max_latency_ms - self.solo_latency_ms


@dataclass
class ModelGrid:
    """Linear terms of one model on one GPU type over batches x shares."""
    batches: np.ndarray          # (B,)
    shares: np.ndarray           # (S,) the type's share grid (the same for every model of the type)
    usable: np.ndarray           # (S,) bool: shares this model may take (usable_shares)
    latency: np.ndarray          # (B, S) solo batch latency, ms
    throughput: np.ndarray       # (B, S) solo req/s
    sensitivity: np.ndarray      # (B, S)
    pressure: np.ndarray         # (B, S)
    sched: np.ndarray            # (B, S)
    memory: np.ndarray           # (B,) MB (0 when unknown)

    def share_index(self, share: float) -> int:
        return int(np.argmin(np.abs(self.shares - share)))

    def batch_index(self, batch: int) -> int:
        return int(np.nonzero(self.batches == batch)[0][0])


@dataclass
class ProvisioningProblem:
    workloads: tuple[Workload, ...]
    types: list[GpuType]
    accuracy_weight: float
    options: list[list[Option]]           # per workload, cheapest first
    grids: dict                           # (type_index, model) -> ModelGrid
    latency_model: str = "queueing"
    _rows: dict = field(default_factory=dict, repr=False)

    def row(self, option: Option) -> dict:
        """Per-share arrays of an option's (type, model, batch) at its workload's SLO and replica rate; "terms"
        stacks latency, sensitivity, pressure, sched and max_latency (one array for the packers to stack)."""
        key = _row_key(option)
        if key not in self._rows:
            self.prefetch_rows([option])
        return self._rows[key]

    def prefetch_rows(self, options: list[Option]) -> None:
        """Compute the rows of many options in one vectorised bisection (one at a time is overhead-bound)."""
        todo = list({_row_key(o): o for o in options if _row_key(o) not in self._rows}.values())
        if not todo:
            return
        grids = [self.grids[(o.type_index, o.model)] for o in todo]
        bis = [g.batch_index(o.batch) for g, o in zip(grids, todo)]
        occ = np.stack([_occupancy(o.batch, g.throughput[bi], g.latency[bi]) for g, bi, o in zip(grids, bis, todo)])
        usable = np.stack([g.usable for g in grids])
        col = lambda values: np.array(values, dtype=float)[:, None]   # noqa: E731 - per-option column
        lmax = queueing.max_latency_ms(col([self.workloads[o.workload].slo_ms for o in todo]),
                                       col([o.batch for o in todo]), col([o.rate for o in todo]), occ,
                                       col([o.extra_ms for o in todo]), self.latency_model,
                                       slowdown=col([o.slowdown for o in todo]))
        lmax = np.where(usable, lmax, 0.0)
        for n, (o, g, bi) in enumerate(zip(todo, grids, bis)):
            terms = np.stack([g.latency[bi], g.sensitivity[bi], g.pressure[bi], g.sched[bi], lmax[n]])
            self._rows[_row_key(o)] = {"shares": g.shares, "latency": terms[0], "sensitivity": terms[1],
                                       "pressure": terms[2], "sched": terms[3], "max_latency": terms[4],
                                       "terms": terms, "occupancy": occ[n]}

    def path_terms(self, type_index: int) -> tuple[float, float]:
        """(path ms, slowdown) every option of this type is priced with: GpuType.path_terms at every workload's
        rate, an upper bound on what any one host carries."""
        return self.types[type_index].path_terms(sum(w.rate for w in self.workloads))

    def with_share(self, option: Option, share_index: int) -> Option:
        """The same configuration at another grid share (terms re-read from the grid)."""
        r = self.row(option)
        i = share_index
        return replace(option, share=float(r["shares"][i]), solo_latency_ms=float(r["latency"][i]),
                       sensitivity=float(r["sensitivity"][i]), pressure=float(r["pressure"][i]),
                       sched_ms=float(r["sched"][i]), occupancy=float(r["occupancy"][i]),
                       max_latency_ms=float(r["max_latency"][i]))

    def fraction_cost(self, o: Option) -> float:
        """Price of the GPU fraction a replica set uses."""
        return self.types[o.type_index].price_per_hour * o.share * o.replicas / 100.0

    def option_cost(self, o: Option) -> float:
        """fraction_cost less the accuracy reward (for ordering)."""
        return self.fraction_cost(o) - self.accuracy_weight * o.accuracy

    def share_lower_bound(self) -> float:
        """Interference-free fractional bound: each workload at its cheapest GPU fraction, GPUs packed to 100 %."""
        total = sum(min(self.fraction_cost(o) for o in opts) for opts in self.options)
        reward = sum(max(o.accuracy for o in opts) for opts in self.options) * self.accuracy_weight
        prices = {t.price_per_hour for t in self.types}
        if len(prices) == 1 and self.accuracy_weight == 0 and min(prices) > 0:
            price = prices.pop()
            return math.ceil(round(total / price, 9)) * price
        return total - reward


def _row_key(option: Option) -> tuple:
    return option.workload, option.type_index, option.model, option.batch, option.rate


def share_grid(gpu_type: GpuType) -> np.ndarray:
    """The shares a server may get on this type: its resource backend's grid (2.5 % MPS steps on a GPU; whole
    cores on a CPU host, where a server is pinned to round(share / 100 * cores) cores, so any other share would
    not be what runs)."""
    hardware = gpu_type.perf_model.hardware or {}
    return backends.for_hardware(hardware).share_grid(hardware)


def usable_shares(gpu_type: GpuType, model: str, shares: np.ndarray) -> np.ndarray:
    """Shares the fitted surface may be trusted at: from the backend's lowest usable share for the smallest
    profiled one up (CPU: the profiled whole-core points; MPS: one grid step of extrapolation below them)."""
    profiled = [float(s) for s in gpu_type.perf_model.shares(model)]
    if not profiled:
        return np.ones(len(shares), dtype=bool)
    hardware = gpu_type.perf_model.hardware or {}
    lowest = backends.for_hardware(hardware).lowest_usable_share(min(profiled), hardware)
    return shares >= lowest - 1e-9


def _occupancy(batch, throughput, latency):
    return np.clip(np.asarray(batch, float) * 1000.0 / (np.asarray(throughput) * np.asarray(latency)), 0.05, 1.0)


def build_grid(gpu_type: GpuType, model: str) -> ModelGrid:
    perf_model = gpu_type.perf_model
    batches = np.array(sorted(int(b) for b in perf_model.batches(model)))
    shares = share_grid(gpu_type)
    fields = _linear_terms_grid(perf_model, model, batches, shares)
    memory = np.array([perf_model.memory_mb(model, int(b)) or 0.0 for b in batches], dtype=float)
    return ModelGrid(batches, shares, usable_shares(gpu_type, model, shares), *fields, memory)


def _linear_terms_grid(perf_model, model: str, batches: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """(5, B, S): solo latency, solo req/s, sensitivity, pressure, sched ms at every (batch, share), in one
    vectorised linear_terms_many call."""
    b, s = (a.ravel().tolist() for a in np.meshgrid(batches.astype(int), shares.astype(float), indexing="ij"))
    terms = perf_model.linear_terms_many([model] * len(b), b, s)
    return np.array([np.asarray(t, float) for t in terms]).reshape(5, len(batches), len(shares))


def build_problem(workload_set: WorkloadSet, types: list[GpuType],
                  latency_model: str = "queueing") -> ProvisioningProblem:
    """Tabulate the grids and every workload's candidates; UserError naming the first infeasible workload."""
    grids = {}
    wanted = sorted({v.model for w in workload_set.workloads for v in w.models()})
    for ti, t in enumerate(types):
        for m in wanted:
            if m in t.perf_model.models:
                grids[(ti, m)] = build_grid(t, m)
    problem = ProvisioningProblem(workload_set.workloads, types, workload_set.accuracy_weight, [], grids,
                                  latency_model)
    found: list[list[Option]] = [[] for _ in workload_set.workloads]
    best = [math.inf] * len(workload_set.workloads)
    fewest = [math.inf] * len(workload_set.workloads)    # servers the workload needs at the least, any type
    for (ti, model), g in grids.items():
        users = [(wi, v) for wi, w in enumerate(workload_set.workloads) for v in w.models() if v.model == model]
        for (wi, variant), (opts, b, k) in zip(users, _options_for_users(problem, ti, g, users)):
            found[wi] += opts
            best[wi] = min(best[wi], b)
            fewest[wi] = min(fewest[wi], k)
    for wi, w in enumerate(workload_set.workloads):
        if not found[wi] and fewest[wi] > MAX_REPLICAS:
            raise UserError(
                f"workload {w.name!r} ({w.model}, {w.rate:g} req/s) would need {_figure(fewest[wi])} servers: one "
                f"server carries at most {w.rate / fewest[wi]:.4g} req/s of it, and a workload may be split over at "
                f"most {MAX_REPLICAS}", "lower its rate or split it into several workloads", "workloads")
        if not found[wi] and not math.isfinite(best[wi]):
            raise UserError(f"workload {w.name!r} ({w.model}, {w.rate:g} req/s) cannot be served at any batch, "
                            f"share or replica count up to {MAX_REPLICAS}: no server carries its rate",
                            "lower its rate, or split it into several workloads", "workloads")
        if not found[wi]:
            raise UserError(
                f"workload {w.name!r} ({w.model}, {w.rate:g} req/s) cannot meet slo_ms={w.slo_ms:g}: the best "
                f"achievable p99 on a whole GPU at any batch is {best[wi]:.2f} ms",
                f"raise slo_ms to at least {math.ceil(best[wi] * 100) / 100:g} or use a faster model/GPU", "workloads")
        found[wi].sort(key=lambda o: (problem.option_cost(o), o.share, o.batch, o.type_index, o.model))
        problem.options.append(found[wi])
    servers = sum(min(o.replicas for o in opts) for opts in problem.options)
    if servers > MAX_SERVERS:
        raise UserError(f"the workloads need at least {servers} servers; igniter plans at most {MAX_SERVERS}",
                        "provision the workloads in several smaller files", "workloads")
    return problem


def _figure(count: float) -> str:
    return f"{count:.3g}" if count >= 1e6 else f"{count:.0f}"


def _options_for_users(problem, ti: int, g: ModelGrid, users):
    """Candidates of every (workload, variant) served by model grid g, vectorised over the workloads."""
    t = problem.types[ti]
    mem_limit = t.memory_mb or (t.perf_model.hardware or {}).get("memory_mb") or math.inf
    occ = _occupancy(g.batches[:, None], g.throughput, g.latency)
    top_rps = float(np.max(g.throughput[:, -1])) * queueing.RHO_MAX
    ws = [problem.workloads[wi] for wi, _ in users]
    # fewest replicas by capacity alone (float: 1e308 req/s must not become a 300-digit int); above MAX_REPLICAS
    # a user is not searched at all
    k = np.maximum(1.0, np.ceil(np.array([w.rate for w in ws], dtype=float) / top_rps)) if top_rps > 0 \
        else np.full(len(ws), math.inf)
    fewest = k.copy()
    slo = np.array([w.slo_ms for w in ws])[:, None, None]
    rate = np.array([w.rate for w in ws])
    path, slowdown = problem.path_terms(ti)
    extra = np.array([queueing.transfer_ms(w.input_bytes, t.network_gbps) + path for w in ws])[:, None, None]
    results: list[list[Option]] = [[] for _ in users]
    best = np.full(len(users), math.inf)
    first_k = np.zeros(len(users))       # replica count at which each user first became feasible (0: not yet)
    last_k = np.minimum(k + MAX_EXTRA_REPLICAS, MAX_REPLICAS)
    todo = np.arange(len(users))[k <= MAX_REPLICAS]
    while len(todo):
        lam = (rate[todo] / k[todo])[:, None, None]
        # p99 grows with the batch latency, so "p99 at the solo latency meets the SLO" is one evaluation where
        # the largest allowed latency (a bisection) would be thirty; that is computed for the kept options only
        p99_grid = queueing.p99_latency_ms(g.latency[None], g.batches[None, :, None], lam, occ[None], extra[todo],
                                           problem.latency_model, slowdown)
        best[todo] = np.minimum(best[todo], p99_grid[:, :, -1].min(axis=1))
        feasible = (p99_grid <= slo[todo]) & (g.memory[None, :, None] <= mem_limit) & g.usable
        delay = queueing.max_queue_delay_us(g.batches[None, :], lam[:, :, 0])
        kept = [(n, u, bi, si) for n, u in enumerate(todo) for bi, si in _share_levels(feasible[n])]
        n_, u_, b_, s_ = (np.array(c, dtype=int) for c in zip(*kept)) if kept else [np.zeros(0, dtype=int)] * 4
        lmax = queueing.max_latency_ms(slo[u_, 0, 0], g.batches[b_], lam[n_, 0, 0], occ[b_, s_], extra[u_, 0, 0],
                                       problem.latency_model, slowdown=slowdown)
        for (n, u, bi, si), allowed in zip(kept, lmax):
            if not g.latency[bi, si] <= allowed + EPS:
                continue     # only at the bisection's precision
            first_k[u] = first_k[u] or k[u]
            wi, variant = users[u]
            results[u].append(Option(wi, ti, variant.model, variant.accuracy, int(g.batches[bi]), float(g.shares[si]),
                                     int(k[u]), float(lam[n, 0, 0]), float(g.memory[bi]), float(g.latency[bi, si]),
                                     float(occ[bi, si]), float(g.sensitivity[bi, si]), float(g.pressure[bi, si]),
                                     float(g.sched[bi, si]), float(allowed), float(extra[u, 0, 0]),
                                     int(delay[n, bi]), slowdown))
        # more replicas may pack better (smaller servers): keep REPLICA_CHOICES counts from the first feasible one
        choices = REPLICA_CHOICES if len(problem.workloads) <= SMALL_WORKLOADS else 1
        more = np.where(first_k[todo] > 0, k[todo] < first_k[todo] + choices - 1, k[todo] < last_k[todo])
        todo = todo[more]
        k[todo] += 1
    return [(results[u], float(best[u]), float(fewest[u])) for u in range(len(users))]


def _share_levels(feasible: np.ndarray):
    """Per batch the smallest feasible share and a few larger ones (more share = more interference slack)."""
    first = np.where(feasible.any(axis=1), feasible.argmax(axis=1), len(feasible[0]))
    for bi in sorted(range(feasible.shape[0]), key=lambda b: first[b])[:MAX_BATCHES]:
        idx = np.nonzero(feasible[bi])[0]
        if len(idx):
            for level in SHARE_LEVELS:
                if level < len(idx):
                    yield bi, idx[level]


def min_share_options(problem: ProvisioningProblem, wi: int) -> list[Option]:
    """Per (type, variant, batch, replicas) the smallest-share option: the configurations a greedy chooses among."""
    seen = {}
    for o in problem.options[wi]:
        key = (o.type_index, o.model, o.batch, o.replicas)
        if key not in seen or o.share < seen[key].share:
            seen[key] = o
    return sorted(seen.values(), key=lambda o: (problem.option_cost(o), o.share, o.pressure, o.batch))
