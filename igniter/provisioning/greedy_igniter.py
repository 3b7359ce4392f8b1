"""The published iGniter greedy, reimplemented (Xu et al., TPDS 2023, Alg. 1).

Per workload the smallest share meeting its SLO solo with the batch that needs it; servers sorted by that share,
largest first; each goes to the GPU where the extra share needed because of interference (its own and the
residents' share increases) is smallest, a new GPU when none can take it. Interference is the perf model's
linearised form; afterwards (igniter.provisioning.solve) the full model re-checks every GPU and ``repair`` fixes
any miss, re-inserting the servers it takes off a GPU with ``relocate`` (this greedy's rule).
"""

from __future__ import annotations

import numpy as np

from igniter.provisioning.candidates import ProvisioningProblem, min_share_options
from igniter.provisioning.strategy import EPS, Assignment, Gpu, Server, alternatives, has_room, memory_limit, servers_of

NAME = "igniter"
SHORTLIST = 4
CHUNK = 16          # placements evaluated together (vectorised); most servers settle within the first chunk


def solve(problem: ProvisioningProblem, time_limit_s: float = 0.0, warm: list[Gpu] | None = None) -> Assignment:
    """The greedy's GPUs, over a type's max_count where nothing else fits (igniter.provisioning.solve refuses such
    a plan; as the ILP's warm start it may be)."""
    choice = [min_share_options(problem, wi)[0] for wi in range(len(problem.workloads))]
    problem.prefetch_rows(choice)
    gpus = pack(problem, servers_of(problem, choice))
    return Assignment([g for g in gpus if g.servers], problem.share_lower_bound(), "heuristic")


def relocate(problem: ProvisioningProblem, gpus: list[Gpu], moved: list[tuple[int, Server]]) -> None:
    """Re-insert servers repair took off a GPU, by the same rule, anywhere but the GPU they came from."""
    pack(problem, [s for _, s in moved], gpus, {(s.workload, s.replica): gi for gi, s in moved})


def pack(problem: ProvisioningProblem, servers: list[Server], gpus: list[Gpu] | None = None,
         avoid: dict | None = None) -> list[Gpu]:
    """Insert servers (largest share first) into gpus (extended in place; new when None), each where the extra
    share it causes is smallest; avoid maps (workload, replica) to a GPU index it must not go to."""
    gpus = [] if gpus is None else gpus
    avoid = avoid or {}
    load = np.array([[g.share(), sum(m.option.pressure for m in g.servers), len(g.servers), g.type_index]
                     for g in gpus]).reshape(len(gpus), 4)   # per GPU: share, pressure, servers, type index
    for server in sorted(servers, key=lambda s: (-s.option.share, s.workload, s.replica)):
        for s in alternatives(problem, server):   # its own type first; another one when that is at max_count
            best = _best_placement(problem, gpus, load, s, avoid)
            if best is not None or has_room(problem, gpus, s.option.type_index):
                break
        else:
            s, best = server, None                # over max_count: enforce_max_count refuses the plan
        if best is None:
            gpus.append(Gpu(s.option.type_index, [s]))
            load = np.vstack([load, [s.option.share, s.option.pressure, 1, s.option.type_index]])
        else:
            g = gpus[best[1]]
            g.servers = best[2]
            load[best[1]] = [g.share(), sum(m.option.pressure for m in g.servers), len(g.servers), g.type_index]
    return gpus


def _best_placement(problem: ProvisioningProblem, gpus: list[Gpu], load: np.ndarray, s: Server, avoid: dict):
    """(extra share, GPU index, its new servers) of the best existing GPU for s, or None."""
    best, found = None, 0
    tries = [gi for gi in _shortlist(problem, gpus, load, s) if avoid.get((s.workload, s.replica)) != gi]
    shares = problem.row(s.option)["shares"]
    for lo in range(0, len(tries), CHUNK):
        chunk = tries[lo:lo + CHUNK]
        for gi, (members, start, at, fits) in zip(chunk, _place(problem, [gpus[gi].servers for gi in chunk], s)):
            if not fits or found >= SHORTLIST:
                continue
            found += 1
            placed_shares = (m.option.share if at[i] == start[i] else float(shares[at[i]])
                             for i, m in enumerate(members))
            extra = sum(placed_shares) - gpus[gi].share() - s.option.share
            if best is None or extra < best[0] - EPS:
                best = (extra, gi, (members, start, at))
        if found >= SHORTLIST:
            break
    # the new servers only for the winner (building them for every fitting GPU was a third of the greedy's time)
    return None if best is None else (best[0], best[1], _at_shares(problem, *best[2]))


