"""What every provisioning strategy takes and returns, and the checks they share.

A strategy (``Strategy``: a module with ``solve``) searches; what every interference-aware one needs afterwards is
done once around it (igniter.provisioning.solve): ``violations`` re-checks every GPU's co-located set with the full
perf_model.predict_sets + queueing model, ``repair`` fixes the misses, and the warm start replaces a worse result.
Packers reason with the linearised interference (perf_model.linear_terms, exact for additive models).
"""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import numpy as np

from igniter.errors import UserError
from igniter.provisioning import queueing
from igniter.provisioning.candidates import Option, ProvisioningProblem, min_share_options

EPS = 1e-6

try:  # the model stage's Member when present; same fields otherwise (perf models read .model/.batch/.share)
    from igniter.model import Member
except ImportError:  # pragma: no cover - only while the model stage is absent
    Member = namedtuple("Member", "model batch share")


@dataclass(frozen=True)
class Server:
    """One Triton server: one replica of one workload with its configuration (and share)."""
    workload: int
    replica: int
    option: Option


@dataclass
class Gpu:
    type_index: int
    servers: list[Server] = field(default_factory=list)

    def share(self) -> float:
        return sum(s.option.share for s in self.servers)

    def memory(self) -> float:
        return sum(s.option.memory_mb for s in self.servers)


@dataclass
class Assignment:
    gpus: list[Gpu]
    lower_bound: float
    status: str = "heuristic"            # "optimal", "feasible", "heuristic"
    details: dict = field(default_factory=dict)


class Strategy(Protocol):
    NAME: str

    def solve(self, problem: ProvisioningProblem, time_limit_s: float, warm: list[Gpu] | None) -> Assignment:
        """Place every server of ``problem``; ``warm``: a feasible solution to start from, when the registry gives
        one (the result is then compared with it)."""


def price(problem: ProvisioningProblem, gpus: list[Gpu]) -> float:
    """Price per hour of the GPUs (hosts) in use."""
    return sum(problem.types[g.type_index].price_per_hour for g in gpus if g.servers)


def accuracy_reward(problem: ProvisioningProblem, gpus: list[Gpu]) -> float:
    """Sum over workloads of the accuracy of the model serving them (replicas count once together)."""
    return sum(s.option.accuracy / s.option.replicas for g in gpus for s in g.servers)


def cost(problem: ProvisioningProblem, gpus: list[Gpu]) -> float:
    """The objective every strategy minimises: price less accuracy_weight x accuracy reward."""
    return price(problem, gpus) - problem.accuracy_weight * accuracy_reward(problem, gpus)


def memory_limit(problem: ProvisioningProblem, type_index: int) -> float:
    t = problem.types[type_index]
    return t.memory_mb or (t.perf_model.hardware or {}).get("memory_mb") or math.inf


def linear_latencies(options: list[Option]) -> list[float]:
    """Batch latency of each co-located option under the linearised interference model."""
    total = sum(o.pressure for o in options)
    n = len(options)
    return [o.solo_latency_ms * (1 + o.sensitivity * (total - o.pressure)) + o.sched_ms * (n - 1) for o in options]


def fits_linear(problem: ProvisioningProblem, type_index: int, options: list[Option]) -> bool:
    if sum(o.share for o in options) > 100 + EPS or sum(o.memory_mb for o in options) > memory_limit(problem, type_index):
        return False
    return all(lat <= o.max_latency_ms + EPS for lat, o in zip(linear_latencies(options), options))


def predicted(problem: ProvisioningProblem, gpus: list[Gpu]) -> list[list[dict]]:
    """Full-model prediction for every server: batch latency, throughput and p99 (queueing model)."""
    out: list[list[dict]] = [[] for _ in gpus]
    for ti, t in enumerate(problem.types):
        idx = [i for i, g in enumerate(gpus) if g.type_index == ti and g.servers]
        if not idx:
            continue
        sets = [[Member(s.option.model, s.option.batch, s.option.share) for s in gpus[i].servers] for i in idx]
        preds = [p for ps in t.perf_model.predict_sets(sets) for p in ps]
        options = [s.option for i in idx for s in gpus[i].servers]
        column = lambda name: np.array([getattr(o, name) for o in options], dtype=float)   # noqa: E731
        p99 = queueing.p99_latency_ms(np.array([p.latency_ms for p in preds]), column("batch"), column("rate"),
                                      column("occupancy"), column("extra_ms"), problem.latency_model,
                                      column("slowdown"))
        owner = [i for i in idx for _ in gpus[i].servers]
        for i, p, tail in zip(owner, preds, p99):
            out[i].append({"latency_ms": float(p.latency_ms), "throughput_rps": float(p.throughput_rps),
                           "p99_ms": float(tail)})
    return out


