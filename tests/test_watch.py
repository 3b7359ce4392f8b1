"""igniter watch without Triton: the drift rules on hand-built series (expected values worked by hand in the
comments), the Watcher on synthetic observations with the real perf model fitted on profiles/cpu-2core (the online
correction checked against the EWMA formula), and failed re-plans and applies leaving everything as it was."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from igniter import provisioning
from igniter.errors import UserError
from igniter.model import PerfModel
from igniter.model.perfmodel import Member
from igniter.provisioning.plan import read_plan, write_plan
from igniter.watch import detect
from igniter.watch.detect import WatchSettings
from igniter.watch.history import History, load_history, save_history
from igniter.watch.loop import APPLIED, KEPT, WOULD_APPLY, Decision, Watcher
from igniter.watch.observe import Observation

ROOT = Path(__file__).resolve().parents[1]
S = WatchSettings()   # alpha 0.5, headroom 1, inflation 0.1, up_after 2, down_below 0.7, down_after 3


# -- load drift ---------------------------------------------------------------------------------------------------

def test_a_step_in_rate_is_detected_at_the_second_interval_above_the_plan():
    # planned 100; rates 100, 100, 100, 200, 200. EWMA: 100, 100, 100, 150, 175. Above 100 (forecast and observed):
    # intervals 3 and 4, so up_after=2 fires at interval 4; target max(175, min(200, 200)) x 1.1 = 220.
    rates = [100, 100, 100, 200, 200]
    assert [detect.load_drift(rates[:n], 100, S) for n in range(1, 5)] == [None] * 4
    drift = detect.load_drift(rates, 100, S)
    assert (drift.direction, drift.streak) == ("up", 2)
    assert drift.forecast_rps == pytest.approx(175) and drift.target_rps == pytest.approx(220)


def test_a_single_spike_triggers_nothing():
    # planned 150; rates 100, 100, 100, 300, 100, 100, 100. EWMA: 100, 100, 100, 200, 150, 125, 112.5: the forecast
    # is above 150 at interval 3 only (150 is not above 150), and the observed rate only there too. Inflated:
    # 110, 110, 110, 220, 165, 137.5, 123.75: never below 0.7 x 150 = 105, so no scale-down either.
    rates = [100, 100, 100, 300, 100, 100, 100]
    assert [detect.load_drift(rates[:n], 150, S) for n in range(1, len(rates) + 1)] == [None] * len(rates)


def test_a_spike_the_forecast_smears_needs_the_observed_rate_too():
    # planned 100; rates 80, 80, 200, 80. EWMA 80, 80, 140, 110: the forecast is above 100 at intervals 2 and 3
    # (a forecast-only rule would fire at 3), the observed rate at interval 2 only: nothing fires.
    rates = [80, 80, 200, 80]
    assert [detect.load_drift(rates[:n], 100, S) for n in range(1, 5)] == [None] * 4
    assert detect.load_drift([80, 80, 200, 200], 100, S).direction == "up"     # sustained: fires at interval 3


def test_scale_down_only_after_k_consecutive_lower_forecasts():
    # planned 200; rates 200, 200, 100, 90, 110, 100. EWMA 200, 200, 150, 120, 115, 107.5; inflated 220, 220, 165,
    # 132, 126.5, 118.25; below 0.7 x 200 = 140 from interval 3: the third lower forecast is interval 5.
    rates = [200, 200, 100, 90, 110, 100]
    assert [detect.load_drift(rates[:n], 200, S) for n in range(1, 6)] == [None] * 5
    drift = detect.load_drift(rates, 200, S)
    assert (drift.direction, drift.streak) == ("down", 3)
    assert drift.target_rps == pytest.approx(121)   # max(107.5, max(90, 110, 100)) x 1.1: the streak's peak


def test_a_burst_inside_the_low_streak_restarts_the_count():
    # planned 200; rates 100 x4 then 400 then 100: EWMA 100, 100, 100, 100, 250, 175; inflated 110 x4, 275, 192.5
    # -> lower at intervals 0-3 (streak 4 -> down at 2 already), broken at 4 and 5.
    rates = [100, 100, 100, 100, 400, 100]
    assert detect.load_drift(rates[:3], 200, S).direction == "down"
    assert detect.load_drift(rates, 200, S) is None


def test_streaks_count_only_from_the_running_plan_on():
    # the same low series, but the plan changed at interval 4: intervals 4 and 5 are only two lower forecasts
    rates = [100, 100, 100, 100, 100, 100]
    assert detect.load_drift(rates, 200, S, since=4) is None
    assert detect.load_drift(rates, 200, S, since=3).direction == "down"


# -- interference drift and SLO risk -------------------------------------------------------------------------------

def test_interference_after_n_intervals_and_not_before():
    settings = WatchSettings(interference_threshold=0.2, interference_after=2)
    assert detect.interference_drift([1.0, 1.5], settings) == 0
    assert detect.interference_drift([1.0, 1.5, 1.5], settings) == 2
    assert detect.interference_drift([1.5, 1.19, 1.5], settings) == 0      # 1.19 <= 1.2 breaks the streak
    assert detect.interference_drift([1.5, None, 1.5], settings) == 2      # no batch formed: no evidence
    assert detect.interference_drift([1.21, 1.21, 1.21], WatchSettings(interference_after=3)) == 3


def test_slo_risk_from_p99_streak_or_failures():
    assert detect.slo_risk([20.0, 23.0], [0, 0], 25.0, S) is None              # 23 > 22.5 once only
    assert "p99 above" in detect.slo_risk([23.0, None, 23.0], [0, 0, 0], 25.0, S)
    assert "failed" in detect.slo_risk([None], [3.0], 25.0, S)
    assert "mean request time" in detect.slo_risk([None], [0.0], 25.0, S, mean_ms=26.0)   # this interval alone
    assert detect.slo_risk([None], [0.0], 25.0, S, mean_ms=25.0) is None


def test_ewma_by_hand():
    assert detect.ewma([10, 20, 40], 0.25) == [10, 12.5, 19.375]   # 0.25 x 20 + 0.75 x 10; 0.25 x 40 + 0.75 x 12.5


# -- the Watcher on synthetic observations -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inputs(tmp_path_factory, demo_repo):
    """The demo's real inputs: the model fitted on profiles/cpu-2core and the ILP's plan of the demo workloads.
    The store's path calibration is left out: these tests follow the loop's decisions under hand-worked load
    steps, and with it a 2x step of vision already asks more of the 2-core host's path than a 25 ms SLO allows
    (its p99 at 480 req/s interpolates to 24 ms), so no step would re-plan."""
    out = tmp_path_factory.mktemp("watch")
    store = out / "cpu-2core"
    shutil.copytree(ROOT / "profiles" / "cpu-2core", store)
    hardware = json.loads((store / "hardware.json").read_text())
    hardware.pop("path_overhead", None)
    (store / "hardware.json").write_text(json.dumps(hardware))
    PerfModel.fit(store).save(out / "cpu.model.json")
    workloads = ROOT / "examples" / "demo_workloads.yaml"
    problem, assignment, plan, seconds = provisioning.run(workloads, out / "cpu.model.json", None, "ilp", 10.0,
                                                          src_repo=demo_repo)
    write_plan(plan, problem, out / "plan", demo_repo, {"strategy": "ilp"})
    return {"model": out / "cpu.model.json", "workloads": workloads, "plan": out / "plan", "repo": demo_repo,
            "problem": problem}


def _watcher(inputs, tmp_path, apply_plan=None, **kwargs) -> tuple[Watcher, list]:
    applied: list = []
    watcher = Watcher(inputs["plan"], inputs["model"], inputs["workloads"], None,
                      apply_plan or applied.append, src_repo=inputs["repo"], plans_dir=tmp_path / "plans",
                      log=kwargs.pop("log", lambda d: None), **kwargs)
    return watcher, applied


def _observations(watcher: Watcher, rates: dict[str, float], slowdown: dict[str, float] | None = None,
                  latency: dict[str, float] | None = None) -> list[Observation]:
    """One interval of 10 s: each workload at its rate, split over its replicas as planned, batches as planned,
    batch latency = the given value or the plan's prediction x slowdown."""
    out = []
    for gpu, s in watcher.plan.servers():
        compute = (latency or {}).get(s.name, s.predicted_latency_ms * (slowdown or {}).get(s.name, 1.0))
        rate = rates[s.workload] * s.rate / watcher.planned_rps[s.workload]
        out.append(Observation(s.name, s.model, gpu.id, (s.workload,), 10.0, True, rate * 10, 0.0, rate,
                               float(s.batch), 0.1, compute, compute + 0.1, None))
    return out


