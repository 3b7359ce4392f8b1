"""igniter/model's building blocks against hand-worked cases and brute force (written to kill mutmut's survivors).

Oracles: the iGniter solo surface and the interference model written out here in plain arithmetic, loops over the
members of each set (brute force for the vectorised partner aggregates), and constant-target boosters whose
prediction is known exactly (for the residual's box, clip and shrinkage).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xgboost as xgb

from igniter.model import analytical, features, residual
from igniter.model.features import FEATURES, Members

# -- analytical.surface / fit_surface ------------------------------------------------------------------------------


def test_surface_hand_worked():
    # (1*2*2 + 2*2 + 3) / (6 + 4) + 5 = 11 / 10 + 5
    assert analytical.surface(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 2, 6) == pytest.approx(6.1, rel=1e-15)
    many = analytical.surface(np.array([0.5, 0.0, 1.0, 0.0, 0.0]), [1, 3], [10, 20])
    assert many == pytest.approx([1.5 / 10, 5.5 / 20], rel=1e-15)


def test_surface_is_infinite_at_and_below_its_pole():
    # k4 = -20: the pole is at share 20. (2 + 1) / (30 - 20) + 0.5 = 0.8 above it; below it the formula's other
    # branch would be (3) / (10 - 20) + 0.5 = 0.2, a latency faster than at share 30 (what a Xeon fit once gave)
    k = np.array([0.0, 1.0, 1.0, -20.0, 0.5])
    assert analytical.surface(k, 2, [30.0, 20.0, 10.0, 1.0]).tolist() == [pytest.approx(0.8, rel=1e-15)] + [math.inf] * 3


@pytest.mark.parametrize("k", [[0.01, 2.0, 1.0, 5.0, 0.2], [0.02, 6.0, 3.0, -7.0, 0.5], [0.05, 0.0, 4.0, 2.0, 0.1]])
def test_fit_surface_recovers_the_surface_it_was_given(k):
    """Exact data from a known surface (k4 = -7 lies inside the bound -0.9 * min share = -9; k2 = 0: no linear term,
    at its lower bound): the fit reproduces every latency, on and off the profiled points."""
    batches, shares = np.array([1, 2, 4, 8, 16, 32], float), np.array([10, 20, 40, 60, 80, 100], float)
    b, r = (x.ravel() for x in np.meshgrid(batches, shares))

    def truth(batch, share):
        return (k[0] * batch * batch + k[1] * batch + k[2]) / (share + k[3]) + k[4]

    fitted = analytical.fit_surface(b, r, truth(b, r))
    assert analytical.surface(fitted, b, r) == pytest.approx(truth(b, r), rel=1e-4)
    assert analytical.surface(fitted, 12.0, 33.0) == pytest.approx(truth(12.0, 33.0), rel=1e-4)
    assert fitted[3] >= -0.9 * 10 - 1e-9 and all(fitted[[0, 1, 2, 4]] >= 0)


def test_fit_surface_keeps_the_offset_within_its_bounds():
    """Latencies that fall faster than any admissible surface: the offset k4 stops at its bound -0.9 * min share and
    every other term stays non-negative (the least-squares bounds)."""
    b = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    r = np.array([10.0, 50.0, 100.0, 10.0, 50.0, 100.0])
    t = 1.0 / (r - 9.99) ** 2 + 0.01 * b
    fitted = analytical.fit_surface(b, r, t)
    assert fitted[3] == pytest.approx(-9.0, abs=1e-6)
    assert np.all(fitted[[0, 1, 2, 4]] >= 0) and fitted[4] <= t.max()



def test_fit_surface_stops_the_offset_at_its_upper_bound():
    """Latencies of a surface with k4 = 5000 (nearly flat in the share): k4 stops at its upper bound 1000."""
    b, r = (x.ravel() for x in np.meshgrid([1.0, 4.0, 16.0], [10.0, 50.0, 100.0]))
    fitted = analytical.fit_surface(b, r, (1000.0 * b + 500.0) / (r + 5000.0) + 0.1)
    assert fitted[3] == pytest.approx(1000.0)

# -- analytical.Grid ------------------------------------------------------------------------------------------------


def grid_hand_worked() -> analytical.Grid:
    # points given out of order: batch 4 first, shares unsorted
    return analytical.Grid.from_points([4, 1, 4, 1, 4], [50.0, 50.0, 10.0, 10.0, 30.0], [5.0, 2.0, 1.0, 0.0, 3.0])


def test_grid_sorts_points_by_batch_then_share():
    g = grid_hand_worked()
    assert g.to_dict() == {"batches": [1, 4], "shares": [[10.0, 50.0], [10.0, 30.0, 50.0]],
                           "values": [[0.0, 2.0], [1.0, 3.0, 5.0]]}
    assert type(g.batches[0]) is int and type(g.shares[0][0]) is float


def test_grid_keeps_repeated_measurements_of_a_point_in_their_order():
    """40 rows at 3 shares (a store profiled several times), shares 100, 10, 50, 100, 10, ... and value = row
    number: sorted by share, the rows of one share stay in row order (a stable sort; numpy's default is not)."""
    shares = [(100.0, 10.0, 50.0)[i % 3] for i in range(40)]
    g = analytical.Grid.from_points([2] * 40, shares, list(range(40)))
    assert g.shares == [[10.0] * 13 + [50.0] * 13 + [100.0] * 14]
    assert g.values == [[float(i) for i in range(1, 40, 3)] + [float(i) for i in range(2, 40, 3)]
                        + [float(i) for i in range(0, 40, 3)]]


def test_grid_interpolates_in_share_then_batch_and_is_constant_beyond_the_edges():
    g = grid_hand_worked()
    assert g.at(1, 30.0) == pytest.approx(1.0)            # halfway between 0 and 2
    assert g.at(4, 20.0) == pytest.approx(2.0)            # halfway between 1 and 3
    # batch 2 is 1/3 of the way from 1 to 4: (2/3) * 1.0 + (1/3) * 3.0 at share 30
    assert g.at(2, 30.0) == pytest.approx(2 / 3 * 1.0 + 1 / 3 * 3.0)
    assert g.at(3, 40.0) == pytest.approx(1 / 3 * 1.5 + 2 / 3 * 4.0)
    assert g.at(1, 5.0) == 0.0 and g.at(1, 80.0) == 2.0   # constant beyond the shares
    assert g.at(0, 30.0) == pytest.approx(1.0)            # below the first batch: the first batch's row
    assert g.at(9, 30.0) == pytest.approx(3.0)            # above the last batch: the last batch's row
    assert g.at(4, 30.0) == pytest.approx(3.0)            # on a profiled batch: that row exactly
    assert np.allclose(g.at(2, np.array([10.0, 50.0])), [2 / 3 * 0.0 + 1 / 3 * 1.0, 2 / 3 * 2.0 + 1 / 3 * 5.0])


def test_grid_of_one_batch():
    g = analytical.Grid.from_points([8, 8], [20.0, 60.0], [1.0, 3.0])
    assert g.at(1, 40.0) == pytest.approx(2.0) and g.at(8, 40.0) == pytest.approx(2.0) and g.at(64, 20.0) == 1.0


# -- analytical.Interference ------------------------------------------------------------------------------------------


def test_interference_pressure_and_sensitivity_hand_worked():
    inter = analytical.Interference(["l2", "dram"], [1.0, 0.5], base=0.3, own_weights=[2.0, 4.0], share_weight=0.1,
                                    sched_ms_per_kernel=0.01, clock_per_w=0.002)
    demand = np.array([[0.2, 0.4], [np.nan, 0.6], [-1.0, 0.2]])
    # 0.2 + 0.5 * 0.4; NaN counts as 0: 0.5 * 0.6; -1 + 0.1 < 0 is floored at 0
    assert inter.pressure(demand) == pytest.approx([0.4, 0.3, 0.0])
    share = np.array([50.0, 25.0, 100.0])
    # 0.3 + 2 * 0.2 + 4 * 0.4 + 0.1 * 100 / 50; NaN as 0; 0.3 - 2 + 0.8 + 0.1
    assert inter.sensitivity(demand, share) == pytest.approx([0.3 + 0.4 + 1.6 + 0.2, 0.3 + 2.4 + 0.4, -0.8])
    assert inter.to_dict() == {"metrics": ["l2", "dram"], "pressure_weights": [1.0, 0.5], "base": 0.3,
                               "own_weights": [2.0, 4.0], "share_weight": 0.1, "sched_ms_per_kernel": 0.01,
                               "clock_per_w": 0.002}


def test_interference_defaults_and_no_own_weights():
    inter = analytical.Interference(["l2"], [1.0])
    assert (inter.base, inter.own_weights, inter.share_weight, inter.sched_ms_per_kernel, inter.clock_per_w) == \
        (0.0, None, 0.0, 0.0, 0.0)
    inter.base = 0.5
    assert inter.sensitivity(np.array([[0.7]]), np.array([40.0])) == pytest.approx([0.5])


def colocated_truth(rng, n, weights, base, own, share_weight, sched, clock):
    """Synthetic pair rows from the interference model written out term by term (the docstring's formula)."""
    k = len(weights)
    own_demand, partner_demand = rng.uniform(0.05, 0.9, (n, k)), rng.uniform(0.05, 0.9, (n, k))
    share = rng.choice([20.0, 40.0, 50.0, 80.0], n)
    solo, kernels, excess = rng.uniform(2, 20, n), rng.choice([1.0, 5.0, 20.0], n), rng.choice([0.0, 30.0, 80.0], n)
    measured = np.empty(n)
    for i in range(n):
        pressure = sum(w * d for w, d in zip(weights, partner_demand[i]))
        sensitivity = base + sum(o * d for o, d in zip(own, own_demand[i])) + share_weight * 100 / share[i]
        measured[i] = solo[i] * (1 + sensitivity * pressure + clock * excess[i]) + sched * kernels[i]
    return own_demand, partner_demand, share, solo, kernels, excess, measured


def test_fit_interference_recovers_two_metric_coefficients():
    rng = np.random.default_rng(3)
    data = colocated_truth(rng, 60, [1.0, 1.7], base=0.2, own=[0.6, 1.1], share_weight=0.05, sched=0.03,
                           clock=0.004)
    fitted = analytical.fit_interference(["l2", "dram"], *data)
    assert fitted.metrics == ["l2", "dram"] and fitted.pressure_weights == pytest.approx([1.0, 1.7])
    assert fitted.base == pytest.approx(0.2, rel=1e-6)
    assert fitted.own_weights == pytest.approx([0.6, 1.1], rel=1e-6)
    assert fitted.share_weight == pytest.approx(0.05, rel=1e-6)
    assert fitted.sched_ms_per_kernel == pytest.approx(0.03, rel=1e-6)
    assert fitted.clock_per_w == pytest.approx(0.004, rel=1e-6)
    assert all(type(x) is float for x in [fitted.base, fitted.share_weight, fitted.sched_ms_per_kernel,
                                           fitted.clock_per_w, *fitted.own_weights, *fitted.pressure_weights])


def test_fit_interference_one_metric_and_the_first_of_equal_grid_weights():
    rng = np.random.default_rng(4)
    data = colocated_truth(rng, 40, [1.0], base=0.4, own=[0.9], share_weight=0.02, sched=0.1, clock=0.0)
    fitted = analytical.fit_interference(["share"], *data)
    assert fitted.pressure_weights == [1.0]
    assert (fitted.base, fitted.own_weights[0], fitted.share_weight, fitted.sched_ms_per_kernel) == \
        pytest.approx((0.4, 0.9, 0.02, 0.1), rel=1e-6)
    assert fitted.clock_per_w == pytest.approx(0.0, abs=1e-9)
    # a second metric that is all zeros: every grid weight fits equally well, the first (0.0) is kept
    own, partner = (np.column_stack([d, np.zeros(len(d))]) for d in data[:2])
    fitted = analytical.fit_interference(["l2", "dram"], own, partner, *data[2:])
    assert fitted.pressure_weights == [1.0, 0.0] and fitted.base == pytest.approx(0.4, rel=1e-6)
    assert analytical.PRESSURE_WEIGHT_GRID == pytest.approx(np.arange(31) / 10)


# -- features.Members: the vectorised partner aggregates against loops over each set ---------------------------------

def members(set_index, values=None, power=None, clock=(0.0, 0.0, 0.0)) -> Members:
    set_index = np.asarray(set_index, int)
    n = len(set_index)
    rng = np.random.default_rng(n)
    v = lambda: rng.uniform(0.5, 5.0, n)  # noqa: E731
    return Members(set_index, rng.choice([1.0, 2.0, 8.0], n), rng.choice([20.0, 50.0], n), v(), v() * 100, v(),
                   v(), v(), v(), v(), np.asarray(power, float) if power is not None else np.zeros(n), clock)


def brute_others(m: Members, values, how):
    out = []
    for i in range(len(values)):
        others = [values[j] for j in range(len(values)) if j != i and m.set_index[j] == m.set_index[i]]
        out.append(how(others))
    return np.array(out, float)


def test_others_sum_and_max_equal_loops_over_each_set():
    m = members([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    values = np.array([3.0, 5.0, 5.0, -1.0, -2.0, 7.0, 1.0, 9.0, 9.0, 4.0])  # ties at the top, a lone member
    assert m.others_sum(values) == pytest.approx(brute_others(m, values, sum))
    assert m.others_max(values).tolist() == brute_others(m, values, lambda o: max(o) if o else 0.0).tolist()
    assert m.partners().tolist() == [2, 2, 2, 1, 1, 0, 3, 3, 3, 3]


def test_others_sum_is_nan_when_a_partner_is_nan_but_not_for_its_own_nan():
    m = members([0, 0, 0, 1, 1])
    values = np.array([1.0, np.nan, 2.0, np.nan, 4.0])
    got = m.others_sum(values)
    assert np.isnan(got[0]) and np.isnan(got[2]) and got[1] == 3.0  # member 1's own NaN does not count
    assert got[3] == 4.0 and np.isnan(got[4])
    assert members([]).others_sum(np.array([])).tolist() == []


def test_others_max_of_negative_values_and_of_one_member_sets():
    m = members([0, 0, 1])
    assert m.others_max(np.array([-3.0, -5.0, -1.0])).tolist() == [-5.0, -3.0, 0.0]


def test_excess_power_hand_worked():
    # idle 50 W, TDP 300 W: own 50 + 100 = 150, partners 120 + 80 -> 350 total: 50 W above TDP, own excess 0
    m = members([0, 0, 0, 1], power=[100.0, 120.0, 80.0, 400.0], clock=(50.0, 300.0, 0.01))
    assert m.excess_w() == pytest.approx([50.0, 50.0, 50.0, 0.0])  # member 3: alone, 450 W, its own excess only
    m = members([0, 0], power=[300.0, 100.0], clock=(50.0, 300.0, 0.01))
    assert m.excess_w() == pytest.approx([100.0, 150.0])  # own 350 (50 over) + 100 -> 150 over, minus own 50
    assert members([0, 0], power=[500.0, 500.0], clock=(50.0, 0.0, 0.01)).excess_w().tolist() == [0.0, 0.0]
    # a 1 W TDP is still a TDP: idle 0.5 + own 1 = 1.5 (0.5 over), + partner 1 -> 1.5 over, minus own 0.5
    assert members([0, 0], power=[1.0, 1.0], clock=(0.5, 1.0, 0.01)).excess_w() == pytest.approx([1.0, 1.0])


def test_analytical_ms_hand_worked():
    m = Members(np.array([0, 0, 0, 1]), np.ones(4), np.full(4, 50.0), np.array([10.0, 4.0, 2.0, 8.0]),
                np.full(4, 100.0), np.array([0.5, 0.25, 1.0, 3.0]), np.full(4, np.nan), np.full(4, np.nan),
                np.array([0.2, 0.4, 0.0, 9.0]), np.array([0.1, 0.2, 0.3, 0.4]),
                np.array([200.0, 100.0, 0.0, 0.0]), (50.0, 300.0, 0.01))
    # member 0: partners' pressure 1.25, excess (250 + 100 - 300) - 0 = 50 W -> 10 * (1 + 0.25 + 0.5) + 0.1 * 2
    # member 1: pressure 1.5, excess (150 + 200 - 300) = 50 -> 4 * (1 + 0.6 + 0.5) + 0.2 * 2
    # member 2: sensitivity 0, excess 50 -> 2 * 1.5 + 0.3 * 2; member 3 alone: its solo latency
    assert features.analytical_ms(m) == pytest.approx([17.7, 8.8, 3.6, 8.0])


def test_feature_matrix_columns_by_name():
    m = members([0, 0, 1, 1, 1], power=[10.0, 20.0, 30.0, 40.0, 50.0], clock=(0.0, 60.0, 0.0))
    m.l2[1] = np.nan
    base = features.analytical_ms(m)
    x = features.matrix(m, base)
    assert x.shape == (5, len(FEATURES))
    col = {name: x[:, i] for i, name in enumerate(FEATURES)}
    s = lambda v: brute_others(m, v, sum)  # noqa: E731
    expected = {
        "batch": m.batch, "share": m.share, "log_solo_ms": np.log(m.solo_ms), "log_solo_rps": np.log(m.solo_rps),
        "pressure": m.pressure, "own_l2": m.l2, "own_dram": m.dram, "sensitivity": m.sensitivity,
        "partners": [1, 1, 2, 2, 2], "partner_batch_sum": s(m.batch), "partner_share_sum": s(m.share),
        "partner_pressure_sum": s(m.pressure), "partner_pressure_max": brute_others(m, m.pressure, max),
        "partner_log_ms_sum": s(np.log(m.solo_ms)), "partner_l2_sum": s(m.l2), "partner_dram_sum": s(m.dram),
        "share_total": m.share + s(m.share), "excess_w": [0.0, 0.0, 60.0, 60.0, 60.0],
        "interference_ratio": base / m.solo_ms}
    assert list(expected) == FEATURES
    for name, want in expected.items():
        assert np.allclose(col[name], want, equal_nan=True), name
    assert np.isnan(col["partner_l2_sum"][0]) and not np.isnan(col["partner_l2_sum"][1])


def test_monotone_constraints_are_the_partner_load_features():
    increasing = {"partners", "partner_pressure_sum", "partner_pressure_max", "partner_l2_sum", "partner_dram_sum",
                  "excess_w"}
    assert features.MONOTONE == [int(f in increasing) for f in FEATURES]
    assert residual.PARAMS["monotone_constraints"] == "(" + ",".join(str(int(f in increasing)) for f in FEATURES) + ")"


# -- residual ---------------------------------------------------------------------------------------------------------

def rows(n, seed=0):
    return np.random.default_rng(seed).uniform(1.0, 2.0, (n, len(FEATURES)))


def test_residual_needs_twenty_rows():
    assert residual.MIN_ROWS == 20
    assert residual.train(rows(19), np.full(19, 0.3)) is None
    assert residual.train(rows(20), np.full(20, 0.3)) is not None


def test_residual_box_clip_and_constant_prediction():
    x = rows(40)
    x[:, 2] = np.nan                     # a feature the store lacks bounds nothing
    x[5, 3] = np.nan                     # a missing value in a known feature is ignored by its bounds
    target = np.linspace(-1.0, 1.0, 40)
    trained = residual.train(x, target, rounds=3)
    assert trained.booster.num_boosted_rounds() == 3
    known = [i for i in range(len(FEATURES)) if i != 2]
    low, high = np.nanmin(x[:, known], axis=0), np.nanmax(x[:, known], axis=0)
    assert trained.box_low[known] == pytest.approx(low - 0.05 * (high - low))
    assert trained.box_high[known] == pytest.approx(high + 0.05 * (high - low))
    assert trained.box_low[2] == -np.inf and trained.box_high[2] == np.inf
    # quantiles of 40 evenly spaced points: position 0.39 and 38.61 between neighbours 2/39 apart
    assert trained.clip == pytest.approx((-1.0 + 0.39 * 2 / 39, 1.0 - 0.39 * 2 / 39))
    assert all(type(c) is float for c in trained.clip) and (trained.weight_unseen, trained.weight_seen) == (1.0, 1.0)


def constant_residual(value=0.4, **kw) -> residual.Residual:
    """Trained on rows(30) (seed 0): those rows lie inside its box."""
    x = rows(30)
    trained = residual.train(x, np.full(30, value), rounds=5)
    for key, v in kw.items():
        setattr(trained, key, v)
    return trained


def test_residual_raw_is_zero_outside_the_box_and_clipped_inside():
    trained = constant_residual(0.4)
    x = rows(6)
    x[1, 0] = trained.box_high[0] + 1e-6   # just above the box
    x[2, 4] = trained.box_low[4] - 1e-6    # just below
    x[3, 7] = trained.box_high[7]          # on its edge: inside
    x[4, 5] = np.nan                       # missing: inside
    assert trained.raw(x) == pytest.approx([0.4, 0.0, 0.0, 0.4, 0.4, 0.4], abs=1e-6)
    trained.clip = (0.1, 0.25)
    assert trained.raw(x[:1]) == pytest.approx([0.25])
    trained.clip = (0.5, 0.9)
    assert trained.raw(x[:1]) == pytest.approx([0.5])


def test_residual_predict_shrinks_by_seen_or_unseen_weight():
    trained = constant_residual(0.4, weight_unseen=0.25, weight_seen=0.5)
    assert trained.predict(rows(2), np.array([True, False])) == pytest.approx([0.2, 0.1], abs=1e-6)


def test_residual_boost_continues_the_same_booster():
    trained = constant_residual(0.4)
    x = rows(30)
    trained.boost(x, np.full(30, 0.9), rounds=300)
    assert trained.booster.num_boosted_rounds() == 305
    trained.clip = (-5.0, 5.0)
    assert trained.raw(x[:1]) == pytest.approx([0.9], abs=0.01)


def test_residual_file_round_trip():
    trained = constant_residual(0.4, weight_unseen=0.3, weight_seen=0.7)
    trained.box_low[1], trained.box_high[2] = -np.inf, np.inf
    d = trained.to_dict()
    assert set(d) == {"booster_json_b64", "clip", "box_low", "box_high", "features", "weight_unseen", "weight_seen"}
    assert d["box_low"][1] is None and d["box_high"][2] is None and d["features"] == FEATURES
    assert (d["weight_unseen"], d["weight_seen"], d["clip"]) == (0.3, 0.7, list(trained.clip))
    back = residual.Residual.from_dict(d)
    assert back.box_low[1] == -np.inf and back.box_high[2] == np.inf and back.clip == trained.clip
    assert np.array_equal(back.box_low, trained.box_low) and np.array_equal(back.box_high, trained.box_high)
    assert (back.weight_unseen, back.weight_seen) == (0.3, 0.7)
    x = rows(4, seed=9)
    assert back.raw(x).tolist() == trained.raw(x).tolist()
    assert isinstance(back.clip, tuple) and back.booster.num_boosted_rounds() == 5


def test_residual_params_are_the_documented_ones():
    assert (residual.ROUNDS, residual.BOX_MARGIN, residual.CLIP_QUANTILES) == (200, 0.05, (0.01, 0.99))
    assert residual.WEIGHT_GRID == pytest.approx(np.arange(11) / 10)
    p = residual.PARAMS
    assert (p["objective"], p["max_depth"], p["eta"], p["min_child_weight"], p["lambda"], p["subsample"],
            p["tree_method"], p["seed"], p["nthread"]) == ("reg:squarederror", 3, 0.05, 10.0, 5.0, 1.0, "hist", 0, 1)
    assert residual.train(rows(25), np.full(25, 0.1)).booster.num_boosted_rounds() == 200


def test_best_weight_hand_worked():
    """base 9 against measured 10: raw = 2 log(10/9) is exact at weight 0.5, log(10/9) at weight 1.0."""
    base, measured = [np.full(3, 9.0), np.full(2, 9.0)], [np.full(3, 10.0), np.full(2, 10.0)]
    r = math.log(10 / 9)
    assert residual.best_weight(base, [np.full(3, 2 * r), np.full(2, 2 * r)], measured) == 0.5
    assert residual.best_weight(base, [np.full(3, r), np.full(2, r)], measured) == 1.0
    assert residual.best_weight(base, [np.zeros(3), np.zeros(2)], measured) == 0.0   # all tie: the smallest
    # a raw correction in the wrong direction: weight 0
    assert residual.best_weight(base, [np.full(3, -r), np.full(2, -r)], measured) == 0.0


def test_best_weight_pools_all_members_not_group_means():
    """Group A (1 member) wants weight 1, group B (3 members, all exact already) is indifferent: pooled mean error at
    weight w is |0.9 e^(w ln(10/9)) - 1| / 4 for A, so the best is 1.0 whatever the group sizes; and a gain below
    the 6-decimal rounding is no gain (the smaller weight stays)."""
    r = math.log(10 / 9)
    base, measured = [np.array([9.0]), np.full(3, 10.0)], [np.array([10.0]), np.full(3, 10.0)]
    assert residual.best_weight(base, [np.array([r]), np.zeros(3)], measured) == 1.0
    tiny = [np.array([1.0 - 4e-7]), np.full(3, 1.0)], [np.array([1.0]), np.full(3, 1.0)]
    assert residual.best_weight(tiny[0], [np.array([4e-7]), np.zeros(3)], tiny[1]) == 0.0


def test_best_weight_refuses_any_weight_that_makes_one_group_worse():
    """Group A (9 members at 9 against 10) is fixed exactly by weight 1; group B (1 member, exact already) gets
    e^(0.05 w) - 1 worse. Pooled, weight 1 wins by far (0.0051 against 0.09), but every w > 0 makes B worse than
    the analytical model alone, so no weight above 0 is eligible."""
    r = math.log(10 / 9)
    base, measured = [np.full(9, 9.0), np.array([10.0])], [np.full(9, 10.0), np.array([10.0])]
    assert residual.best_weight(base, [np.full(9, r), np.array([0.05])], measured) == 0.0
    assert residual.best_weight(base, [np.full(9, r), np.array([0.0])], measured) == 1.0  # B indifferent: 1 wins


def test_best_weight_compares_errors_rounded_to_six_decimals():
    """Pooled error 1.4e-6 at weight 0 and 0.94e-6 at weight 1: both round to 1e-6, so weight 1 is no gain."""
    base, measured = [np.array([1.0 - 1.4e-6])], [np.array([1.0])]
    raw = [np.array([math.log((1.0 - 0.94e-6) / (1.0 - 1.4e-6))])]
    assert residual.best_weight(base, raw, measured) == 0.0


def test_pooled_error_and_floats():
    assert residual._pooled([np.array([9.0]), np.array([12.0, 10.0])], [np.zeros(1), np.zeros(2)],
                            [np.array([10.0]), np.array([10.0, 10.0])]) == pytest.approx((0.1 + 0.2 + 0.0) / 3)
    assert residual._floats(np.array([1.5, np.inf, -np.inf, np.nan])) == [1.5, None, None, None]
    assert type(residual._floats(np.array([2.0]))[0]) is float


def test_booster_reads_the_feature_names():
    trained = constant_residual(0.4)
    assert trained.booster.feature_names == FEATURES
    with pytest.raises(ValueError):
        trained.booster.predict(xgb.DMatrix(rows(1), feature_names=[f"f{i}" for i in range(len(FEATURES))]))


def find_key(tree, key):
    """Every value stored under ``key`` anywhere in a nested JSON document (xgboost's saved config)."""
    found = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            found += [v] if k == key else find_key(v, key)
    elif isinstance(tree, list):
        for v in tree:
            found += find_key(v, key)
    return found


def test_boosting_continues_with_the_residuals_parameters():
    import json
    trained = constant_residual(0.4)
    trained.boost(rows(30), np.full(30, 0.9), rounds=2)
    config = json.loads(trained.booster.save_config())
    assert find_key(config, "eta") and all(abs(float(v) - 0.05) < 1e-6 for v in find_key(config, "eta"))
    assert find_key(config, "max_depth") and set(map(int, find_key(config, "max_depth"))) == {3}


def test_training_uses_the_residual_parameters_monotone_in_partner_load():
    """A target that falls as partner pressure rises (noise the profiler might record): the +1 monotone constraint
    on partner_pressure_sum keeps the learned correction from falling with it (a member never gets faster with more
    partner load), and the booster carries the documented eta and depth."""
    import json
    x = rows(200, seed=3)
    col = FEATURES.index("partner_pressure_sum")
    trained = residual.train(x, -(x[:, col] - 1.5), rounds=50)
    low, high = x[:1].copy(), x[:1].copy()
    low[0, col], high[0, col] = 1.1, 1.9
    assert trained.booster.predict(xgb.DMatrix(high, feature_names=FEATURES))[0] >= \
        trained.booster.predict(xgb.DMatrix(low, feature_names=FEATURES))[0]
    config = json.loads(trained.booster.save_config())
    assert find_key(config, "eta") and all(abs(float(v) - 0.05) < 1e-6 for v in find_key(config, "eta"))
    assert find_key(config, "max_depth") and set(map(int, find_key(config, "max_depth"))) == {3}