def violations(problem: ProvisioningProblem, gpus: list[Gpu]) -> list[tuple[int, int, float]]:
    """(gpu index, server index, predicted p99) for every server whose SLO the full model says is missed,
    plus share/memory overruns as (gpu, -1, value)."""
    bad = []
    for gi, (g, preds) in enumerate(zip(gpus, predicted(problem, gpus))):
        if g.share() > 100 + EPS:
            bad.append((gi, -1, g.share()))
        if g.memory() > memory_limit(problem, g.type_index) + EPS:
            bad.append((gi, -1, g.memory()))
        for si, (s, p) in enumerate(zip(g.servers, preds)):
            if p["p99_ms"] > problem.workloads[s.workload].slo_ms + EPS:
                bad.append((gi, si, p["p99_ms"]))
    return bad


def has_room(problem: ProvisioningProblem, gpus: list[Gpu], type_index: int) -> bool:
    """May one more GPU of this type be opened (the catalog's max_count is a hard limit)?"""
    limit = problem.types[type_index].max_count
    return limit is None or sum(1 for g in gpus if g.type_index == type_index and g.servers) < limit


def alternatives(problem: ProvisioningProblem, server: Server) -> Iterator[Server]:
    """The server as chosen, then (lazily: only when asked) the same replica on each other GPU type, at its
    cheapest smallest-share option there with the same replica count (so it carries the same rate): where to
    go when its type is full."""
    yield server
    types = {server.option.type_index}
    for o in min_share_options(problem, server.workload):
        if o.type_index not in types and o.replicas == server.option.replicas:
            types.add(o.type_index)
            yield Server(server.workload, server.replica, o)


def within_max_count(problem: ProvisioningProblem, gpus: list[Gpu]) -> bool:
    return all(t.max_count is None or sum(1 for g in gpus if g.type_index == ti and g.servers) <= t.max_count
               for ti, t in enumerate(problem.types))


def enforce_max_count(problem: ProvisioningProblem, gpus: list[Gpu]) -> None:
    """UserError when a plan uses more GPUs of a type than its max_count: the objective may not drop workloads,
    so what does not fit is refused with the figure."""
    for ti, t in enumerate(problem.types):
        used = sum(1 for g in gpus if g.type_index == ti and g.servers)
        if t.max_count is not None and used > t.max_count:
            raise UserError(f"the {len(problem.workloads)} workloads need {used} GPUs of type {t.type!r}, but its "
                            f"max_count is {t.max_count}",
                            "raise max_count in the GPU catalog, add another GPU type, or provision fewer or "
                            "lighter workloads", "GPU catalog")


def servers_of(problem: ProvisioningProblem, choice: list[Option]) -> list[Server]:
    """Expand one chosen option per workload into its replica servers."""
    return [Server(wi, r, o) for wi, o in enumerate(choice) for r in range(o.replicas)]


def repair(problem: ProvisioningProblem, gpus: list[Gpu], relocate=None, rounds: int = 40) -> int:
    """Fix servers the full model says miss their SLO: give them one more share step while the GPU has room,
    else take them off it: relocate(problem, gpus, [(origin gpu index, server)]) puts them elsewhere (in the
    first half of the rounds; a GPU of their own after that, or without relocate, so it ends). Every miss
    is fixed in the same round (one full-model check per round, not per fix). Returns how many fixes."""
    fixes = 0
    for round_ in range(rounds):
        bad = sorted({(gi, si) for gi, si, _ in violations(problem, gpus) if si >= 0}, reverse=True)
        if not bad:
            break
        moved: list[tuple[int, Server]] | None = [] if relocate and round_ < rounds // 2 else None
        for gi, si in bad:   # reverse order: deleting a server keeps the lower indices valid
            fixes += _fix(problem, gpus, gi, si, moved)
        if moved:
            relocate(problem, gpus, moved)
    return fixes


def _fix(problem: ProvisioningProblem, gpus: list[Gpu], gi: int, si: int, moved: list | None) -> int:
    g = gpus[gi]
    s = g.servers[si]
    r = problem.row(s.option)
    i = int(np.searchsorted(r["shares"], s.option.share + EPS))
    if i < len(r["shares"]) and g.share() - s.option.share + r["shares"][i] <= 100 + EPS and len(g.servers) > 1:
        g.servers[si] = Server(s.workload, s.replica, problem.with_share(s.option, i))
    elif len(g.servers) > 1:
        del g.servers[si]
        if moved is None:
            gpus.append(Gpu(g.type_index, [s]))
        else:
            moved.append((gi, s))
    elif i < len(r["shares"]):  # alone and still too slow: the candidate grid said it fits solo, so widen it
        g.servers[si] = Server(s.workload, s.replica, problem.with_share(s.option, i))
    else:
        return 0
    return 1