def _serving(plan) -> list:
    return sorted((g.id, s.name, s.model, s.batch, s.share, s.rate) for g, s in plan.servers())


def _files(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for root in roots if root.exists()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_load_step_replans_and_applies_through_the_hook(inputs, tmp_path):
    logged: list[dict] = []
    watcher, applied = _watcher(inputs, tmp_path, log=logged.append)
    planned = dict(watcher.planned_rps)
    kinds = []
    for step in ([1.0] * 2 + [2.0] * 2):
        rates = {w: r * step if w == "vision" else r for w, r in planned.items()}
        kinds.append([d.kind for d in watcher.tick(_observations(watcher, rates), len(kinds))])
    assert kinds[:3] == [["steady"]] * 3
    assert kinds[3] == ["load_up", "replan"]
    assert len(applied) == 1 and watcher.plan_path == applied[0]
    assert watcher.planned_rps["vision"] == pytest.approx(planned["vision"] * 2 * 1.1, rel=1e-3)
    assert read_plan(applied[0]).by_workload()["ranking"][0].rate == planned["ranking"]
    # every decision was logged once, each a JSON object with the documented keys
    assert [d["kind"] for d in logged] == ["steady"] * 3 + ["load_up", "replan"]
    for d in logged:
        assert set(d) == {"time_s", "kind", "subject", "reason", "observed", "predicted", "action", "details"}
        json.dumps(d, allow_nan=False)
    assert logged[-1]["action"] == APPLIED


def test_interference_is_detected_at_the_nth_interval(inputs, tmp_path):
    watcher, applied = _watcher(inputs, tmp_path, settings=WatchSettings(interference_after=2))
    slow = next(s.name for _, s in watcher.plan.servers() if s.workload == "ranking")
    first = watcher.tick(_observations(watcher, watcher.planned_rps, {slow: 1.5}), 0)
    assert [d.kind for d in first] == ["steady"]
    second = watcher.tick(_observations(watcher, watcher.planned_rps, {slow: 1.5}), 1)
    assert [d.kind for d in second][:1] == ["interference"] and second[0].subject == slow
    assert second[0].observed["compute_ms"] / second[0].predicted["compute_ms"] == pytest.approx(1.5, rel=1e-3)
    assert second[-1].kind == "replan"


def test_an_interval_without_batches_neither_counts_nor_breaks_the_interference_streak(inputs, tmp_path):
    from dataclasses import replace as changed
    watcher, _ = _watcher(inputs, tmp_path, settings=WatchSettings(interference_after=2))
    slow = next(s.name for _, s in watcher.plan.servers() if s.workload == "ranking")
    idle = lambda o: changed(o, avg_batch=math.nan, compute_ms=math.nan) if o.server == slow else o  # noqa: E731
    kinds = []
    for n, observations in enumerate([_observations(watcher, watcher.planned_rps, {slow: 1.5}),
                                      [idle(o) for o in _observations(watcher, watcher.planned_rps)],
                                      _observations(watcher, watcher.planned_rps, {slow: 1.5})]):
        kinds.append([d.kind for d in watcher.tick(observations, n)])
    assert kinds == [["steady"], ["steady"], ["interference", "replan"]]


def test_after_a_replan_that_keeps_the_plan_detection_compares_with_the_adapted_model(inputs, tmp_path):
    """ranking's batch latency stays 1.5x the fitted prediction. The correction after n updates is
    c_n = ln 1.5 (1 - 0.7^n); a kept re-plan makes the adapted model the baseline. Interval 1: ratio 1.5 twice ->
    interference, the re-plan is the running plan (mlp still fits its SLO), baseline c_2 = 0.51 ln 1.5.
    Intervals 2, 3: ratio 1.5^0.49 = 1.2196 > 1.2 twice -> again; baseline c_4 = 0.7599 ln 1.5. Intervals 4, 5:
    1.5^0.2401 = 1.102 < 1.2: steady."""
    watcher, applied = _watcher(inputs, tmp_path, settings=WatchSettings(interference_after=2))
    slow = next(s.name for _, s in watcher.plan.servers() if s.workload == "ranking")
    kinds, ratios = [], []
    for n in range(6):
        decisions = watcher.tick(_observations(watcher, watcher.planned_rps, {slow: 1.5}), n)
        kinds.append([(d.kind, d.action) for d in decisions])
        ratios.append(watcher.history.ratios[slow][-1] if watcher.history.ratios.get(slow) else None)
    fired = [("interference", "replan"), ("replan", KEPT)]
    assert kinds == [[("steady", "none")], fired, [("steady", "none")], fired, [("steady", "none")],
                     [("steady", "none")]]
    assert applied == []
    assert ratios[2] == pytest.approx(1.5 ** 0.49, rel=1e-3) and ratios[4] == pytest.approx(1.5 ** 0.2401, rel=1e-3)


def test_the_adapted_model_error_falls_back_after_a_latency_jump(inputs, tmp_path):
    """True batch latency jumps to 1.5x what the model predicted. With the correction c_n = (1 - r) c_(n-1) + r ln 1.5
    (r = 0.3, c_0 = 0): c_n = ln 1.5 (1 - 0.7^n), so the adapted prediction / truth = 1.5^(-0.7^n): error 24.7 %
    after 1 update, 6.59 % after 5, 4.66 % after 6 (0.7^6 ln 1.5 = 0.0478 < ln(1/0.95) = 0.0513): below 5 % from
    M = 6 updates on."""
    watcher, _ = _watcher(inputs, tmp_path, settings=WatchSettings(interference_after=100))   # no re-plan
    gpu = watcher.plan.gpus[0]
    model = watcher.types[0].perf_model
    members = [Member(s.model, s.batch, s.share) for s in gpu.servers]
    before = [p.latency_ms for p in model.predict_sets([members])[0]]
    truth = {s.name: 1.5 * b for s, b in zip(gpu.servers, before)}
    errors = []
    for n in range(1, 8):
        watcher.tick(_observations(watcher, watcher.planned_rps, latency=truth), n)
        now = [p.latency_ms for p in model.predict_sets([members])[0]]
        errors.append(max(abs(p / truth[s.name] - 1) for s, p in zip(gpu.servers, now)))
        assert errors[-1] == pytest.approx(1 - 1.5 ** -(0.7 ** n), rel=1e-6)
    assert errors[4] > 0.05 > errors[5]
    assert errors[0] == pytest.approx(0.2471, abs=1e-4)


def test_a_failed_replan_leaves_the_running_plan(inputs, tmp_path):
    watcher, applied = _watcher(inputs, tmp_path, settings=WatchSettings(up_after=1))
    running = watcher.plan_path
    files = _files(inputs["plan"])
    # 10^7 req/s of convnet: no plan of at most 64 replicas carries it (build_problem's UserError)
    decisions = watcher.tick(_observations(watcher, {**watcher.planned_rps, "vision": 1e7}), 0)
    assert [d.kind for d in decisions] == ["load_up", "replan"]
    assert decisions[-1].action == KEPT and "re-plan failed" in decisions[-1].reason
    assert "To fix:" in decisions[-1].details["error"]
    assert applied == [] and watcher.plan_path == running
    assert _files(inputs["plan"]) == files and not (tmp_path / "plans").exists()


def test_a_failed_apply_leaves_the_running_plan(inputs, tmp_path):
    tried: list[Path] = []

    def refuse(plan_dir: Path) -> None:
        tried.append(plan_dir)
        assert (plan_dir / "plan.json").is_file()   # a complete plan was offered
        raise UserError("apply failed and was rolled back (model not READY)", "read the server log")

    watcher, _ = _watcher(inputs, tmp_path, apply_plan=refuse, settings=WatchSettings(up_after=1))
    running, planned = watcher.plan_path, dict(watcher.planned_rps)
    files = _files(inputs["plan"])
    decisions = watcher.tick(_observations(watcher, {**planned, "vision": planned["vision"] * 2}), 0)
    assert decisions[-1].action == KEPT and "apply failed" in decisions[-1].reason
    assert len(tried) == 1 and not tried[0].exists()          # the refused plan directory is not left behind
    assert watcher.plan_path == running and watcher.planned_rps == planned
    assert _files(inputs["plan"]) == files


def test_dry_run_decides_and_changes_nothing(inputs, tmp_path):
    watcher, applied = _watcher(inputs, tmp_path, dry_run=True, settings=WatchSettings(up_after=1))
    planned = dict(watcher.planned_rps)
    files = _files(inputs["plan"])
    decisions = watcher.tick(_observations(watcher, {**planned, "vision": planned["vision"] * 2}), 0)
    assert decisions[-1].action == WOULD_APPLY
    assert applied == [] and watcher.planned_rps == planned and not (tmp_path / "plans").exists()
    assert _files(inputs["plan"]) == files


def test_the_history_carries_streaks_and_the_adapted_model_to_the_next_watcher(inputs, tmp_path):
    settings = WatchSettings(down_after=2, interference_after=100)
    first, _ = _watcher(inputs, tmp_path, settings=settings)
    idle = {w: 0.0 for w in first.planned_rps}
    gpu = first.plan.gpus[0]
    slow = {s.name: 2.0 * s.predicted_latency_ms for s in gpu.servers}
    assert [d.kind for d in first.tick(_observations(first, idle, latency=slow), 0)] == ["steady"]
    save_history(first.snapshot(), tmp_path / "h.json")

    second, _ = _watcher(inputs, tmp_path, settings=settings, history=load_history(tmp_path / "h.json"))
    members = [Member(s.model, s.batch, s.share) for s in gpu.servers]
    assert [p.latency_ms for p in second.types[0].perf_model.predict_sets([members])[0]] == \
        pytest.approx([p.latency_ms for p in first.types[0].perf_model.predict_sets([members])[0]])
    # c_1 = 0.3 ln 2 on top of the fitted model's prediction for the set: exp(0.3 ln 2) = 2^0.3
    kinds = [d.kind for d in second.tick(_observations(second, idle, latency=slow), 1)]
    assert kinds == ["load_down", "load_down", "replan"]        # the second lower forecast: K = 2 reached

    fresh, _ = _watcher(inputs, tmp_path, settings=settings, history=load_history(tmp_path / "h.json").model_copy(
        update={"plan": "/elsewhere"}))
    assert [d.kind for d in fresh.tick(_observations(fresh, idle), 1)] == ["steady"]   # another plan's: ignored


def test_history_trim_keeps_the_last_intervals_and_moves_streak_origins():
    h = History(plan="p", rates={"w": []}, since={"w": 290}, ratios={"s": []})
    h.rates["w"] += [float(i) for i in range(300)]   # the watcher appends, then trims
    h.ratios["s"] += [1.0] * 300
    h.trim(256)
    assert h.rates["w"] == [float(i) for i in range(44, 300)] and h.since["w"] == 246
    assert len(h.ratios["s"]) == 256


def test_a_bad_history_file_is_one_user_error(tmp_path):
    path = tmp_path / "watch-history.json"
    path.write_text(json.dumps({"format": "igniter-watch-history", "version": 1, "plan": "p", "rates": {},
                                "ratez": {}}))
    with pytest.raises(UserError, match="unknown key ratez.*did you mean 'rates'"):
        load_history(path)
    path.write_text(json.dumps({"format": "igniter-watch-history", "version": 1, "plan": "p", "rates": {"w": ["x"]}}))
    with pytest.raises(UserError) as err:
        load_history(path)
    assert "rates" in err.value.line() and "To fix: move the file away" in err.value.line()


def test_a_replan_that_changes_nothing_restarts_only_the_streaks_that_fired_it(inputs, tmp_path):
    # ranking 1.5x slower from interval 0 (interference needs 2 intervals); vision failing requests at interval 1
    # (SLO risk at once). Interval 1 fires both; the re-plan changes nothing. Interval 2 and 3: vision fails again
    # at 3 only; ranking's ratio restarted at 2, so interference fires again at 3, not at 2.
    from dataclasses import replace as changed
    watcher, _ = _watcher(inputs, tmp_path, settings=WatchSettings(interference_after=2))
    names = {s.workload: s.name for _, s in watcher.plan.servers()}
    kinds = []
    for n, failing in enumerate([False, True, False, True]):
        observations = [changed(o, failures=2.0) if failing and o.server == names["vision"] else o
                        for o in _observations(watcher, watcher.planned_rps, {names["ranking"]: 1.5})]
        kinds.append(sorted(d.kind for d in watcher.tick(observations, n)))
    assert kinds == [["steady"], ["interference", "replan", "slo_risk"], ["steady"],
                     ["interference", "replan", "slo_risk"]]


def test_a_streak_that_did_not_fire_goes_on_through_a_replan_that_changed_nothing(inputs, tmp_path):
    # interval 0: ranking 1.5x slower (interference streak 1 of 2) and vision failing -> an SLO-risk re-plan that
    # changes nothing (baseline := c_1 = 0.3 ln 1.5). Interval 1: ranking's streak goes on: ratio 1.5 / 1.5^0.3 =
    # 1.5^0.7 = 1.328 > 1.2 a second time -> interference at interval 1.
    from dataclasses import replace as changed
    watcher, _ = _watcher(inputs, tmp_path, settings=WatchSettings(interference_after=2))
    names = {s.workload: s.name for _, s in watcher.plan.servers()}
    slow = {names["ranking"]: 1.5}
    first = watcher.tick([changed(o, failures=2.0) if o.server == names["vision"] else o
                          for o in _observations(watcher, watcher.planned_rps, slow)], 0)
    assert [(d.kind, d.action) for d in first] == [("slo_risk", "replan"), ("replan", KEPT)]
    second = watcher.tick(_observations(watcher, watcher.planned_rps, slow), 1)
    assert [d.kind for d in second] == ["interference", "replan"]
    assert second[0].observed["compute_ms"] / second[0].predicted["compute_ms"] == pytest.approx(1.5 ** 0.7, rel=1e-3)


def test_a_dead_server_is_an_slo_risk_not_a_drop_in_load(inputs, tmp_path):
    from dataclasses import replace as changed
    watcher, applied = _watcher(inputs, tmp_path, settings=WatchSettings(down_after=1))
    idle = next(s.name for _, s in watcher.plan.servers() if s.workload == "ranking")
    observations = [changed(o, up=False, requests=0.0, rate_rps=0.0, avg_batch=math.nan, compute_ms=math.nan)
                    if o.server == idle else o for o in _observations(watcher, watcher.planned_rps)]
    decisions = watcher.tick(observations, 0)
    assert [(d.kind, d.subject) for d in decisions[:-1]] == [("slo_risk", idle)]
    assert watcher.history.rates["ranking"] == [] and watcher.history.rates["vision"] == [150.0]
    # nothing else changed, but the plan is applied again: apply restarts the server that died
    assert decisions[-1].action == APPLIED and len(applied) == 1
    assert _serving(read_plan(applied[0])) == _serving(read_plan(inputs["plan"]))


def test_a_decision_is_one_json_line_without_nan():
    line = Decision(1.0, "interference", "s", "why", {"compute_ms": math.nan}, {"x": math.inf}, "replan").as_json()
    assert "\n" not in line and json.loads(line)["observed"] == {"compute_ms": None}


def test_inputs_that_do_not_match_the_plan_are_one_user_error(inputs, tmp_path):
    other = tmp_path / "w.yaml"
    other.write_text("workloads:\n  - {name: vision, model: convnet, rate: 150, slo_ms: 25}\n")
    with pytest.raises(UserError, match="'ranking' is in the plan but not in the other"):
        Watcher(inputs["plan"], inputs["model"], other, None, lambda p: None)
    with pytest.raises(UserError, match="no performance model"):
        Watcher(inputs["plan"], None, inputs["workloads"], None, lambda p: None)


# -- igniter watch against a real deployment -----------------------------------------------------------------------

def _watch_cli(state: Path, inputs, *extra: str, exit_code: int = 0) -> list[dict]:
    from click.testing import CliRunner

    from igniter.cli.main import cli
    result = CliRunner().invoke(cli, ["watch", "--state", str(state), "--workloads", str(inputs["workloads"]),
                                      "--perf-model", str(inputs["model"]), "--repo", str(inputs["repo"]),
                                      "--once", "--json", "--interval", "2", *extra])
    assert result.exit_code == exit_code, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


class _Requests:
    """Requests to one server, one after another, in a thread while the watcher observes."""

    def __init__(self, endpoints, model: str):
        import threading

        from igniter.triton.client import TritonClient
        self.client, self.model, self.sent = TritonClient(endpoints), model, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        inputs = self.client.make_inputs(self.model, 1)
        while not self._stop.is_set():
            self.client.infer(self.model, inputs)
            self.sent += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)
        self.client.close()