def _shortlist(problem: ProvisioningProblem, gpus: list[Gpu], load: np.ndarray, s: Server) -> list[int]:
    """GPUs worth a full placement attempt: the right type, room for the new server's own interference-raised
    share, by that estimate; the caller stops after SHORTLIST successful placements. (The published greedy tries
    every GPU; on small instances this is the same, on thousands of GPUs it keeps the greedy linear-time.)"""
    if not gpus:
        return []
    r = problem.row(s.option)
    lat = r["latency"][None, :] * (1 + r["sensitivity"][None, :] * load[:, 1:2]) + r["sched"][None, :] * load[:, 2:3]
    ok = (lat <= r["max_latency"][None, :] + EPS) & (r["max_latency"][None, :] > 0)
    need = np.where(ok.any(axis=1), r["shares"][ok.argmax(axis=1)], np.inf)
    est = np.where((load[:, 3] == s.option.type_index) & (load[:, 0] + need <= 100 + EPS), need, np.inf)
    order = np.lexsort((load[:, 0], est))   # ties (the grid is coarse): the emptiest GPU first, it fits most often
    return order[np.isfinite(est[order])].tolist()


def place(problem: ProvisioningProblem, groups: list[list[Server]], new: Server,
          rounds: int = 8) -> list[list[Server] | None]:
    """Per group of residents (one GPU each): residents + new with every share raised just enough to absorb the
    interference, or None if they cannot fit (_place)."""
    return [_at_shares(problem, members, start, at) if fits else None
            for members, start, at, fits in _place(problem, groups, new, rounds)]


def _place(problem: ProvisioningProblem, groups: list[list[Server]], new: Server, rounds: int = 8) -> list[tuple]:
    """Per group of residents (one GPU each): (residents + new, their start and settled grid share indices,
    whether they fit) with every share raised just enough to absorb the interference. Shares only grow from where they are (a resident's is never
    shrunk); each round every member takes the smallest grid share meeting its SLO next to the others'
    current pressure (linearised interference). Vectorised over the groups, padded to the largest; padding
    members have no latency, pressure or share, so they always fit and change nothing."""
    sets = [[*residents, new] for residents in groups]
    shares = problem.row(new.option)["shares"]
    counts = np.array([len(m) for m in sets])
    size = counts.max()
    flat = [m for members in sets for m in members]
    at_group = np.repeat(np.arange(len(sets)), counts)            # flat member -> (group, slot): one scatter,
    at_slot = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)   # not a stack per group
    terms = np.zeros((len(sets), size, 5, len(shares)))
    terms[:, :, 4] = 1.0
    terms[at_group, at_slot] = np.stack([problem.row(m.option)["terms"] for m in flat])
    start = np.zeros((len(sets), size), dtype=int)
    start[at_group, at_slot] = np.searchsorted(shares, np.array([m.option.share for m in flat]) - EPS)
    real = np.arange(size)[None, :] < counts[:, None]
    limit = memory_limit(problem, new.option.type_index)
    alive = np.array([sum(m.option.memory_mb for m in members) <= limit for members in sets])
    lat, sens, press, sched, lmax = np.moveaxis(terms, 2, 0)
    partners = np.array([len(m) - 1 for m in sets])[:, None, None]
    steps = np.arange(len(shares))
    at, settled = start, np.zeros(len(sets), dtype=bool)
    for _ in range(rounds):
        own = np.take_along_axis(press, at[:, :, None], 2)[:, :, 0]
        partner = own.sum(1, keepdims=True) - own
        ok = ((lat * (1 + sens * partner[:, :, None]) + sched * partners <= lmax + EPS) & (lmax > 0)
              & (steps >= at[:, :, None]))
        alive &= ok.any(2).all(1)
        moved = np.where(ok.any(2), ok.argmax(2), at)
        alive &= (shares[moved] * real).sum(1) <= 100 + EPS
        settled = (moved == at).all(1)
        if (settled | ~alive).all():
            break
        at = moved
    return [(members, start[c], at[c], bool(alive[c] and settled[c])) for c, members in enumerate(sets)]


def _at_shares(problem: ProvisioningProblem, members: list[Server], start, at) -> list[Server]:
    """Members moved to grid share indices `at` (those still at `start` kept as they are)."""
    return [m if at[i] == start[i] else Server(m.workload, m.replica, problem.with_share(m.option, int(at[i])))
            for i, m in enumerate(members)]
