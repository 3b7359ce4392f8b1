"""Which runs to measure: the solo grid and a small, space-filling design of co-located pairs.

Pairs are O(number of models) (default 2 x models), not the full cross product. The design is a seeded
Latin-hypercube-style draw over (model pair, batch, share) for both members:
- model pairs: always two DIFFERENT models, each next pair chosen among those whose models have been used least
  (ties broken by the seeded RNG), so every model appears once there are >= ceil(models/2) pairs, and uses balance;
- batches: the 2 x pairs member slots take levels from a stratified sequence (every level repeated evenly, each block
  shuffled; the second member's column independently permuted), so every batch level appears once 2 x pairs >= levels;
- shares: each pair takes a (share_a, share_b) combination from a stratified sequence over all level combinations, so
  solo-like (100+100 on CPU), split (50+50) and asymmetric co-locations all appear;
- GPU (MPS): the two shares must sum to <= 100; a violating draw is repaired by lowering the larger share to the
  largest level that fits (or to 100 - the other share). CPU: shares may overlap (that is how interference is made);
- no duplicate runs (members in canonical order); deterministic for a given seed and inputs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Member:
    model: str
    batch: int
    share: float


@dataclass(frozen=True)
class PairRun:
    a: Member
    b: Member

    @property
    def members(self) -> tuple[Member, Member]:
        return self.a, self.b

    def rows_keys(self) -> list[tuple]:
        """The store's PAIR_KEY of the two rows this run writes."""
        return [(m.model, m.batch, float(m.share), p.model, p.batch, float(p.share))
                for m, p in ((self.a, self.b), (self.b, self.a))]

    @property
    def run_id(self) -> str:
        return f"pair:{self.a.model}/b{self.a.batch}/s{self.a.share:g}+{self.b.model}/b{self.b.batch}/s{self.b.share:g}"


def solo_grid(models: list[str], batches: list[int], shares: list[float]) -> list[Member]:
    """Every model x share x batch (grouped by model then share, so one server serves all batches of a share)."""
    return [Member(m, b, float(s)) for m in models for s in shares for b in batches]


def _stratified(levels: list, n: int, rng: np.random.Generator) -> list:
    reps = -(-n // len(levels))
    seq = []
    for _ in range(reps):  # each block is a permutation: levels are spread across the whole design
        seq += [levels[i] for i in rng.permutation(len(levels))]
    return seq[:n]


def _fit_gpu(share_a: float, share_b: float, levels: list[float]) -> tuple[float, float]:
    if share_a + share_b <= 100:
        return share_a, share_b
    small, big = sorted((share_a, share_b))
    fitting = [s for s in levels if s <= 100 - small]
    new_big = max(fitting) if fitting else 100 - small
    if new_big <= 0:  # both too big: split evenly at the largest level <= 50
        half = [s for s in levels if s <= 50]
        small = new_big = max(half) if half else 50.0
    return (small, new_big) if share_a <= share_b else (new_big, small)


def pair_design(models: list[str], batches: list[int], shares: list[float], n_pairs: int, seed: int = 0,
                gpu: bool = False) -> list[PairRun]:
    models = sorted(set(models))
    if n_pairs <= 0 or len(models) < 2:
        return []
    rng = np.random.default_rng(seed)
    combos = list(itertools.combinations(models, 2))
    levels_b, levels_s = sorted(set(batches)), sorted({float(s) for s in shares})
    slots = 2 * n_pairs
    batch_seq = _stratified(levels_b, slots, rng)
    batch_a, batch_b = batch_seq[:n_pairs], [batch_seq[n_pairs + i] for i in rng.permutation(n_pairs)]
    share_combos = [(x, y) for x in levels_s for y in levels_s if not gpu or x + y <= 100] or \
        [_fit_gpu(x, y, levels_s) for x in levels_s for y in levels_s]
    share_seq = _stratified(share_combos, n_pairs, rng)
    uses = dict.fromkeys(models, 0)
    combo_uses = dict.fromkeys(combos, 0)
    runs: list[PairRun] = []
    seen: set = set()
    attempts = 0
    while len(runs) < n_pairs and attempts < n_pairs * 50:
        attempts += 1
        best = min((uses[a] + uses[b], combo_uses[(a, b)]) for a, b in combos)
        candidates = [c for c in combos if (uses[c[0]] + uses[c[1]], combo_uses[c]) == best]
        a, b = candidates[rng.integers(len(candidates))]
        if attempts > n_pairs:  # stratified slots gave a duplicate: draw freely
            ba, bb = (int(rng.choice(levels_b)) for _ in range(2))
            sa, sb = (float(rng.choice(levels_s)) for _ in range(2))
        else:
            j = len(runs)  # batch columns: halves of one stratified sequence; shares: stratified over level pairs
            ba, bb, (sa, sb) = batch_a[j], batch_b[j], share_seq[j]
        if gpu:
            sa, sb = _fit_gpu(sa, sb, levels_s)
        run = PairRun(Member(a, int(ba), float(sa)), Member(b, int(bb), float(sb)))
        if run in seen:
            combo_uses[(a, b)] += 1  # steer the next draw elsewhere
            continue
        seen.add(run)
        runs.append(run)
        uses[a] += 1
        uses[b] += 1
        combo_uses[(a, b)] += 1
    return runs