@pytest.mark.integration
def test_watch_once_on_a_deployed_demo(deployer, inputs, tmp_path):
    from igniter.deployment.apply import status
    from igniter.deployment.state import load_state
    from igniter.triton.server import Endpoints

    deployer.apply(inputs["plan"])
    state_path = deployer.state_path
    before = load_state(state_path)
    vision = next(s for s in before.servers.values() if s.workloads == ["vision"])
    files = _files(state_path.parent, inputs["plan"])

    # dry run, one lower forecast enough: ranking gets no request -> load_down, the re-plan is only logged
    with _Requests(Endpoints(http=vision.http, grpc=vision.grpc), "convnet") as load:
        lines = _watch_cli(state_path, inputs, "--dry-run", "--down-after", "1")
    assert load.sent > 0
    kinds = {(d["kind"], d["subject"]) for d in lines}
    assert ("load_down", "ranking") in kinds
    replan = lines[-1]
    assert replan["kind"] == "replan" and replan["action"] == WOULD_APPLY
    assert replan["observed"]["rates_rps"]["ranking"] == 0 and replan["observed"]["rates_rps"]["vision"] > 0
    assert _files(state_path.parent, inputs["plan"]) == files, "--dry-run wrote something"
    assert load_state(state_path) == before

    # another writer holds the state's lock: the apply is refused, the running plan and every file stay as they were
    from igniter.deployment.lock import writer_lock
    with writer_lock(state_path.parent):
        lines = _watch_cli(state_path, inputs, "--down-after", "1", "--lock-timeout", "0", exit_code=1)
    assert lines[-1]["action"] == KEPT and "apply failed" in lines[-1]["reason"]
    assert "another igniter is changing this deployment" in lines[-1]["details"]["error"]
    left = {p for p in _files(state_path.parent, inputs["plan"]) if p not in files}
    assert {Path(p).relative_to(state_path.parent).parts[0] for p in left} <= {"lock", "watch-plans"}
    assert [p.name for p in (state_path.parent / "watch-plans").iterdir()] == [".igniter-owned"]   # no plan left
    assert {p: h for p, h in _files(state_path.parent, inputs["plan"]).items() if p in files} == files
    assert load_state(state_path) == before

    # for real, two lower forecasts needed, one per run: the first run's interval is remembered beside the state
    # (watch-history.json), so the second run scales down, applied live; the endpoints stay where they were
    lines = _watch_cli(state_path, inputs, "--down-after", "2")
    assert [d["kind"] for d in lines] == ["steady"]
    assert (state_path.parent / "watch-history.json").is_file()
    lines = _watch_cli(state_path, inputs, "--down-after", "2")
    # (Triton's p99 window still holds the dry run's requests: on a loaded host an SLO risk may fire beside it)
    assert {(d["kind"], d["subject"]) for d in lines[:-1]} >= {("load_down", "ranking"), ("load_down", "vision")}
    assert {d["kind"] for d in lines[:-1]} <= {"load_down", "slo_risk"}
    assert lines[-1]["kind"] == "replan" and lines[-1]["action"] == APPLIED, lines[-1]
    after = load_state(state_path)
    assert Path(after.plan).parent == state_path.parent / "watch-plans"
    assert after.endpoints_by_workload().keys() == before.endpoints_by_workload().keys()
    assert {w: e["grpc"] for w, e in after.endpoints_by_workload().items()} == \
        {w: e["grpc"] for w, e in before.endpoints_by_workload().items()}
    assert status(state_path)["healthy"]


