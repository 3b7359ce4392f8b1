"""Interference-blind first-fit decreasing: each workload at its smallest solo share, servers sorted by share
(largest first), first GPU whose summed share and memory still fit. Co-location slowdowns are ignored, so the
full-model check usually finds SLO misses: this is the baseline that shows what interference costs, so the
registry (igniter.provisioning.STRATEGIES) keeps its plan as packed instead of repairing it."""

from __future__ import annotations

from igniter.provisioning.candidates import ProvisioningProblem, min_share_options
from igniter.provisioning.strategy import EPS, Assignment, Gpu, alternatives, has_room, memory_limit, servers_of

NAME = "ffd"


def solve(problem: ProvisioningProblem, time_limit_s: float = 0.0, warm: list[Gpu] | None = None) -> Assignment:
    choice = [min_share_options(problem, wi)[0] for wi in range(len(problem.workloads))]
    gpus: list[Gpu] = []
    for s in sorted(servers_of(problem, choice), key=lambda s: (-s.option.share, s.workload, s.replica)):
        for alt in alternatives(problem, s):   # its own type first; another one when that is at max_count
            o = alt.option
            target = next((g for g in gpus if g.type_index == o.type_index and g.share() + o.share <= 100 + EPS
                           and g.memory() + o.memory_mb <= memory_limit(problem, o.type_index)), None)
            if target is not None:
                target.servers.append(alt)
                break
            if has_room(problem, gpus, o.type_index):
                gpus.append(Gpu(o.type_index, [alt]))
                break
        else:
            gpus.append(Gpu(s.option.type_index, [s]))   # over max_count: igniter.provisioning.solve refuses it
    return Assignment(gpus, problem.share_lower_bound(), "heuristic")
