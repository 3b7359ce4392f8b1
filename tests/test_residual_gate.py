"""The residual's gate against stores whose truth is known: the analytical model wrong in a known, learnable way.

The truth is the analytical model written out here (iGniter solo surface, L2 pressure, share-scaled sensitivity,
a scheduling delay) times a known extra factor. The gate (PerfModel._gated_residual: inner cross-validation picks
the residual's shrinkage weights) must
- turn the residual on, for seen and for unseen model combinations, when the extra factor depends only on what the
  features describe (a partner at batch 8 slows its co-runner down 30 %): the residual then transfers to a model
  pair never profiled together;
- keep it off for unseen combinations, and on for seen ones, when the factor belongs to one model pair (a with b):
  features cannot tell it apart, so applying it elsewhere would be wrong;
- keep it off when the store is the analytical truth plus measurement noise (nothing to learn).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from igniter.model.perfmodel import Member, PerfModel

SURFACE = {"a": [0.01, 2.0, 1.0, 5.0, 0.2], "b": [0.02, 6.0, 3.0, 2.0, 0.5], "c": [0.015, 4.0, 2.0, 3.0, 0.3]}
L2_PER_RPS = {"a": 4e-5, "b": 2e-5, "c": 3e-5}  # L2 fraction of peak per solo req/s
BASE, OWN_L2, SHARE_W, SCHED = 0.3, 2.0, 0.05, 0.01
STEP = 1.3
HARDWARE = {"kind": "gpu", "name": "synthetic"}
PROFILED = [("a", "a"), ("a", "b"), ("b", "c"), ("c", "c")]  # a with c never profiled together
UNSEEN_PROBES = [(("a", 2, 35.0), ("c", 8, 65.0)), (("a", 2, 35.0), ("c", 2, 65.0)), (("c", 4, 60.0), ("a", 8, 40.0))]
SEEN_PROBES = [(("a", 4, 30.0), ("b", 8, 70.0)), (("b", 2, 45.0), ("a", 8, 55.0))]


def solo(model, batch, share):
    k = SURFACE[model]
    lat = (k[0] * batch * batch + k[1] * batch + k[2]) / (share + k[3]) + k[4]
    rps = batch * 1000.0 / lat
    return lat, rps, L2_PER_RPS[model] * rps


def analytical(own, partner):
    lat, _, own_l2 = solo(*own)
    return lat * (1 + (BASE + OWN_L2 * own_l2 + SHARE_W * 100.0 / own[2]) * solo(*partner)[2]) + SCHED


def partner_at_batch_8(own, partner):
    return analytical(own, partner) * (STEP if partner[1] == 8 else 1.0)


def only_a_with_b(own, partner):
    return analytical(own, partner) * (STEP if {own[0], partner[0]} == {"a", "b"} else 1.0)


def solo_rows():
    rows = []
    for m, b, r in itertools.product(SURFACE, (1, 2, 4, 8), (20.0, 50.0, 100.0)):
        lat, rps, l2 = solo(m, b, r)
        rows.append({"model": m, "batch": b, "share": r, "throughput_rps": rps, "latency_mean_ms": lat,
                     "latency_p50_ms": lat, "latency_p99_ms": lat, "l2_util_pct": 100 * l2})
    return pd.DataFrame(rows)


def pair_rows(truth, combos, noise=0.0):
    rng = np.random.default_rng(1)
    rows = []
    for (m, p), b, pb, r in itertools.product(combos, (1, 4, 8), (1, 4, 8), (20.0, 50.0, 80.0)):
        for own, partner in (((m, b, r), (p, pb, 100.0 - r)), ((p, pb, 100.0 - r), (m, b, r))):  # both measured
            lat = truth(own, partner) * math.exp(noise * rng.standard_normal())
            rows.append({"model": own[0], "batch": own[1], "share": own[2], "partner": partner[0],
                         "partner_batch": partner[1], "partner_share": partner[2], "throughput_rps": own[1] * 1000 / lat,
                         "latency_mean_ms": lat, "latency_p50_ms": lat, "latency_p99_ms": lat})
    return pd.DataFrame(rows)


def fitted(truth, combos, noise=0.0):
    pairs = pair_rows(truth, combos, noise)
    return (PerfModel.fit_frames(solo_rows(), pairs, HARDWARE),
            PerfModel.fit_frames(solo_rows(), pairs, HARDWARE, use_residual=False))


def latency(pm, own, partner):
    return pm.predict([Member(*own), Member(*partner)])[0].latency_ms


def mean_error(pm, truth, probes):
    return float(np.mean([abs(latency(pm, own, partner) / truth(own, partner) - 1.0) for own, partner in probes]))


@pytest.fixture(scope="module")
def learnable():
    return fitted(partner_at_batch_8, PROFILED)


def test_a_learnable_effect_turns_the_residual_on_and_it_transfers_to_an_unseen_pair(learnable):
    full, plain = learnable
    assert full.seen_sets == [["a", "a"], ["a", "b"], ["b", "c"], ["c", "c"]]
    assert full.residual.weight_unseen >= 0.5 and full.residual.weight_seen >= 0.5
    # a with c was never profiled: the analytical fit misses the step by 6 to 14 %, the residual nearly closes it
    assert mean_error(plain, partner_at_batch_8, UNSEEN_PROBES) > 0.06
    assert mean_error(full, partner_at_batch_8, UNSEEN_PROBES) < 0.03
    assert mean_error(plain, partner_at_batch_8, SEEN_PROBES) > 0.1
    assert mean_error(full, partner_at_batch_8, SEEN_PROBES) < 0.03


def test_the_gate_works_with_two_profiled_model_pairs():
    full, plain = fitted(partner_at_batch_8, [("a", "b"), ("b", "c")])
    assert full.residual.weight_unseen >= 0.5 and full.residual.weight_seen >= 0.5
    assert mean_error(full, partner_at_batch_8, SEEN_PROBES) < 0.5 * mean_error(plain, partner_at_batch_8, SEEN_PROBES)


def test_an_effect_of_one_model_pair_stays_off_for_unseen_pairs_and_on_for_that_pair():
    full, plain = fitted(only_a_with_b, [("a", "a"), ("a", "b"), ("b", "b")])
    assert full.residual.weight_unseen == 0.0 and full.residual.weight_seen >= 0.5
    for own, partner in UNSEEN_PROBES:  # a with c: the residual is not applied at all
        assert latency(full, own, partner) == latency(plain, own, partner)
    assert mean_error(plain, only_a_with_b, SEEN_PROBES) > 0.1
    assert mean_error(full, only_a_with_b, SEEN_PROBES) < 0.03


def test_measurement_noise_alone_keeps_the_residual_off():
    full, plain = fitted(analytical, PROFILED, noise=0.03)
    assert full.residual is not None
    assert full.residual.weight_unseen == 0.0 and full.residual.weight_seen <= 0.1
    for own, partner in UNSEEN_PROBES + SEEN_PROBES:
        assert latency(full, own, partner) == pytest.approx(latency(plain, own, partner), rel=0.01)


def test_inner_folds_are_model_pairs_and_batch_combinations_mod_five(monkeypatch):
    """The gate's two inner cross-validations, hand-worked: unseen = leave one model pair out (the pair's names
    sorted, so b-with-a is a/b), seen = batch combinations (sorted, so 8-with-1 is (1, 8)) dealt round-robin into
    5 folds in sorted order: (1,1) (1,4) (1,8) (4,4) (4,8) (8,8) -> 0 1 2 3 4 0."""
    groupings = []
    monkeypatch.setattr(PerfModel, "_inner_weight", lambda self, pairs, groups: groupings.append(list(groups)) or 0.5)
    pairs = pair_rows(analytical, [("b", "a"), ("c", "c")])
    full = PerfModel.fit_frames(solo_rows(), pairs, HARDWARE)
    assert (full.residual.weight_unseen, full.residual.weight_seen) == (0.5, 0.5)
    unseen, seen = groupings
    assert unseen == ["a/b" if {m, p} == {"a", "b"} else "c/c" for m, p in zip(pairs["model"], pairs["partner"])]
    fold = {(1, 1): 0, (1, 4): 1, (1, 8): 2, (4, 4): 3, (4, 8): 4, (8, 8): 0}
    assert seen == [fold[tuple(sorted((b, pb)))] for b, pb in zip(pairs["batch"], pairs["partner_batch"])]


def test_an_inner_fold_with_too_few_rows_to_train_on_adds_no_correction():
    """a with b fully profiled, c with c at batch 1 only (6 rows): leaving a/b out leaves 6 training rows, under the
    residual's 20, so that fold gets no correction (the analytical model alone) instead of failing the fit."""
    pairs = pair_rows(partner_at_batch_8, [("a", "b"), ("c", "c")])
    pairs = pairs[(pairs["model"] != "c") | ((pairs["batch"] == 1) & (pairs["partner_batch"] == 1))]
    assert len(pairs[pairs["model"] == "c"]) == 6
    full = PerfModel.fit_frames(solo_rows(), pairs.reset_index(drop=True), HARDWARE)
    assert full.residual is not None and full.seen_sets == [["a", "b"], ["c", "c"]]
    assert full.residual.weight_unseen in np.linspace(0.0, 1.0, 11).tolist()