def _cli(*args: str):
    from click.testing import CliRunner

    from igniter.cli.main import cli
    return CliRunner().invoke(cli, ["watch", *args])


def _one_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "To fix:" in lines[0], result.stderr
    return lines[0]


def _recorded_state(state_dir: Path, plan: str) -> Path:
    """A state recording one server (no process: nothing here is started) of ``plan``."""
    from igniter.deployment.state import DeploymentState, ServerState, save_state
    state = DeploymentState(plan=plan, servers={"gpu0-vision-r0": ServerState(
        name="gpu0-vision-r0", gpu="gpu0", share=50.0, repo="(remote)", http="127.0.0.1:1", grpc="127.0.0.1:2",
        metrics=None, pid=None, launch_digest="d", models={"convnet": "x"}, workloads=["vision"])})
    path = state_dir / "state.json"
    path.parent.mkdir()
    save_state(state, path)
    return path


def test_bad_input_is_one_line_and_writes_nothing(inputs, tmp_path):
    common = ["--workloads", str(inputs["workloads"]), "--perf-model", str(inputs["model"]), "--once"]
    line = _one_line(_cli("--state", str(tmp_path / "none" / "state.json"), *common))
    assert "nothing is deployed" in line and not (tmp_path / "none").exists()

    state = _recorded_state(tmp_path / "s1", str(tmp_path / "gone"))
    assert "no longer exists" in _one_line(_cli("--state", str(state), *common))

    state = _recorded_state(tmp_path / "s2", str(inputs["plan"]))
    other = tmp_path / "w.yaml"
    other.write_text("workloads:\n  - {name: vision, model: convnet, rate: 150, slo_ms: 25}\n")
    files = _files(state.parent)
    line = _one_line(_cli("--state", str(state), "--workloads", str(other), "--perf-model", str(inputs["model"])))
    assert "'ranking' is in the plan but not in the other" in line
    assert _files(state.parent) == files and sorted(p.name for p in state.parent.iterdir()) == ["state.json"]

    result = _cli("--state", str(state), *common, "--move-penalty", "-1", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["exit_code"] == 2


# -- observe: two scrapes -> one observation ------------------------------------------------------------------------

def _scrape_state():
    from igniter.deployment.state import DeploymentState, ServerState
    server = ServerState(name="a", gpu="g", share=50.0, repo="(remote)", http="h:1", grpc="h:2", metrics="h:3",
                         pid=7, launch_digest="d", models={"m": "x"}, workloads=["w"])
    return DeploymentState(plan="p", servers={"a": server})


def test_observe_differences_two_scrapes_and_unscales_by_k():
    from igniter.triton.metrics import ModelMetrics, ServerMetrics
    from igniter.watch.observe import Scrape, observe
    before = ModelMetrics("m", "1", request_success=100, request_failure=1, inference_count=100, exec_count=50,
                          queue_us=100_000, compute_infer_us=1_000_000, request_us=2_000_000)
    after = ModelMetrics("m", "1", request_success=300, request_failure=3, inference_count=300, exec_count=100,
                         queue_us=500_000, compute_input_us=200_000, compute_infer_us=2_800_000,
                         request_us=6_000_000, quantiles_us={"request": {0.99: 50_000.0}})
    s0 = Scrape(10.0, {"a": ServerMetrics({"m": before})}, {"a": 7})
    s1 = Scrape(15.0, {"a": ServerMetrics({"m": after})}, {"a": 7})
    (o,) = observe(_scrape_state(), s0, s1, time_scale=10.0)
    # 200 successes + 2 failures in 5 s real = 0.5 s emulated -> 404 req/s; 200 inferences in 50 executions -> 4;
    # queue 400 ms / 200 = 2 ms real -> 0.2; compute (200 + 1800) ms / 200 = 10 ms real -> 1; request 20 -> 2 ms;
    # p99 50 ms real -> 5 ms
    assert (o.requests, o.failures, o.interval_s) == (200, 2, 0.5)
    assert o.rate_rps == pytest.approx(404) and o.avg_batch == pytest.approx(4)
    assert (o.queue_ms, o.compute_ms, o.request_ms, o.p99_ms) == pytest.approx((0.2, 1.0, 2.0, 5.0))

    queued = Scrape(15.0, {"a": ServerMetrics({"m": replace(after, pending=10.0)})}, {"a": 7})
    (o,) = observe(_scrape_state(), s0, queued, time_scale=10.0)
    assert o.rate_rps == pytest.approx(424)   # 10 more requests waiting: arrivals (202 + 10) / 0.5 s

    restarted = Scrape(15.0, {"a": ServerMetrics({"m": after})}, {"a": 8})   # another pid: counts from zero
    (o,) = observe(_scrape_state(), s0, restarted, time_scale=10.0)
    assert o.requests == 300 and o.avg_batch == pytest.approx(3)
    went_back = Scrape(15.0, {"a": ServerMetrics({"m": ModelMetrics("m", "1", request_success=5, exec_count=5,
                                                                    inference_count=5)})}, {"a": 7})
    (o,) = observe(_scrape_state(), s0, went_back)                       # the model reloaded: from zero
    assert o.requests == 5 and o.rate_rps == pytest.approx(1.0)
    (o,) = observe(_scrape_state(), s0, Scrape(15.0, {"a": None}, {"a": 7}))
    assert not o.up and o.as_dict()["compute_ms"] is None
    with pytest.raises(UserError, match="apart"):
        observe(_scrape_state(), s1, s0)


@pytest.mark.integration
def test_observed_compute_is_the_batch_latency_triton_reports(deployer, demo_repo, tmp_path):
    """Triton adds a batch's compute time to every request in it: observe's per-request mean is the batch latency,
    checked against Triton's own per-batch-size statistics (the statistics API, an independent count)."""
    import tritonclient.grpc as grpcclient

    from igniter.deployment.state import load_state
    from igniter.profiling.loadgen import LoadSpec, run_concurrent
    from igniter.watch.observe import observe, scrape_all
    from tests.plan_factory import make_plan

    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "s", "model": "convnet", "batch": 8, "delay_us": 20000}])
    deployer.apply(plan)
    state = load_state(deployer.state_path)
    client = grpcclient.InferenceServerClient(state.servers["s"].grpc)

    def batch_stats() -> dict[tuple[int, str], int]:
        """(batch size, "count" or a compute phase) -> executions or ns, cumulative (none before a request)."""
        stats = client.get_inference_statistics("convnet", as_json=True)["model_stats"][0].get("batch_stats", [])
        out = {}
        for b in stats:
            size = int(b["batch_size"])
            out[(size, "count")] = int(b["compute_infer"]["count"])
            out.update({(size, k): int(b[k]["ns"]) for k in ("compute_input", "compute_infer", "compute_output")})
        return out

    stats0, before = batch_stats(), scrape_all(state)
    run_concurrent([LoadSpec(state.servers["s"].grpc, "convnet", 1, "closed", concurrency=8)], 3.0)
    (o,) = observe(state, before, scrape_all(state))
    stats1 = batch_stats()
    client.close()
    delta = {k: v - stats0.get(k, 0) for k, v in stats1.items()}
    sizes = {b for b, _ in delta if delta[(b, "count")] > 0}
    ns = {b: sum(delta[(b, k)] for k in ("compute_input", "compute_infer", "compute_output")) for b in sizes}
    requests = sum(b * delta[(b, "count")] for b in sizes)
    assert o.avg_batch > 1, "the load formed batches"
    assert requests == o.requests
    # the metrics count whole microseconds per request and phase (the statistics nanoseconds): 1e-3, where counting
    # per execution instead would be off by the batch size
    assert o.compute_ms == pytest.approx(sum(b * ns[b] for b in sizes) / requests / 1e6, rel=1e-3)
    if sizes == {8}:   # one batch size formed: plainly the latency of one batch
        assert o.compute_ms == pytest.approx(ns[8] / delta[(8, "count")] / 1e6, rel=1e-3)


