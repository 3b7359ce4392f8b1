"""igniter/provisioning/capacity_report.py on a capacity result written by hand (two 60 s steps, one workload, two
GPU types): the --json document, the CSV files, the HTML text and what each plot draws (titles, axes, lines, legend).
Every expected value is the hand-made input restated. Written to kill the sampled mutants of capacity_report.py
(docs/mutation/provisioning.md)."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import numpy as np
import pytest

from igniter.errors import UserError
from igniter.ownership import is_owned
from igniter.provisioning import capacity_report as report
from igniter.provisioning.capacity import CapacityResult, PolicyRun, Settings


def policy(name, gpus, cost_per_h, capacity, violated, moves, cost):
    gpus = np.array(gpus)
    return PolicyRun(name, [(0,), (1,)], gpus, np.array(cost_per_h), np.array(capacity, dtype=float),
                     np.array(violated), moves, float(gpus.sum(axis=1).sum() / 60), cost)


def result(types=("T1", "T2"), refinement=None) -> CapacityResult:
    settings = Settings(step_s=60.0, headroom=0.05, hysteresis_steps=3, move_cost=0.5, strategy="igniter",
                        ilp_budget_s=0.0, latency_model="queueing")
    policies = [policy("static-peak", [[2, 0], [2, 0]], [2.0, 2.0], [[30.0], [30.0]], [False, False], 0, 4.0),
                policy("replan", [[1, 0], [1, 1]], [1.23456, 3.0], [[15.0], [15.0]], [False, True], 1, 3.0),
                policy("hysteresis", [[1, 0], [2, 0]], [1.0, 2.0], [[15.0], [30.0]], [False, False], 1, 3.5)]
    growth = [{"growth": 1.0, "name": "static-peak", "gpu_hours": 0.0667, "cost": 4.0, "reconfigurations": 0,
               "violations": 0},
              {"growth": 2.0, "name": "static-peak", "gpu_hours": 0.1333, "cost": 8.0, "reconfigurations": 0,
               "violations": 0},
              {"growth": 3.0, "error": "over max_count"}]
    gpu_types = [{"option": "mix (T1+T2)", "name": "replan", "cost": 3.0},
                 {"option": "T1", "name": "replan", "cost": 3.5},
                 {"option": "T2", "name": "replan", "cost": 2.5},
                 {"option": "T2", "name": "static-peak", "cost": 1.0}]
    return CapacityResult(settings, np.array([0.0, 60.0]), ("a",), tuple(types), np.array([[10.0], [20.0]]),
                          policies, growth, gpu_types if len(types) > 1 else [], 3, 1.25, refinement or {})


def test_summary_is_the_json_document():
    doc = report.summary(result(), Path("/r/report.html"))
    assert doc == {
        "steps": 2, "step_s": 60.0,
        "policies": [{"name": "static-peak", "gpu_hours": 0.0667, "cost": 4.0, "reconfigurations": 0, "violations": 0},
                     {"name": "replan", "gpu_hours": 0.05, "cost": 3.0, "reconfigurations": 1, "violations": 1},
                     {"name": "hysteresis", "gpu_hours": 0.05, "cost": 3.5, "reconfigurations": 1, "violations": 0}],
        "growth": result().growth, "gpu_types": result().gpu_types,
        "cheapest": {"policy": "replan", "mix": 3.0, "single_type": "T2", "single_cost": 2.5},
        "plans_solved": 3, "seconds": 1.25, "refinement": {},
        "settings": {"headroom": 0.05, "hysteresis_steps": 3, "move_cost": 0.5, "strategy": "igniter",
                     "ilp_budget_s": 0.0, "latency_model": "queueing"},
        "report": "/r/report.html"}
    one = report.summary(result(types=("T1",)))
    assert (one["cheapest"], one["report"]) == (None, None)


def test_step_rows_per_step_and_policy():
    rows = report.step_rows(result())
    assert rows[2:4] == [
        {"step": 0, "start_s": 0.0, "policy": "replan", "gpus": 1, "gpus_T1": 1, "gpus_T2": 0, "cost_per_h": 1.2346,
         "rate_total": 10.0, "capacity_total": 15.0, "violation": 0},
        {"step": 1, "start_s": 60.0, "policy": "replan", "gpus": 2, "gpus_T1": 1, "gpus_T2": 1, "cost_per_h": 3.0,
         "rate_total": 20.0, "capacity_total": 15.0, "violation": 1}]
    assert [(r["policy"], r["step"]) for r in rows] == [(p, s) for p in ("static-peak", "replan", "hysteresis")
                                                         for s in (0, 1)]


def test_with_saving_against_the_static_peak():
    rows = report.with_saving([{"name": "static-peak", "cost": 4.0}, {"name": "replan", "cost": 3.0}])
    assert rows == [{"name": "static-peak", "cost": 4.0, "saving_vs_static_peak": "0.0 %"},
                    {"name": "replan", "cost": 3.0, "saving_vs_static_peak": "25.0 %"}]
    assert report.with_saving([{"name": "static-peak", "cost": 0.0}])[0]["saving_vs_static_peak"] == "-"


def test_table_cells_are_escaped_and_floats_four_digits():
    assert report._table([]) == "<p>(none)</p>"
    assert report._table([{"a": 1.23456, "b<": "x&y"}, {"c": 2}]) == (
        "<table><tr><th>a</th><th>b&lt;</th><th>c</th></tr>"
        "<tr><td>1.235</td><td>x&amp;y</td><td></td></tr><tr><td></td><td></td><td>2</td></tr></table>")


def fake_plots(monkeypatch):
    monkeypatch.setattr(report, "PLOTS", {n: (lambda r, n=n: f"png-{n}".encode()) for n in report.PLOTS})
    monkeypatch.setattr(report, "plot_types", lambda r: b"png-types")


def b64(name: str) -> str:
    import base64

    return base64.b64encode(f"png-{name}".encode()).decode()


def test_write_report_files_hand_worked(tmp_path, monkeypatch):
    fake_plots(monkeypatch)
    out = tmp_path / "deep" / "rep"
    assert report.write_report(result(), out) == out / "report.html"
    assert sorted(p.name for p in out.iterdir()) == [".igniter-owned", "capacity.json", "cost.png", "gpu_types.csv",
                                                     "gpus.png", "growth.csv", "growth.png", "policies.csv",
                                                     "rate.png", "report.html", "steps.csv", "types.png"]
    assert is_owned(out) and stat.S_IMODE(out.stat().st_mode) == 0o755
    assert json.loads((out / "capacity.json").read_text()) == report.summary(result(), out / "report.html")
    assert (out / "capacity.json").read_text().startswith('{\n  "cheapest": {\n')     # sorted, indented
    assert (out / "gpus.png").read_bytes() == b"png-gpus" and (out / "types.png").read_bytes() == b"png-types"
    assert (out / "growth.csv").read_bytes().decode() == (
        "growth,name,gpu_hours,cost,reconfigurations,violations,error\r\n"
        "1.0,static-peak,0.0667,4.0,0,0,\r\n2.0,static-peak,0.1333,8.0,0,0,\r\n3.0,,,,,,over max_count\r\n")
    with (out / "steps.csv").open() as f:
        steps = list(csv.DictReader(f))
    assert list(steps[0]) == ["step", "start_s", "policy", "gpus", "gpus_T1", "gpus_T2", "cost_per_h", "rate_total",
                              "capacity_total", "violation"]
    assert len(steps) == 6 and steps[3]["violation"] == "1"
    assert (out / "policies.csv").read_text().splitlines()[0] == "name,gpu_hours,cost,reconfigurations,violations"
    html = (out / "report.html").read_text()
    assert f'<img alt="gpus" src="data:image/png;base64,{b64("gpus")}">' in html
    assert f'<img alt="types" src="data:image/png;base64,{b64("types")}">' in html
    assert ("<p>2 steps of 60 s, 1 workloads, GPU types:\nT1, T2. Rates rounded up to levels of 5 % (plan headroom);\n"
            "3 distinct plans solved (igniter) in 1.2 s. Hysteresis:\n3 steps; move cost 0.5 per reconfiguration "
            "(included in cost).</p>") in html
    assert ("<p>Cheapest single type under re-plan: <b>T2</b> (cost 2.5); the whole catalog (mix): 3.0. Every option "
            "here uses the per-step solver's plans (igniter), without the ILP refinement.</p>") in html
    assert "<td>25.0 %</td>" in html and "<td>over max_count</td>" in html and "<p>ILP refinement" not in html
    assert html.startswith("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>igniter capacity report"
                           "</title>") and html.endswith("steps.csv (GPUs per type, cost per hour, rate, capacity, "
                                                         "violation per policy).</p>\n</body></html>\n")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".rep.")]       # no temporary left


def test_one_type_and_a_refinement_in_the_html(tmp_path, monkeypatch):
    fake_plots(monkeypatch)
    refine = {"plans": 2, "of": 5, "weight_covered": 0.625, "improved": 1, "mean_error": 0.0125, "max_error": 0.025}
    out = tmp_path / "rep"
    report.write_report(result(types=("T1",), refinement=refine), out)
    html = (out / "report.html").read_text()
    assert ("<h2>GPU types</h2><p>One GPU type only: no comparison (give --gpus with several types).</p>\n\n"
            "<p>Per-step numbers") in html
    assert ("<p>ILP refinement: 2 of 5 plans re-solved with the ILP (carrying 62 % of plan-steps x cost); the ILP "
            "was cheaper on 1; greedy cost error there: mean 1.25 %, max 2.50 %.</p>") in html
    assert 'alt="types"' not in html and not (out / "types.png").exists()
    assert (out / "gpu_types.csv").read_bytes() == b"\r\n"
    report.write_report(result(types=("T1",)), out)                     # an earlier report is replaced
    assert "<p>ILP refinement" not in (out / "report.html").read_text()


def test_report_refusals_are_these_lines(tmp_path, monkeypatch):
    fake_plots(monkeypatch)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "mine", tmp_path / "file"):
        with pytest.raises(UserError) as err:
            report.write_report(result(), out)
        assert str(err.value) == (f"output directory {out} exists and is not a capacity report (not an igniter "
                                  "output). To fix: choose a new --out directory (or an earlier report's, which is "
                                  "replaced)")
    with pytest.raises(UserError) as err:
        report.write_report(result(), tmp_path / "file" / "out")
    assert str(err.value) == (f"cannot write the report beside {tmp_path / 'file' / 'out'}: File exists. To fix: "
                              "choose an --out directory in a writable place")
    (tmp_path / "empty").mkdir()
    report.write_report(result(), tmp_path / "empty")                     # an empty directory may be used

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "_write_all", full)
    with pytest.raises(UserError) as err:
        report.write_report(result(), tmp_path / "new")
    assert str(err.value) == (f"cannot write the report to {tmp_path / 'new'}: No space left on device. To fix: free "
                              "disk space or choose another --out directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "mine"]


@pytest.fixture
def figures(monkeypatch):
    """The plots' matplotlib figures instead of their PNG bytes."""
    import matplotlib.pyplot as plt

    made = []
    monkeypatch.setattr(report, "_png", lambda plt_, fig: made.append(fig) or fig)
    yield made
    for fig in made:
        plt.close(fig)


