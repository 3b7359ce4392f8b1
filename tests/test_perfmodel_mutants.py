"""PerfModel against closed forms: a model built by hand from known coefficients (no fitting), whose every prediction
is the docstring's formula written out here; fitting checked on exact synthetic stores; the model file's refusals.

Written to kill mutmut's survivors in igniter/model/perfmodel.py (docs/testing.md).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest

from igniter.errors import UserError
from igniter.model import analytical, perfmodel
from igniter.model.perfmodel import Member, ModelFit, PerfModel

K = {"a": [0.01, 2.0, 1.0, 5.0, 0.2], "b": [0.02, 6.0, 3.0, 2.0, 0.5]}  # iGniter solo surfaces
L2_PER_RPS = {"a": 4e-5, "b": 2e-5}      # L2 fraction of peak per solo req/s
PIPELINING = {"a": 0.1, "b": 0.0}        # log(measured rps / (batch * 1000 / latency))
KERNELS = {"a": 3.0, "b": 10.0}
BASE, OWN, SHARE_W, SCHED, CLOCK = 0.3, 2.0, 0.05, 0.01, 0.002
IDLE, TDP = 50.0, 300.0
POWER = {"a": 150.0, "b": 100.0}         # W above idle, flat over batch and share


def flat(value: float, batches=(1, 8), shares=(10.0, 100.0)) -> analytical.Grid:
    return analytical.Grid(list(batches), [list(shares)] * len(batches), [[value] * len(shares)] * len(batches))


def hand_model(correction=None, power=True) -> PerfModel:
    fits = {m: ModelFit(K[m], flat(0.0), flat(PIPELINING[m]), {"l2": flat(L2_PER_RPS[m])},
                        {1: 100.0, 4: 130.0, 8: 150.0} if m == "a" else {},
                        flat(POWER[m]) if power else None, KERNELS[m], (correction or {}).get(m, 0.0))
            for m in K}
    inter = analytical.Interference(["l2"], [1.0], BASE, [OWN], SHARE_W, SCHED, CLOCK)
    return PerfModel({"kind": "gpu", "name": "hand", "idle_power_w": IDLE, "tdp_w": TDP}, fits, inter,
                     seen_sets=[["a", "b"]])


def surface(m, b, r):
    k = K[m]
    return (k[0] * b * b + k[1] * b + k[2]) / (r + k[3]) + k[4]


def solo(m, b, r):
    """(latency ms, req/s, L2 demand): the surface falls with the share, so the monotone floor is the surface."""
    lat = surface(m, b, r)
    rps = b * 1000.0 / lat * math.exp(PIPELINING[m])
    return lat, rps, L2_PER_RPS[m] * rps


def colocated(members: list[Member], correction=None, power=True, kernels=None) -> list[float]:
    kernels = kernels or KERNELS
    out = []
    for i, (m, b, r) in enumerate(members):
        lat, _, own_l2 = solo(m, b, r)
        partners = [x for j, x in enumerate(members) if j != i]
        pressure = sum(solo(*p)[2] for p in partners)
        sensitivity = BASE + OWN * own_l2 + SHARE_W * 100.0 / r
        own_w = IDLE + POWER[m]
        total_w = own_w + sum(POWER[p.model] for p in partners)
        excess = (max(0.0, total_w - TDP) - max(0.0, own_w - TDP)) if power else 0.0
        latency = lat * (1 + sensitivity * pressure + CLOCK * excess) + SCHED * kernels[m] * len(partners)
        out.append(latency * math.exp((correction or {}).get(m, 0.0)))
    return out


SETS = [[Member("a", 4, 30.0)], [Member("a", 4, 30.0), Member("b", 8, 50.0)],
        [Member("b", 2, 25.0), Member("a", 1, 40.0), Member("b", 8, 35.0)], [Member("b", 3, 17.5), Member("b", 3, 80.0)]]


@pytest.mark.parametrize("power", [True, False])
def test_predictions_are_the_closed_form(power):
    corr = {"a": 0.2, "b": -0.1}
    pm = hand_model(corr, power=power)
    got = pm.predict_sets(SETS)
    for members, predictions in zip(SETS, got):
        want = colocated(members, corr, power)
        assert [p.latency_ms for p in predictions] == pytest.approx(want, rel=1e-9)
        for m, p in zip(members, predictions):
            assert (p.model, p.batch, p.share) == (m.model, m.batch, m.share)
            assert type(p.batch) is int and type(p.share) is float and type(p.latency_ms) is float
            _, rps, _ = solo(m.model, m.batch, m.share)
            # throughput falls as latency grows over solo (the correction is in the latency only)
            assert p.throughput_rps == pytest.approx(rps * surface(m.model, m.batch, m.share) / p.latency_ms, rel=1e-9)
    assert pm.predict(SETS[1]) == got[1]
    assert pm.predict_sets([[], SETS[0]])[0] == [] and pm.predict_sets([[]]) == [[]] and pm.predict_sets([]) == []


def test_linear_terms_are_the_closed_form():
    pm = hand_model({"a": 0.5})
    t = pm.linear_terms("a", 4, 30.0)
    lat, rps, l2 = solo("a", 4, 30.0)
    scale = math.exp(0.5)
    assert tuple(t) == pytest.approx((lat * scale, rps / scale, BASE + OWN * l2 + SHARE_W * 100 / 30.0, l2,
                                      SCHED * KERNELS["a"] * scale), rel=1e-12)
    assert all(type(v) is float for v in t)
    many = pm.linear_terms_many(["a", "b"], [4, 8], [30.0, 50.0])
    assert [float(x) for x in many.pressure] == pytest.approx([l2, solo("b", 8, 50.0)[2]], rel=1e-12)


def test_monotone_solo_latency_takes_the_least_over_smaller_shares():
    """Constant surface 10 ms, measured corrections x1 at 50 %, x0.5 at 80 %, x0.8 at 100 % (a noisy table)."""
    fit = ModelFit([0.0, 0.0, 0.0, 0.0, 10.0], analytical.Grid([1], [[50.0, 80.0, 100.0]],
                                                               [[0.0, math.log(0.5), math.log(0.8)]]),
                   flat(0.0), {}, {})
    shares = np.array([30.0, 50.0, 60.0, 80.0, 90.0, 100.0, 50.5])
    got = perfmodel._monotone_solo_ms(fit, 1, shares)
    assert got == pytest.approx([10.0, 10.0, 10 * 0.5 ** (1 / 3), 5.0, 5.0, 5.0, 10 * 0.5 ** (0.5 / 30)], rel=1e-12)
    # the raw table value at 90 % is 10 * sqrt(0.4), not the floor
    assert perfmodel._raw_solo_ms(fit, 1, np.array([90.0])) == pytest.approx([10 * math.sqrt(0.4)])
    assert perfmodel._monotone_solo_ms(fit, 1, np.array([1.0, 0.5])) == pytest.approx([10.0, 10.0])


def test_monotone_solo_latency_counts_the_step_just_below_the_share():
    """Corrections x1 at 50 %, x0.5 at 99 %, x0.8 at 100 %: at 100 % the least is the 99 % step's 5 ms (the 98 %
    step is 10 * 0.5^(48/49) = 5.07 ms)."""
    fit = ModelFit([0.0, 0.0, 0.0, 0.0, 10.0], analytical.Grid([1], [[50.0, 99.0, 100.0]],
                                                               [[0.0, math.log(0.5), math.log(0.8)]]),
                   flat(0.0), {}, {})
    assert perfmodel._monotone_solo_ms(fit, 1, np.array([100.0, 99.5])) == pytest.approx([5.0, 5.0], rel=1e-12)


def test_memory_hand_worked():
    pm = hand_model()
    assert pm.memory_mb("a", 2) == pytest.approx(110.0) and pm.memory_mb("a", 8) == pytest.approx(150.0)
    assert pm.memory_mb("a", 1) == 100.0 and pm.memory_mb("a", 4) == 130.0  # profiled batches: measured values
    assert pm.memory_mb("a", 16) == pytest.approx(190.0)      # 5 MB per batch beyond 8
    assert pm.memory_mb("b", 4) is None
    pm.fits["b"].memory = {2: 100.0, 4: 120.0}
    assert pm.memory_mb("b", 1) == pytest.approx(90.0) and type(pm.memory_mb("b", 3)) is float
    pm.fits["b"].memory = {2: 10.0, 4: 100.0}
    assert pm.memory_mb("b", 1) == 0.0                         # extrapolated below zero: none
    pm.fits["b"].memory = {4: 100.0}
    assert pm.memory_mb("b", 1) == 100.0 and pm.memory_mb("b", 64) == 100.0


def test_api_lists():
    pm = hand_model()
    pm.fits["a"].latency = analytical.Grid([1, 4], [[50.0, 10.0], [20.0, 100.0]], [[0, 0], [0, 0]])
    assert pm.models == ["a", "b"] and pm.batches("a") == [1, 4] and pm.shares("a") == [10.0, 20.0, 50.0, 100.0]
    assert pm.pressure_metric == "l2"
    pm.interference.metrics = ["l2", "dram"]
    assert pm.pressure_metric == "l2+dram"


@pytest.mark.parametrize("member,needle", [(("zz", 1, 50.0), "unknown model 'zz'"),
                                           (("a", "x", 50.0), "batch and share of a must be numbers"),
                                           (("a", 2, None), "batch and share of a must be numbers"),
                                           (("a", 2.5, 50.0), "batch 2.5 of a is not a whole number >= 1"),
                                           (("a", 0, 50.0), "batch 0 of a"),
                                           (("a", 1, 0.0), "share 0.0 of a is outside (0, 100]"),
                                           (("a", 1, 100.5), "share 100.5 of a")])
def test_bad_members_are_one_line(member, needle):
    with pytest.raises(UserError) as caught:
        hand_model().predict([Member(*member)])
    assert needle in caught.value.what
    fixes = {"unknown": "use one of the profiled models: a, b", "batch and": "write MODEL:BATCH:SHARE",
             "batch ": "use a batch size >= 1", "share": "give the share as a percentage"}
    assert caught.value.fix == next(fix for start, fix in fixes.items() if needle.startswith(start))


def test_whole_numbers_given_as_floats_and_full_share_are_accepted():
    pm = hand_model()
    p = pm.predict([Member("a", 4.0, "100")])[0]
    assert (p.batch, p.share) == (4, 100.0) and type(p.batch) is int
    assert pm.predict([Member("a", 1, 1.0)])[0].share == 1.0 and pm.predict([Member("a", 1, 0.5)])[0].share == 0.5
    assert p.latency_ms == pytest.approx(solo("a", 4, 100.0)[0])


def test_seen_sets_are_model_combinations_in_any_order():
    pm = hand_model()
    seen = pm._seen(["b", "a", "a", "a", "b", "b", "a"], np.array([0, 0, 1, 1, 2, 2, 2]))
    assert seen.tolist() == [True, True, False, False, False, False, False]


def test_clock_needs_idle_power_tdp_and_a_power_table():
    pm = hand_model()
    assert pm._clock() == (IDLE, TDP, CLOCK)
    assert hand_model(power=False)._clock() == (0.0, 0.0, 0.0)
    pm.hardware = {"kind": "gpu", "idle_power_w": IDLE}
    assert pm._clock() == (0.0, 0.0, 0.0)
    pm.hardware = {"kind": "gpu", "tdp_w": TDP, "imported": {"hardware": {"idlepower": 40}}}
    assert pm._clock() == (40.0, TDP, CLOCK)
    pm.hardware = {"kind": "gpu", "tdp_w": TDP}
    assert pm._clock() == (0.0, 0.0, 0.0)
    assert perfmodel._idle_w({"idle_power_w": 0.0, "imported": {"hardware": {"idlepower": 40}}}) == 0.0


def test_demand_share_metric_is_the_share_as_a_fraction():
    pm = hand_model()
    pm.interference = analytical.Interference(["share", "l2"], [1.0, 2.0], 0.1, [0.0, 0.0])
    members = pm._members([Member("a", 4, 30.0), Member("b", 8, 50.0)], np.array([0, 0]))
    l2 = [solo("a", 4, 30.0)[2], solo("b", 8, 50.0)[2]]
    assert np.allclose(members.demand, [[0.3, l2[0]], [0.5, l2[1]]], rtol=1e-12)
    assert members.pressure == pytest.approx([0.3 + 2 * l2[0], 0.5 + 2 * l2[1]])
    assert np.isnan(members.dram).all() and members.sched_ms.tolist() == [0.0, 0.0]


def test_update_is_an_exponentially_weighted_log_correction():
    pm = hand_model()
    lat_a = solo("a", 4, 30.0)[0]
    pair = colocated([Member("a", 4, 30.0), Member("b", 8, 50.0)])[0]
    solo_obs = pd.DataFrame([{"model": "a", "batch": 4, "share": 30.0, "latency_mean_ms": 2 * lat_a}])
    pair_obs = pd.DataFrame([{"model": "a", "batch": 4, "share": 30.0, "partner": "b", "partner_batch": 8,
                              "partner_share": 50.0, "latency_mean_ms": 3 * pair}])
    pm.update(solo_obs)
    assert pm.fits["a"].correction == pytest.approx(0.3 * math.log(2), rel=1e-9)
    pm.update(pair_obs)  # the correction of the observed model only, measured against its co-located prediction
    assert pm.fits["a"].correction == pytest.approx(0.7 * 0.3 * math.log(2) + 0.3 * math.log(3), rel=1e-9)
    assert pm.fits["b"].correction == 0.0
    pm.update(solo_obs, rate=1.0)
    assert pm.fits["a"].correction == pytest.approx(math.log(2), rel=1e-9)
    assert perfmodel.UPDATE_RATE == 0.3


def test_update_with_boost_rounds_continues_the_residual():
    from igniter.model import residual
    from igniter.model.features import FEATURES
    pm = hand_model()
    pm.update(pd.DataFrame([{"model": "b", "batch": 2, "share": 40.0, "latency_mean_ms": 4 * solo("b", 2, 40.0)[0]}]),
              boost_rounds=3, rate=0.5)  # no residual: the rounds are skipped
    assert pm.fits["b"].correction == pytest.approx(0.5 * math.log(4), rel=1e-9)
    pm.residual = residual.train(np.random.default_rng(0).uniform(0, 1, (25, len(FEATURES))), np.zeros(25), rounds=2)
    pm.update(pd.DataFrame([{"model": "a", "batch": 4, "share": 30.0, "latency_mean_ms": solo("a", 4, 30.0)[0]}]),
              boost_rounds=4)
    assert pm.residual.booster.num_boosted_rounds() == 6


def test_model_file_round_trip_hand_built(tmp_path):
    pm = hand_model({"a": 0.25})
    path = tmp_path / "m.json"
    pm.save(path)
    text = path.read_text()
    assert text.endswith("}\n") and json.loads(text) == json.loads(json.dumps(pm.to_dict()))
    data = json.loads(text)
    assert data["format"] == "igniter-perf-model" and data["version"] == 2 and data["residual"] is None
    assert data["models"]["a"]["memory"] == {"1": 100.0, "4": 130.0, "8": 150.0} and data["models"]["b"]["power"]
    assert data["seen_sets"] == [["a", "b"]] and data["hardware"]["tdp_w"] == TDP
    back = PerfModel.load(path)
    assert back.predict_sets(SETS) == pm.predict_sets(SETS)
    assert back.fits["a"].memory == {1: 100.0, 4: 130.0, 8: 150.0} and back.fits["a"].correction == 0.25
    assert back.fits["a"].kernels == KERNELS["a"] and back.seen_sets == [["a", "b"]]
    no_power = hand_model(power=False)
    no_power.save(path)
    assert PerfModel.load(path).fits["a"].power is None
    assert json.loads(path.read_text())["models"]["a"]["power"] is None
    assert text == json.dumps(pm.to_dict(), indent=1, sort_keys=True) + "\n"


def broken(tmp_path, change) -> str:
    data = hand_model().to_dict()
    change(data)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as caught:
        PerfModel.load(path)
    return f"{caught.value.what} | {caught.value.fix} | {caught.value.where}"


def test_model_file_refusals(tmp_path):
    with pytest.raises(UserError) as caught:
        PerfModel.load(tmp_path / "none.json")
    assert caught.value.what == "the performance model file does not exist"
    assert caught.value.fix == "run igniter fit --out FILE first"
    assert "not an igniter-perf-model version 2 file" in broken(tmp_path, lambda d: d.update(version=1))
    assert "not an igniter-perf-model version 2 file" in broken(tmp_path, lambda d: d.update(format="x"))
    line = broken(tmp_path, lambda d: d["models"]["a"]["latency"].update(batches=[8, 1]))
    assert "batches and shares must be sorted" in line and "re-run igniter fit" in line
    assert "sorted" in broken(tmp_path, lambda d: d["models"]["a"]["latency"].update(shares=[[100.0, 10.0]] * 2))
    assert "sorted" in broken(tmp_path, lambda d: d["models"]["a"]["latency"].update(batches=[1, 1]))
    assert "one entry per batch" in broken(tmp_path, lambda d: d["models"]["a"]["latency"].update(batches=[1]))
    assert "one entry per batch" in broken(tmp_path, lambda d: d["models"]["a"]["latency"].update(values=[[0.0, 0.0]]))
    assert "one value per share" in broken(tmp_path,
                                          lambda d: d["models"]["a"]["latency"].update(values=[[0.0], [0.0, 0.0]]))
    assert "one weight per metric" in broken(tmp_path, lambda d: d["interference"].update(pressure_weights=[1.0, 2.0]))
    assert "one weight per metric" in broken(tmp_path, lambda d: d["interference"].update(own_weights=[]))
    assert "m.json" in broken(tmp_path, lambda d: d["models"]["a"].update(correction=51.0))


def test_a_model_file_with_equal_shares_in_a_row_loads(tmp_path):
    pm = hand_model()
    pm.fits["a"].pipelining = analytical.Grid([1], [[50.0, 50.0]], [[0.0, 0.0]])
    pm.save(tmp_path / "m.json")
    assert PerfModel.load(tmp_path / "m.json").fits["a"].pipelining.shares == [[50.0, 50.0]]
    pm.interference.own_weights = None
    pm.save(tmp_path / "m.json")
    assert PerfModel.load(tmp_path / "m.json").interference.own_weights is None


def residual_file(tmp_path, change) -> str:
    from igniter.model import residual
    from igniter.model.features import FEATURES
    x = np.random.default_rng(0).uniform(1, 2, (25, len(FEATURES)))
    pm = hand_model()
    pm.residual = residual.train(x, np.full(25, 0.1), rounds=2)
    data = pm.to_dict()
    change(data["residual"])
    (tmp_path / "r.json").write_text(json.dumps(data))
    try:
        PerfModel.load(tmp_path / "r.json")
    except UserError as err:
        return f"{err.what} | {err.where}"
    return "loaded"


def test_residual_file_refusals(tmp_path):
    assert residual_file(tmp_path, lambda r: None) == "loaded"
    assert "features differ" in residual_file(tmp_path, lambda r: r.update(features=r["features"][:-1]))
    assert "features differ" in residual_file(tmp_path, lambda r: r.update(box_low=r["box_low"][:-1]))
    assert "features differ" in residual_file(tmp_path, lambda r: r.update(box_high=r["box_high"] + [1.0]))
    assert "not base64 of an xgboost JSON model" in residual_file(tmp_path, lambda r: r.update(booster_json_b64="%%%"))
    import base64
    assert "not base64 of an xgboost" in residual_file(
        tmp_path, lambda r: r.update(booster_json_b64=base64.b64encode(b'{"x": 1}').decode()))
    assert "not base64 of an xgboost" in residual_file(
        tmp_path, lambda r: r.update(booster_json_b64=base64.b64encode(b"[1]").decode()))
    line = residual_file(tmp_path, lambda r: r.update(
        booster_json_b64=base64.b64encode(b'{"learner": {"x": 1}}').decode()))
    assert line == "residual.booster_json_b64 is not a model this xgboost can load | r.json"


# -- fitting, on exact synthetic stores -------------------------------------------------------------------------------

def solo_rows(models=("a", "b"), batches=(1, 2, 4, 8), shares=(20.0, 50.0, 100.0), extra=None):
    rows = []
    for m in models:
        for b in batches:
            for r in shares:
                lat, rps, l2 = solo(m, b, r)
                row = {"model": m, "batch": b, "share": r, "throughput_rps": rps, "latency_mean_ms": lat,
                       "latency_p50_ms": lat, "latency_p99_ms": lat, "l2_util_pct": 100 * l2,
                       "memory_mb": 100.0 + 10 * b, "power_w": IDLE + POWER[m]}
                row.update((extra or {}).get(m, {}))
                rows.append(row)
    return pd.DataFrame(rows)


def pair_rows(combos=(("a", "b"), ("a", "a"), ("b", "b")), batches=(1, 4, 8), shares=(20.0, 50.0, 80.0)):
    rows = []
    for m, p in combos:
        for b in batches:
            for pb in batches:
                for r in shares:
                    own, partner = Member(m, b, r), Member(p, pb, 100.0 - r)
                    lat = colocated([own, partner], kernels=ONE_KERNEL)[0]
                    rows.append({"model": m, "batch": b, "share": r, "partner": p, "partner_batch": pb,
                                 "partner_share": 100.0 - r, "throughput_rps": b * 1000 / lat, "latency_mean_ms": lat,
                                 "latency_p50_ms": lat, "latency_p99_ms": lat})
    return pd.DataFrame(rows)


ONE_KERNEL = {"a": 1.0, "b": 1.0}  # what a fit without imported kernel counts assumes
HARDWARE = {"kind": "gpu", "name": "synthetic", "idle_power_w": IDLE, "tdp_w": TDP}


@pytest.fixture  # per test: mutmut credits a module-scoped fixture's calls to the first test only
def fitted():
    return PerfModel.fit_frames(solo_rows(), pair_rows(), HARDWARE, use_residual=False)


def test_fit_recovers_the_hand_model(fitted):
    assert fitted.pressure_metric == "l2" and fitted.residual is None
    assert fitted.seen_sets == [["a", "a"], ["a", "b"], ["b", "b"]]
    inter = fitted.interference
    assert (inter.base, inter.own_weights[0], inter.share_weight, inter.sched_ms_per_kernel, inter.clock_per_w) == \
        pytest.approx((BASE, OWN, SHARE_W, SCHED, CLOCK), rel=1e-4)
    for members in SETS:
        want = colocated(members, kernels=ONE_KERNEL)
        assert [p.latency_ms for p in fitted.predict(members)] == pytest.approx(want, rel=1e-4)


def test_fit_tables_of_each_model(fitted):
    fa = fitted.fits["a"]
    assert fa.memory == {1: 110.0, 2: 120.0, 4: 140.0, 8: 180.0}
    assert fa.kernels == 1.0 and fa.correction == 0.0
    assert fa.power.at(4, 50.0) == pytest.approx(POWER["a"]) and set(fa.metrics) == {"l2"}
    assert fa.metrics["l2"].at(2, 50.0) == pytest.approx(L2_PER_RPS["a"], rel=1e-9)  # fraction of peak per req/s
    assert fa.pipelining.at(2, 50.0) == pytest.approx(PIPELINING["a"], abs=1e-12)
    lat = [solo("a", b, r)[0] for b in (1, 2, 4, 8) for r in (20.0, 50.0, 100.0)]
    assert [float(v) for v in perfmodel._raw_solo_ms(fa, 4, np.array([20.0, 50.0, 100.0]))] == \
        pytest.approx(lat[6:9], rel=1e-12)  # profiled points reproduced exactly (the grid corrects the surface)
    # the report-only summary: the sensitivity at the median profiled point (batch 2 of 1, 2, 4, 8 -> int(3.0) = 3)
    t = fitted.linear_terms("a", 3, 50.0)
    assert fa.sensitivity == pytest.approx(t.sensitivity) and fa.sched_ms == pytest.approx(t.sched_ms)


def test_fit_falls_back_to_the_share_without_demand_metrics():
    solo_df = solo_rows().drop(columns=["l2_util_pct"])
    pm = PerfModel.fit_frames(solo_df, pair_rows(), HARDWARE, use_residual=False)
    assert pm.interference.metrics == ["share"] and pm.fits["a"].metrics == {}


def test_fit_keeps_only_metrics_every_model_has_and_needs_two_values():
    extra = {"a": {"dram_util_pct": 10.0, "gpu_util_pct": 50.0}, "b": {"gpu_util_pct": 40.0}}
    solo_df = solo_rows(extra=extra)
    solo_df.loc[solo_df["model"] == "b", "dram_util_pct"] = np.nan
    solo_df.loc[solo_df.index[1:], "cpu_util_pct"] = np.nan
    solo_df.loc[solo_df.index[0], "cpu_util_pct"] = 5.0  # one value only: no table
    pm = PerfModel.fit_frames(solo_df, pair_rows(), HARDWARE, use_residual=False)
    assert set(pm.fits["a"].metrics) == {"l2", "dram", "gpu_util"} and set(pm.fits["b"].metrics) == {"l2", "gpu_util"}
    assert pm.pressure_metric == "l2"  # the least in-sample error: the truth's metric


def test_fit_without_pairs():
    pm = PerfModel.fit_frames(solo_rows(), pair_rows()[:0], HARDWARE)
    assert pm.residual is None and pm.seen_sets == []
    assert pm.interference.pressure_weights == [1.0] * len(pm.interference.metrics)
    assert pm.interference.metrics == ["l2"]  # the first candidate every model has
    assert pm.predict([Member("a", 4, 30.0)])[0].latency_ms == pytest.approx(solo("a", 4, 30.0)[0], rel=1e-3)


def test_fit_refusals():
    with pytest.raises(UserError) as caught:
        PerfModel.fit_frames(solo_rows()[:0], pair_rows(), HARDWARE)
    assert caught.value.what == "solo.csv has no measurements" and caught.value.where == "solo.csv"
    assert caught.value.fix == "profile the models solo (igniter profile) or import profiles first"
    with pytest.raises(UserError) as caught:  # b only ever a partner
        PerfModel.fit_frames(solo_rows(models=("a",)), pair_rows(combos=(("a", "b"),)), HARDWARE)
    assert caught.value.what == "pairs.csv names model 'b' that solo.csv never profiled"
    with pytest.raises(UserError) as caught:
        PerfModel.fit_frames(solo_rows(models=("a",)), pair_rows(), HARDWARE)
    assert caught.value.what == "pairs.csv names model 'b' that solo.csv never profiled"
    assert caught.value.where == "pairs.csv"
    assert caught.value.fix == "profile that model solo too, or drop its pair rows"
    with pytest.raises(UserError) as caught:
        PerfModel.fit_frames(solo_rows(), pair_rows().drop(columns=["partner_share"]), HARDWARE)
    assert caught.value.what == "profile file lacks the required column 'partner_share'"
    assert caught.value.where == "pairs.csv"
    with pytest.raises(UserError) as caught:
        PerfModel.fit_frames(solo_rows().drop(columns=["throughput_rps"]), pair_rows(), HARDWARE)
    assert (caught.value.what, caught.value.where) == ("profile file lacks the required column 'throughput_rps'",
                                                       "solo.csv")


def test_power_grid_sources():
    rows = solo_rows(models=("a",))
    grid = perfmodel._power_grid(rows, {}, IDLE)
    assert grid.at(8, 100.0) == pytest.approx(POWER["a"])
    assert perfmodel._power_grid(rows, {}, None) is None
    one = rows.copy()
    one.loc[one.index[1:], "power_w"] = np.nan
    assert perfmodel._power_grid(one, {}, IDLE) is None
    imported = {"power": [[60.0, 70.0, 80.0], [90.0, 100.0, 110.0], [120.0, 130.0, 140.0]]}
    grid = perfmodel._power_grid(one, imported, 50.0)
    assert grid.batches == [1, 16, 32] and grid.shares == [[10.0, 50.0, 100.0]] * 3
    assert grid.values == [[10.0, 20.0, 30.0], [40.0, 50.0, 60.0], [70.0, 80.0, 90.0]]
    two = rows.copy()
    two.loc[two.index[2:], "power_w"] = np.nan
    assert perfmodel._power_grid(two, imported, IDLE).batches == [1]  # two measured values win over imported
    assert perfmodel._power_grid(rows.drop(columns=["power_w"]), imported, 50.0).batches == [1, 16, 32]


def test_imported_kernels_and_idle_power():
    rows = solo_rows(models=("a",))
    fit = perfmodel._fit_solo(rows, {"kernel": 42}, None)
    assert fit.kernels == 42.0 and type(fit.kernels) is float and fit.power is None
    no_memory = rows.assign(memory_mb=np.nan)
    assert perfmodel._fit_solo(no_memory, {}, None).memory == {}
    assert perfmodel._fit_solo(rows.drop(columns=["memory_mb"]), {}, None).memory == {}
    pm = PerfModel.fit_frames(rows, pair_rows(combos=(("a", "a"),)),
                              {"kind": "gpu", "imported": {"a": {"kernel": 7}, "hardware": {"idlepower": 50}}},
                              use_residual=False)
    assert pm.fits["a"].kernels == 7.0 and pm.fits["a"].power is not None


def test_gated_residual_is_trained_with_inner_weights():
    pm = PerfModel.fit_frames(solo_rows(), pair_rows(), HARDWARE, use_residual=True)
    assert pm.residual is not None
    assert 0.0 <= pm.residual.weight_unseen <= 1.0 and 0.0 <= pm.residual.weight_seen <= 1.0
    # the analytical part is exact: the residual cannot help held-out groups, so it changes nothing much
    for members in SETS:
        assert [p.latency_ms for p in pm.predict(members)] == pytest.approx(colocated(members, kernels=ONE_KERNEL),
                                                                            rel=0.02)


def test_inner_weight_needs_two_groups(fitted):
    assert fitted._inner_weight(pair_rows(), np.zeros(len(pair_rows()))) == 0.0


def test_residual_prediction_is_floored_at_solo():
    from igniter.model import residual
    from igniter.model.features import FEATURES
    pm = hand_model()
    x = np.random.default_rng(0).uniform(-1e6, 1e6, (25, len(FEATURES)))
    pm.residual = residual.train(x, np.full(25, -3.0), rounds=200)  # a correction that makes members faster
    pm.residual.box_low[:], pm.residual.box_high[:] = -np.inf, np.inf
    got = pm.predict([Member("a", 4, 30.0), Member("b", 8, 50.0)])
    assert got[0].latency_ms == pytest.approx(solo("a", 4, 30.0)[0]) and \
        got[1].latency_ms == pytest.approx(solo("b", 8, 50.0)[0])
    pm.residual = residual.train(x, np.full(25, 0.5), rounds=400)
    pm.residual.box_low[:], pm.residual.box_high[:] = -np.inf, np.inf
    pm.residual.weight_seen, pm.residual.weight_unseen = 1.0, 0.0
    seen, unseen = pm.predict([Member("a", 4, 30.0), Member("b", 8, 50.0)]), pm.predict(SETS[2])
    want = colocated([Member("a", 4, 30.0), Member("b", 8, 50.0)])
    assert [p.latency_ms for p in seen] == pytest.approx([w * math.exp(0.5) for w in want], rel=0.01)
    assert [p.latency_ms for p in unseen] == pytest.approx(colocated(SETS[2]), rel=1e-9)


def test_tabulated_points_do_not_depend_on_the_grouping():
    pm, other = hand_model(), copy.deepcopy(hand_model())
    pm.linear_terms_many(["a"] * 3, [4, 4, 2], [30.0, 60.0, 30.0])
    assert pm._terms("a", 4, 60.0) == other._terms("a", 4, 60.0)
    assert set(pm._memo) == {("a", 4, 30.0), ("a", 4, 60.0), ("a", 2, 30.0)}
    lat, rps, l2 = solo("a", 4, 60.0)
    t = pm._terms("a", 4, 60.0)
    assert t[:3] == pytest.approx((lat, rps, POWER["a"])) and t[3] == pytest.approx(l2)
    assert all(math.isnan(v) for v in t[4:]) and len(t) == 3 + len(perfmodel.METRIC_COLUMNS)


def test_memory_interpolates_inside_and_extrapolates_from_the_nearest_two():
    pm = hand_model()
    pm.fits["b"].memory = {1: 100.0, 2: 105.0, 4: 130.0, 8: 150.0}
    assert pm.memory_mb("b", 3) == pytest.approx(117.5)       # between 2 and 4, not on the 4-8 line
    pm.fits["b"].memory = {2: 100.0, 4: 120.0, 8: 200.0}
    assert pm.memory_mb("b", 1) == pytest.approx(90.0)        # the 2-4 line, not the 4-8 one
    assert pm.memory_mb("b", 10) == pytest.approx(240.0)      # the 4-8 line


def test_model_file_keeps_the_report_summary_and_the_residual(tmp_path):
    pm = hand_model()
    pm.fits["a"].sensitivity, pm.fits["a"].sched_ms = 0.7, 0.02
    pm.save(tmp_path / "m.json")
    back = PerfModel.load(tmp_path / "m.json")
    assert (back.fits["a"].sensitivity, back.fits["a"].sched_ms) == (0.7, 0.02)
    assert residual_file(tmp_path, lambda r: None) == "loaded"
    assert PerfModel.load(tmp_path / "r.json").residual is not None


def test_model_file_refusal_lines(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(UserError) as caught:
        PerfModel.load(missing)
    assert caught.value.where == str(missing)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(UserError) as caught:
        PerfModel.load(path)
    assert (caught.value.what, caught.value.fix, caught.value.where) == (
        "not an igniter-perf-model version 2 file", "re-run igniter fit to regenerate it", str(path))
    path.write_text("{not json")
    with pytest.raises(UserError) as caught:
        PerfModel.load(path)
    assert caught.value.what.startswith("performance model file is not valid JSON: ")
    assert caught.value.where == "m.json"
    data = hand_model().to_dict()
    data["models"]["a"]["kernels"] = -1.0
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as caught:
        PerfModel.load(path)
    assert caught.value.fix == "re-run igniter fit to regenerate the file" and caught.value.where == "m.json"
    import base64
    line = residual_file(tmp_path, lambda r: r.update(
        booster_json_b64=base64.b64encode(b'{"learner": {"x": 1}}').decode()))
    assert line.endswith("| r.json")
    with pytest.raises(UserError) as caught:
        PerfModel.load(tmp_path / "r.json")
    assert caught.value.fix == "re-run igniter fit to regenerate the file"


def residual_model(value: float, weight_seen=1.0, weight_unseen=1.0) -> PerfModel:
    """The hand model with a residual whose raw correction is ``value`` everywhere (constant target, box and clip
    opened)."""
    from igniter.model import residual
    from igniter.model.features import FEATURES
    pm = hand_model()
    x = np.random.default_rng(0).uniform(0, 1, (25, len(FEATURES)))
    pm.residual = residual.train(x, np.full(25, value), rounds=2)
    pm.residual.box_low[:], pm.residual.box_high[:] = -np.inf, np.inf
    pm.residual.clip = (value, value)
    pm.residual.weight_seen, pm.residual.weight_unseen = weight_seen, weight_unseen
    return pm


def test_update_measures_against_the_residual_corrected_prediction():
    """A pair a+b (a seen combination: weight 1) measured at exactly analytical x e^0.4: nothing left to correct."""
    pm = residual_model(0.4, weight_seen=1.0, weight_unseen=0.5)
    pair = colocated([Member("a", 4, 30.0), Member("b", 8, 50.0)])[0]
    pm.update(pd.DataFrame([{"model": "a", "batch": 4, "share": 30.0, "partner": "b", "partner_batch": 8,
                             "partner_share": 50.0, "latency_mean_ms": pair * math.exp(0.4)}]))
    assert pm.fits["a"].correction == pytest.approx(0.0, abs=1e-6)
    assert pm.residual.booster.num_boosted_rounds() == 2  # no boost_rounds given: the booster is left alone


def test_update_of_several_rows_and_one_boost_round():
    pm = residual_model(0.0)
    pm.residual.clip = (-5.0, 5.0)
    rows = pd.DataFrame([{"model": "a", "batch": 32, "share": 10.0, "latency_mean_ms": 0.5 * solo("a", 32, 10.0)[0]},
                         {"model": "b", "batch": 2, "share": 40.0, "latency_mean_ms": 2 * solo("b", 2, 40.0)[0]},
                         {"model": "a", "batch": 32, "share": 10.0, "latency_mean_ms": 0.5 * solo("a", 32, 10.0)[0]}])
    pm.update(rows, boost_rounds=1)
    assert pm.residual.booster.num_boosted_rounds() == 3
    many = pd.concat([rows.iloc[[0]]] * 12, ignore_index=True)  # min_child_weight 10: a tree needs 10 rows
    pm.update(many, boost_rounds=30)
    x = pm._own_rows([[Member("a", 32, 10.0)]])[1]
    assert float(pm.residual.raw(x)[0]) < 0  # boosted toward log(0.5) (measured / analytical), not its inverse
    with pytest.raises(UserError) as caught:
        pm.update(pd.DataFrame([{"model": "a", "batch": 0, "share": 10.0, "latency_mean_ms": 1.0}]))
    assert caught.value.where == "observations"


def test_power_below_idle_counts_as_none_above_it():
    """a measured 5 W below idle (0 W above it), b at exactly TDP - idle: together they sit exactly at TDP, so no
    member has excess power and the clock term is zero (the closed form without power); a 1 W floor would put them
    1 W over TDP."""
    pm = hand_model()
    pm.fits["a"].power = flat(-5.0)
    pm.fits["b"].power = flat(TDP - IDLE)
    assert pm._terms("a", 4, 30.0)[2] == 0.0
    members = [Member("a", 4, 30.0), Member("b", 8, 50.0)]
    assert [p.latency_ms for p in pm.predict(members)] == pytest.approx(colocated(members, power=False), rel=1e-12)


def test_update_sets_of_three_members_corrects_the_first_and_leaves_the_booster():
    """igniter watch's form: each set's first member measured at e^0.5 x the closed form of its 3-member set,
    against a residual of weight 0.5 x 0.2 (an unseen combination): correction 0.3 x (0.5 - 0.1); the booster is
    not boosted unless asked."""
    pm = residual_model(0.2, weight_seen=1.0, weight_unseen=0.5)
    members = [Member("b", 2, 25.0), Member("a", 1, 40.0), Member("b", 8, 35.0)]
    truth = colocated(members)[0] * math.exp(0.5)
    pm.update_sets([members], [truth])
    assert pm.fits["b"].correction == pytest.approx(0.3 * (0.5 - 0.5 * 0.2), rel=1e-6)
    assert pm.fits["a"].correction == 0.0 and pm.residual.booster.num_boosted_rounds() == 2


def test_a_model_file_over_16_mib_loads_up_to_its_own_limit(tmp_path):
    """JSON inputs are capped at 16 MiB (schema.MAX_INPUT_BYTES); a model file may be up to 256 MiB (a large
    residual): one of 17 MiB (whitespace after the document) still loads."""
    path = tmp_path / "big.json"
    path.write_text(json.dumps(hand_model().to_dict()) + " " * (17 * 1024 * 1024))
    assert PerfModel.load(path).models == ["a", "b"]


def test_in_sample_error_of_a_demand_descriptor_is_zero_for_the_true_one(fitted):
    """Exact pairs made with L2 pressure: the fit on L2 reproduces every pair (mean relative error 0); on the share
    it cannot (the pairs' pressure is not the partner's share), so its error is positive."""
    pairs = pair_rows()
    assert PerfModel._with_interference(HARDWARE, fitted.fits, ["l2"], pairs)[1] == pytest.approx(0.0, abs=1e-6)
    assert PerfModel._with_interference(HARDWARE, fitted.fits, ["share"], pairs)[1] > 0.01


def test_fit_tables_from_two_values_and_imported_power_without_a_measured_one():
    rows = solo_rows(models=("a",)).drop(columns=["power_w"])
    rows["cpu_util_pct"] = np.nan
    rows.loc[rows.index[:2], "cpu_util_pct"] = [5.0, 6.0]   # two values: enough for a table
    imported = {"power": [[60.0, 70.0, 80.0], [90.0, 100.0, 110.0], [120.0, 130.0, 140.0]]}
    fit = perfmodel._fit_solo(rows, imported, 50.0)
    assert "cpu_util" in fit.metrics and fit.power.batches == [1, 16, 32]
    assert fit.power.values == [[10.0, 20.0, 30.0], [40.0, 50.0, 60.0], [70.0, 80.0, 90.0]]


def test_fit_reads_the_three_files_of_a_store_directory(tmp_path):
    from igniter.profiling.store import ProfileStore
    ProfileStore(tmp_path).write_all(HARDWARE, solo_rows(), pair_rows())
    pm = PerfModel.fit(tmp_path, use_residual=False)
    assert pm.residual is None and pm.hardware["idle_power_w"] == IDLE and pm.seen_sets == [["a", "a"], ["a", "b"],
                                                                                              ["b", "b"]]
    for members in SETS:
        assert [p.latency_ms for p in pm.predict(members)] == pytest.approx(colocated(members, kernels=ONE_KERNEL),
                                                                            rel=1e-4)
    assert PerfModel.fit(tmp_path).residual is not None  # the residual by default


# mlp solo on a 2-core Intel Xeon (the demo's brief profile, 2026-12-02): the fitted surface's pole lands at share
# ~20.7, below the profiled 50 and 100. Mean latencies in ms by (batch, share).
XEON_MLP = {(1, 50): 1.87265175, (2, 50): 1.94205416, (4, 50): 2.01065563, (8, 50): 2.31099333,
            (1, 100): 1.53448364, (2, 100): 1.50278204, (4, 100): 1.51028026, (8, 100): 1.66669157}


def test_a_fit_whose_pole_lies_inside_the_share_range_never_predicts_a_negative_latency():
    solo_rows = pd.DataFrame([{"model": "mlp", "batch": b, "share": r, "latency_mean_ms": ms,
                               "latency_p50_ms": ms, "latency_p99_ms": ms, "throughput_rps": b * 1000.0 / ms}
                              for (b, r), ms in XEON_MLP.items()])
    pm = PerfModel.fit_frames(solo_rows, pd.DataFrame(columns=perfmodel.PAIR_REQUIRED), {"kind": "cpu", "name": "x"})
    assert pm.fits["mlp"].surface[3] < -1.0, "the case needs a negative pole offset"
    # the measured points come back as measured (the table wins where it exists)
    for (b, r), ms in XEON_MLP.items():
        assert pm.predict([("mlp", b, r)])[0].latency_ms == pytest.approx(ms, rel=1e-9)
    # every share: a latency no smaller than at any larger share of the same batch (more of the device never
    # slows a model down), at least the full-device latency, and never negative
    for b in (1, 2, 4, 8):
        latencies = [pm.predict([("mlp", b, float(r))])[0].latency_ms for r in range(1, 101)]
        assert all(x >= XEON_MLP[(b, 100)] * (1 - 1e-9) for x in latencies), b
        assert all(lo >= hi * (1 - 1e-9) for lo, hi in zip(latencies, latencies[1:])), b


def test_a_member_beyond_its_pole_is_unservable_without_feeding_infinities_to_the_residual():
    """xgboost aborts the whole process on infinite features: the residual must not see the member with no latency
    (nor its partner's row, whose partner features it enters), and the pair must still be predicted."""
    from pathlib import Path
    pm = PerfModel.fit(Path(__file__).resolve().parents[1] / "profiles" / "cpu-2core")
    assert pm.residual is not None and pm.residual.weight_seen > 0, "the case needs an active residual"
    pm.fits["mlp"].surface[3] = -30.0   # pole at share 30, inside the profiled range
    pm._memo.clear()
    beyond, partner = pm.predict([("mlp", 2, 10.0), ("convnet", 1, 50.0)])
    assert beyond.latency_ms == math.inf and beyond.throughput_rps == 0.0
    solo = pm.predict([("convnet", 1, 50.0)])[0]
    assert solo.latency_ms <= partner.latency_ms < math.inf and 0 < partner.throughput_rps <= solo.throughput_rps
    # an observation of a set the model deems unservable has no finite prediction to correct: no -inf correction
    pm.update_sets([[("mlp", 2, 10.0), ("convnet", 1, 50.0)], [("convnet", 1, 50.0)]], [5.0, solo.latency_ms * 2])
    assert pm.fits["mlp"].correction == 0.0
    assert pm.fits["convnet"].correction == pytest.approx(perfmodel.UPDATE_RATE * math.log(2.0), rel=1e-6)