# -- re-plans: a cost per moved server -------------------------------------------------------------------------------

FOUR_WORKLOADS = """workloads:
  - {name: a, model: resnet50, rate: 800, slo_ms: 30}
  - {name: b, model: vgg19, rate: 400, slo_ms: 40}
  - {name: c, model: ssd, rate: 300, slo_ms: 50}
  - {name: d, model: alexnet, rate: 1500, slo_ms: 20}
"""


@pytest.fixture(scope="module")
def gpu_inputs(tmp_path_factory):
    """Four workloads on V100-like GPUs (tests/fake_perf_model.py), provisioned by the ILP: five GPUs."""
    from tests.fake_perf_model import FakePerfModel
    out = tmp_path_factory.mktemp("gpus")
    (out / "w.yaml").write_text(FOUR_WORKLOADS)
    (out / "m.json").write_text("{}")
    loader = lambda path: FakePerfModel()   # noqa: E731
    problem, _, plan, _ = provisioning.run(out / "w.yaml", out / "m.json", None, "ilp", 10.0, loader=loader)
    write_plan(plan, problem, out / "plan", None, {"strategy": "ilp"})
    return {"dir": out, "loader": loader, "plan": out / "plan", "problem": problem}


@pytest.mark.parametrize("which", ["inputs", "gpu_inputs"])
def test_moves_are_counted_from_the_launch_specs_write_plan_writes(which, request):
    """The digests a candidate is scored with, computed without writing it, are the ones apply reads back from the
    written plan (pinned CPU cores on the demo host, MPS shares on the GPUs)."""
    from igniter.deployment.apply import planned_servers
    from igniter.watch.loop import _launch_digests
    given = request.getfixturevalue(which)
    written = {s.name: s.launch_digest for s in planned_servers(given["plan"])}
    assert _launch_digests(read_plan(given["plan"]), given["problem"]) == written and len(set(written.values())) > 1