def axes_text(fig):
    ax = fig.axes[0]
    return ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), [t.get_text() for t in ax.get_legend().get_texts()]


def test_gpu_and_cost_plots_step_each_policy_over_hours(figures):
    fig = report.plot_gpus(result())
    assert axes_text(fig) == ("GPUs in use per policy", "time since trace start (h)", "GPUs",
                              ["static-peak", "replan", "hysteresis"])
    lines = fig.axes[0].get_lines()
    assert [ln.get_linestyle() for ln in lines] == ["-", "--", ":"]
    assert [list(ln.get_ydata()) for ln in lines] == [[2, 2], [1, 2], [1, 2]]
    assert list(lines[0].get_xdata()) == [0.0, 60 / 3600]
    assert lines[0].get_drawstyle() == "steps-post" and lines[0].get_linewidth() == 1.2
    fig = report.plot_cost(result())
    assert axes_text(fig)[:3] == ("Cost per hour per policy", "time since trace start (h)", "cost per hour")
    assert [list(ln.get_ydata()) for ln in fig.axes[0].get_lines()] == [[2.0, 2.0], [1.23456, 3.0], [1.0, 2.0]]
    assert fig.get_size_inches().tolist() == [9.0, 3.6] and fig.dpi == 100


def test_rate_plot_marks_each_violation(figures):
    fig = report.plot_rate(result())
    title, xlabel, ylabel, legend = axes_text(fig)
    assert (title, xlabel, ylabel) == ("Rate against the capacity of the plan in force", "time since trace start (h)",
                                       "req/s")
    assert legend == ["rate (all workloads)", "capacity: static-peak", "capacity: replan", "violation: replan",
                      "capacity: hysteresis"]
    lines = fig.axes[0].get_lines()
    assert [list(ln.get_ydata()) for ln in lines] == [[10.0, 20.0], [30.0, 30.0], [15.0, 15.0], [20.0],
                                                      [15.0, 30.0]]
    assert list(lines[3].get_xdata()) == [60 / 3600] and lines[3].get_marker() == "x"
    assert [list(lines[i].get_xdata()) for i in (0, 1, 2, 4)] == [[0.0, 60 / 3600]] * 4     # hours, every line


def test_growth_plot_skips_error_rows_and_types_plot_stacks_replan(figures):
    fig = report.plot_growth(result())
    assert axes_text(fig) == ("Cost against growth", "traffic growth (x the trace)", "cost over the trace",
                              ["static-peak"])
    [line] = fig.axes[0].get_lines()
    assert (list(line.get_xdata()), list(line.get_ydata()), line.get_marker()) == ([1.0, 2.0], [4.0, 8.0], "o")
    fig = report.plot_types(result())
    assert axes_text(fig) == ("GPUs per type under replan", "time since trace start (h)", "GPUs", ["T1", "T2"])


def test_plots_are_png_bytes():
    png = report.plot_gpus(result())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
