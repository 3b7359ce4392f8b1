"""Performance model: coefficient recovery, monotonicity, CLI errors, online update, file round trip."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from igniter.cli.model import fit, predict
from igniter.model import LinearTerms, Member, PerfModel, Prediction
from igniter.profiling.store import ProfileStore
from tests.conftest import shared_data

# model: (k1..k5 of the solo surface, L2 % per 1000 req/s); global interference: sensitivity = base + own * own L2
TRUTH = {"a": ([0.01, 2.0, 1.0, 5.0, 0.2], 4.0), "b": ([0.02, 6.0, 3.0, 2.0, 0.5], 10.0)}
SENSITIVITY_BASE, SENSITIVITY_OWN_L2, SCHED_MS = 0.3, 2.0, 0.1
BATCHES, SHARES = [1, 2, 4, 8, 16, 32], [10.0, 20.0, 40.0, 50.0, 60.0, 80.0, 100.0]


def solo_truth(model, batch, share):
    k = TRUTH[model][0]   # the iGniter solo surface written out here, not igniter's own surface()
    lat = (k[0] * batch * batch + k[1] * batch + k[2]) / (share + k[3]) + k[4]
    rps = batch * 1000.0 / lat
    return lat, rps, TRUTH[model][1] * rps / 1000.0


def synthetic_store(path, drift: float = 1.0, noise: float = 0.0):
    rng = np.random.default_rng(0)
    solo = []
    for m, b, s in itertools.product(TRUTH, BATCHES, SHARES):
        lat, rps, l2 = solo_truth(m, b, s)
        solo.append({"model": m, "batch": b, "share": s, "throughput_rps": rps, "latency_mean_ms": lat,
                     "latency_p50_ms": lat, "latency_p99_ms": lat, "l2_util_pct": l2, "memory_mb": 100 + 10 * b})
    pairs = []
    for (m, p), b, pb, s in itertools.product([("a", "b"), ("a", "a"), ("b", "b")], [1, 4, 16], [2, 8, 32],
                                              [20.0, 40.0, 50.0, 60.0, 80.0]):
        for own, partner, ob, obatch, os_, ps in ((m, p, b, pb, s, 100 - s), (p, m, pb, b, 100 - s, s)):
            lat = true_colocated(Member(own, ob, os_), [Member(partner, obatch, ps)]) * drift
            lat *= float(np.exp(noise * rng.standard_normal()))
            pairs.append({"model": own, "batch": ob, "share": os_, "partner": partner, "partner_batch": obatch,
                          "partner_share": ps, "throughput_rps": ob * 1000 / lat, "latency_mean_ms": lat,
                          "latency_p50_ms": lat, "latency_p99_ms": lat})
    store = ProfileStore(path)
    store.write_solo(pd.DataFrame(solo))
    store.write_pairs(pd.DataFrame(pairs))
    store.write_hardware({"kind": "gpu", "name": "synthetic", "source": "measured"})
    return store


def true_colocated(member, partners):
    lat, _, own_l2 = solo_truth(member.model, member.batch, member.share)
    pressure = sum(solo_truth(*p)[2] / 100.0 for p in partners)
    sensitivity = SENSITIVITY_BASE + SENSITIVITY_OWN_L2 * own_l2 / 100.0
    return lat * (1 + sensitivity * pressure) + SCHED_MS * len(partners)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic")
    synthetic_store(path)
    return path


@pytest.fixture(scope="module")
def model(store_dir):
    return PerfModel.fit(store_dir)


def test_fit_recovers_known_coefficients(store_dir):
    pm = PerfModel.fit(store_dir, use_residual=False)
    assert pm.pressure_metric == "l2"
    fitted = pm.interference
    assert fitted.base == pytest.approx(SENSITIVITY_BASE, rel=1e-3)
    assert fitted.own_weights[0] == pytest.approx(SENSITIVITY_OWN_L2, rel=1e-3)
    assert fitted.sched_ms_per_kernel == pytest.approx(SCHED_MS, rel=1e-3)
    assert fitted.share_weight == pytest.approx(0.0, abs=1e-4) and fitted.clock_per_w == 0.0  # no power known
    for name in TRUTH:
        for b, s in [(3, 30.0), (12, 70.0), (24, 90.0)]:  # off the profiled grid: the surface
            assert pm.linear_terms(name, b, s).solo_latency_ms == pytest.approx(solo_truth(name, b, s)[0], rel=0.01)


def test_api_shapes(model):
    assert model.models == ["a", "b"] and model.batches("a") == BATCHES and model.shares("b") == SHARES
    assert model.memory_mb("a", 8) == pytest.approx(180.0) and model.memory_mb("a", 64) == pytest.approx(740.0)
    preds = model.predict([Member("a", 4, 30.0), Member("b", 8, 50.0)])
    assert all(isinstance(p, Prediction) for p in preds) and preds[1].model == "b"
    assert preds[0].throughput_rps == pytest.approx(4 * 1000 / preds[0].latency_ms)
    assert model.predict_sets([[Member("a", 4, 30.0), Member("b", 8, 50.0)], [Member("a", 4, 30.0)]])[0] == preds
    t = model.linear_terms("a", 4, 30.0)
    assert isinstance(t, LinearTerms)
    partner = model.linear_terms("b", 8, 50.0)
    linear = t.solo_latency_ms * (1 + t.sensitivity * partner.pressure) + t.sched_ms
    assert preds[0].latency_ms == pytest.approx(linear, rel=0.05)  # residual stays small next to the analytical


def test_predictions_match_truth_on_three_member_sets(model):
    members = [Member("a", 4, 30.0), Member("b", 8, 30.0), Member("a", 2, 30.0)]
    for m, p in zip(members, model.predict(members)):
        truth = true_colocated(m, [x for x in members if x is not m])
        assert p.latency_ms == pytest.approx(truth, rel=0.03)


def monotonic_checks(pm):
    grid = np.arange(2.5, 100.01, 2.5)
    for name in pm.models:
        for b in pm.batches(name):
            solo = [pm.linear_terms(name, b, float(s)).solo_latency_ms for s in grid]
            assert np.all(np.diff(solo) <= 1e-9), (name, b)
    others = [Member(m, 8, 20.0) for m in pm.models] * 2
    for name in pm.models:
        own = Member(name, 4, 20.0)
        lat = [pm.predict([own] + others[:n])[0].latency_ms for n in range(4)]
        assert np.all(np.diff(lat) >= 0), (name, lat)


def test_monotonic_synthetic(model):
    monotonic_checks(model)


@pytest.fixture(scope="module")
def v100_model_file(tmp_path_factory):
    from igniter.profiling.importers import import_profiles
    out = tmp_path_factory.mktemp("v100")
    import_profiles("igniter", shared_data("igniter-v100"), out / "profiles")
    PerfModel.fit(out / "profiles").save(out / "v100.model.json")
    return out / "v100.model.json"


def test_monotonic_v100(v100_model_file):
    monotonic_checks(PerfModel.load(v100_model_file))


def linear_terms_many_equals_scalar(path):
    """linear_terms_many over a batch x share grid (off-profile batches and shares too) gives the scalar
    linear_terms of each point (to the last few ulps: numpy's vectorised pow may round differently from
    the scalar one), each scalar one asked of a fresh model (no memo shared with the grid)."""
    shares = [0.5, 1.0, 1.3, 33.3] + [float(s) for s in np.round(np.arange(1, 41) * 2.5, 4)]
    many_model, scalar_model = PerfModel.load(path), PerfModel.load(path)
    points = [(m, b, s) for m in many_model.models for b in many_model.batches(m) + [3, 64] for s in shares]
    many = many_model.linear_terms_many(*zip(*points))
    assert isinstance(many, LinearTerms) and all(len(field) == len(points) for field in many)
    for i, point in enumerate(points):
        assert np.allclose([float(field[i]) for field in many], tuple(scalar_model.linear_terms(*point)),
                           rtol=1e-12, atol=0.0), point


def test_linear_terms_many_equals_scalar_synthetic(tmp_path, model):
    model.save(tmp_path / "m.json")
    linear_terms_many_equals_scalar(tmp_path / "m.json")


def test_linear_terms_many_equals_scalar_v100(v100_model_file):
    linear_terms_many_equals_scalar(v100_model_file)


def test_online_update_reduces_drift_error(tmp_path, model):
    drifted = synthetic_store(tmp_path / "drift", drift=1.3).read_pairs()
    path = tmp_path / "m.json"
    model.save(path)
    pm = PerfModel.load(path)
    a_rows = drifted[drifted["model"] == "a"].reset_index(drop=True)
    held_out = a_rows.iloc[1::2]

    def error():
        sets = [[Member(r.model, r.batch, r.share), Member(r.partner, r.partner_batch, r.partner_share)]
                for r in held_out.itertuples()]
        pred = np.array([p[0].latency_ms for p in pm.predict_sets(sets)])
        return np.mean(np.abs(pred / held_out["latency_mean_ms"].to_numpy() - 1))

    before = error()
    training = a_rows.iloc[::2]
    for start in range(0, len(training), len(training) // 5):
        pm.update(training.iloc[start:start + len(training) // 5])
    assert before > 0.2 and error() < 0.05
    pm.update(a_rows.iloc[::2].head(30), boost_rounds=5)  # the incremental boosting path runs
    assert error() < 0.05


def test_model_file_round_trip_and_deterministic_bytes(tmp_path, store_dir, model):
    first, second = tmp_path / "one.json", tmp_path / "two.json"
    model.save(first)
    PerfModel.fit(store_dir).save(second)
    assert first.read_bytes() == second.read_bytes()
    data = json.loads(first.read_text())
    assert data["format"] == "igniter-perf-model" and data["version"] == 2 and data["residual"]
    sets = [[Member("a", 4, 30.0), Member("b", 8, 50.0)], [Member("b", 3, 17.5)]]
    assert PerfModel.load(first).predict_sets(sets) == model.predict_sets(sets)


def test_fit_and_predict_cli(tmp_path, store_dir):
    out = tmp_path / "m.json"
    r = CliRunner().invoke(fit, ["--profiles", str(store_dir), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(predict, ["--perf-model", str(out), "--colocate", "a:4:30,b:8:50", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [x["model"] for x in rows] == ["a", "b"]
    assert set(rows[0]) == {"model", "batch", "share", "latency_ms", "throughput_rps", "extrapolated"}
    assert rows[0]["extrapolated"] is False  # batch 4 at 30 % lies inside the profiled batches and shares


@pytest.mark.parametrize("colocate", ["zz:4:30", "a:4", "a:x:30", "a:4:0", "a:4:120", "a:0:30", ",,"])
def test_predict_bad_input_is_one_line_exit_2(tmp_path, model, colocate):
    path = tmp_path / "m.json"
    model.save(path)
    r = CliRunner().invoke(predict, ["--perf-model", str(path), "--colocate", colocate])
    assert r.exit_code == 2 and "To fix:" in r.output and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output


def test_fit_missing_column_and_missing_model_file(tmp_path, store_dir):
    solo = pd.read_csv(store_dir / "solo.csv").drop(columns=["throughput_rps"])
    bad = tmp_path / "bad"
    bad.mkdir()
    solo.to_csv(bad / "solo.csv", index=False)
    (bad / "hardware.json").write_text('{"kind": "gpu", "name": "x"}')
    r = CliRunner().invoke(fit, ["--profiles", str(bad), "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 2 and "throughput_rps" in r.output and "To fix:" in r.output
    assert not (tmp_path / "m.json").exists()
    r = CliRunner().invoke(predict, ["--perf-model", str(tmp_path / "none.json"), "--colocate", "a:1:50"])
    assert r.exit_code == 2 and "To fix:" in r.output


def test_residual_gate_is_off_where_it_cannot_help(tmp_path):
    """Pure measurement noise on top of the analytical truth: the inner CV gives the residual weight 0 for unseen model
    combinations (predictions equal the analytical model's) and at most a trace of it for seen ones."""
    synthetic_store(tmp_path / "noisy", noise=0.03)
    full, plain = PerfModel.fit(tmp_path / "noisy"), PerfModel.fit(tmp_path / "noisy", use_residual=False)
    assert full.residual is not None
    assert full.residual.weight_unseen == 0.0 and full.residual.weight_seen <= 0.1
    unseen = [[Member("a", 4, 30.0), Member("b", 8, 30.0), Member("a", 2, 20.0)]]
    assert full.predict_sets(unseen) == plain.predict_sets(unseen)
    seen = full.predict([Member("a", 4, 30.0), Member("b", 8, 50.0)])
    for got, analytical in zip(seen, plain.predict([Member("a", 4, 30.0), Member("b", 8, 50.0)])):
        assert got.latency_ms == pytest.approx(analytical.latency_ms, rel=0.01)


def test_power_capped_clock_never_makes_a_member_faster():
    from igniter.model.features import Members, analytical_ms
    latencies = []
    for partner_w in [0.0, 50.0, 150.0, 250.0, 400.0]:
        m = Members(np.array([0, 0]), np.array([8.0, 8.0]), np.array([50.0, 50.0]), np.array([10.0, 10.0]),
                    np.array([800.0, 800.0]), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2),
                    np.array([200.0, partner_w]), (50.0, 300.0, 0.001))
        latencies.append(analytical_ms(m)[0])
    assert latencies[0] == latencies[1] == pytest.approx(10.0)  # 50 + 200 + 50 W <= TDP: full clock
    assert np.all(np.diff(latencies) >= 0) and latencies[-1] == pytest.approx(10.0 * (1 + 0.001 * 350.0))


def test_residual_weight_never_worsens_any_inner_group():
    from igniter.model.residual import best_weight

    measured = [np.full(4, 10.0), np.full(4, 10.0)]
    base = [np.full(4, 9.0), np.full(4, 10.0)]
    helps_one_hurts_other = [np.full(4, np.log(10 / 9)), np.full(4, 0.2)]
    assert best_weight(base, helps_one_hurts_other, measured) == 0.0
    helps_both = [np.full(4, np.log(10 / 9)), np.zeros(4)]
    assert best_weight(base, helps_both, measured) > 0.0