def _gpu_watcher(gpu_inputs, tmp_path, penalty: float) -> Watcher:
    return Watcher(gpu_inputs["plan"], gpu_inputs["dir"] / "m.json", gpu_inputs["dir"] / "w.yaml", None,
                   lambda p: None, settings=WatchSettings(down_after=1, up_after=1, move_penalty=penalty),
                   loader=gpu_inputs["loader"], plans_dir=tmp_path / f"plans-{penalty}")


def _launches(plan) -> set:
    return {(g.id, s.name, s.share) for g, s in plan.servers()}


def test_a_scale_down_moves_servers_only_when_the_saving_pays_for_the_moves(gpu_inputs, tmp_path):
    running = read_plan(gpu_inputs["plan"])
    # load at 0.3x for one interval, down_after=1: the re-plan is for 0.3 x 1.1 = 0.33x the planned rates
    target = tmp_path / "w33.yaml"
    target.write_text(FOUR_WORKLOADS.replace("800", "264").replace("400", "132").replace("300", "99")
                      .replace("1500", "495"))
    _, _, optimum, _ = provisioning.run(target, gpu_inputs["dir"] / "m.json", None, "ilp", 10.0,
                                        loader=gpu_inputs["loader"])
    assert optimum.totals.gpus < running.totals.gpus      # the premise: fewer GPUs would do

    free = _gpu_watcher(gpu_inputs, tmp_path, 0.0)       # moves cost nothing: the cheapest plan
    decision = free.tick(_observations(free, {w: r * 0.3 for w, r in free.planned_rps.items()}), 0)[-1]
    assert decision.action == APPLIED and free.plan.totals.gpus == optimum.totals.gpus

    dear = _gpu_watcher(gpu_inputs, tmp_path, 1000.0)    # a move costs more than any saving: nothing restarts
    decision = dear.tick(_observations(dear, {w: r * 0.3 for w, r in dear.planned_rps.items()}), 0)[-1]
    assert decision.action == APPLIED and decision.details["chosen"] == "keep"
    assert _launches(dear.plan) == _launches(running)     # same servers, GPUs and shares: no restart
    assert dear.plan.totals.status != "infeasible"        # batches re-chosen for the lower rates (live reloads)
    planned = {w: sum(s.rate for s in entries) for w, entries in running.by_workload().items()}
    assert dear.planned_rps == pytest.approx({w: r * 0.33 for w, r in planned.items()})


def test_a_running_server_is_priced_with_the_path_terms_the_planner_used(demo_repo, tmp_path):
    """On the shipped (path-calibrated) store, keeping the running plan at its planned rates must find every server
    as the planner priced it: same batch latency budget, same path term and slowdown (without them the watcher
    kept plans the planner would reject)."""
    from igniter.watch.loop import _option_like  # noqa: PLC0415 - the one pricing rule under test
    PerfModel.fit(ROOT / "profiles" / "cpu-2core").save(tmp_path / "model.json")
    problem, assignment, plan, _ = provisioning.run(ROOT / "examples" / "demo_workloads.yaml",
                                                    tmp_path / "model.json", None, "ilp", 10.0, src_repo=demo_repo)
    assert problem.types[0].path_terms(300.0)[0] > 0, "the case needs a calibrated store"
    chosen = {(problem.workloads[s.workload].name, s.replica): s.option for g in assignment.gpus for s in g.servers}
    index = {w.name: wi for wi, w in enumerate(problem.workloads)}
    for _, s in plan.servers():
        planned = chosen[(s.workload, s.replica)]
        kept = _option_like(problem, index[s.workload], planned.type_index, s)
        assert (kept.batch, kept.share, kept.replicas) == (planned.batch, planned.share, planned.replicas)
        assert kept.extra_ms == pytest.approx(planned.extra_ms, rel=1e-12)
        assert kept.slowdown == pytest.approx(planned.slowdown, rel=1e-12)
        assert kept.max_latency_ms == pytest.approx(planned.max_latency_ms, rel=1e-9)
