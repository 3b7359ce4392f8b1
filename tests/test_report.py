"""igniter/deployment/report.py against hand-worked expectations: the HTML table's cells, the summary line, and what
each plot draws (every drawing call recorded on its way to the real matplotlib, so the figures still render)."""

from __future__ import annotations

import math
import struct

import pytest

from igniter.deployment import report


class Recorder:
    """Stands in front of a matplotlib object: records every method call (name, args, kwargs), then makes it."""

    def __init__(self, real, log: list, name: str):
        self._real, self._log, self._name = real, log, name

    def __getattr__(self, attr):
        target = getattr(self._real, attr)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            self._log.append((self._name, attr, args, kwargs))
            return target(*args, **kwargs)
        return call


def calls_of(log, name, method):
    return [(args, kwargs) for who, what, args, kwargs in log if (who, what) == (name, method)]


ROWS = [{"name": "a<b>", "model": "tinynet", "rate": 12.5, "slo_ms": 20.0, "predicted_p99_ms": 3.0,
         "measured_p99_ms": 4.0, "attainment": 0.9912, "requests": 400, "failed": 0},
        {"name": "idle", "model": "mlp", "rate": 1.0, "slo_ms": 50.0, "predicted_p99_ms": 5.0,
         "measured_p99_ms": None, "attainment": None, "requests": 0, "failed": 0},
        {"name": "d", "model": "convnet", "rate": 2, "slo_ms": 30.0, "predicted_p99_ms": 8.0,
         "measured_p99_ms": 7.0, "attainment": 1, "requests": 10, "failed": 1}]


def test_cells_hand_worked():
    assert report._cell(0.9912, "attainment") == "99.12 %"
    assert report._cell(0.5, "attainment") == "50.00 %" and report._cell(1, "gap") == "100.00 %"
    assert report._cell(0.5, "rate") == "0.5" and report._cell(3.14159) == "3.14" and report._cell(1234.5) == "1.23e+03"
    assert report._cell(7) == "7" and report._cell(None) == "" and report._cell(None, "attainment") == ""
    assert report._cell("a<b>&") == "a&lt;b&gt;&amp;" and report._cell("x", "attainment") == "x"


def test_finite():
    assert report._finite(1) and report._finite(2.5) and report._finite(-1.0)
    assert not any(report._finite(v) for v in (None, math.nan, math.inf, -math.inf, "3"))


def test_html_report_table_and_summary_hand_worked(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "predicted_vs_measured_plot", lambda rows: f"<svg>{len(rows)} rows</svg>")
    result = {"workloads": ROWS, "attainment": 0.5, "gpus": 2, "cost": 1.25, "plan": "p<1>", "extra": {"x": 1},
              "list": [1]}
    path = report.write_html_report(tmp_path / "deep" / "er" / "report.html", result, title="t<i>")
    assert path == tmp_path / "deep" / "er" / "report.html"
    text = path.read_text()
    assert "<title>t&lt;i&gt;</title>" in text and "<h1>t&lt;i&gt;: predicted vs measured</h1>" in text
    # no dicts, no lists; escaped once (the cells escape their text: it used to be escaped twice, "p&amp;lt;1&amp;gt;")
    assert "<p>attainment = 50.00 %, gpus = 2, cost = 1.25, plan = p&lt;1&gt;</p>" in text
    head = "".join(f"<th>{c}</th>" for c in ("name", "model", "rate", "slo_ms", "predicted_p99_ms",
                                                 "measured_p99_ms", "attainment", "requests", "failed"))
    assert f"<table><tr>{head}</tr>" in text
    assert ("<tr><td>a&lt;b&gt;</td><td>tinynet</td><td>12.5</td><td>20</td><td>3</td><td>4</td>"
            "<td>99.12 %</td><td>400</td><td>0</td></tr>") in text
    assert "<tr><td>idle</td><td>mlp</td><td>1</td><td>50</td><td>5</td><td></td><td></td><td>0</td><td>0</td></tr>" in text
    assert "<tr><td>d</td><td>convnet</td><td>2</td><td>30</td><td>8</td><td>7</td><td>100.00 %</td>" in text
    assert "<h2>p99 latency, predicted vs measured (dashed: equal)</h2><svg>3 rows</svg>" in text
    assert text.startswith('<!doctype html><html><head><meta charset="utf-8">') and text.endswith("</body></html>")
    assert "time series" not in text and "Over time" not in text  # no series, no time-series section


def test_html_report_default_title_and_a_time_series_section(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "predicted_vs_measured_plot", lambda rows: "")
    monkeypatch.setattr(report, "timeseries_png", lambda result: b"\x89PNG" if result.get("series") else None)
    text = report.write_html_report(tmp_path / "r.html", {"workloads": [], "series": [{}]}).read_text()
    assert "<title>igniter demo</title>" in text
    assert ('<h2>Over time: offered rate, GPUs, p99 vs SLO</h2><img alt="time series" '
            'src="data:image/png;base64,iVBORw==">') in text


def test_the_plot_draws_each_finite_point_and_the_equal_line(monkeypatch):
    import matplotlib.pyplot as plt
    log, closed = [], []
    real_subplots, real_close = plt.subplots, plt.close

    def subplots(*args, **kwargs):
        log.append(("plt", "subplots", args, kwargs))
        fig, ax = real_subplots(*args, **kwargs)
        closed.append(fig)
        return Recorder(fig, log, "fig"), Recorder(ax, log, "ax")
    monkeypatch.setattr(plt, "subplots", subplots)
    monkeypatch.setattr(plt, "close", lambda fig: log.append(("plt", "close", (), {})) or real_close(closed[0]))
    rows = [ROWS[0], ROWS[1], {"name": "c", "predicted_p99_ms": math.inf, "measured_p99_ms": 2.0}, ROWS[2]]
    svg = report.predicted_vs_measured_plot(rows)
    assert svg.startswith("<svg") and svg.count('id="point-') == 2
    top = 8.0 * 1.15  # the largest p99 of the points drawn, 15 % above
    assert log[0] == ("plt", "subplots", (), {"figsize": (5, 5)})
    assert calls_of(log, "ax", "plot") == [(([0, top], [0, top]), {"linestyle": "--", "color": "#999",
                                                                     "label": "measured = predicted"})]
    assert calls_of(log, "ax", "scatter") == [(([3.0], [4.0]), {"color": "#d62728", "zorder": 3, "gid": "point-0"}),
                                              (([8.0], [7.0]), {"color": "#d62728", "zorder": 3, "gid": "point-1"})]
    assert calls_of(log, "ax", "annotate") == [
        (("a<b>", (3.0, 4.0)), {"textcoords": "offset points", "xytext": (6, 4), "fontsize": 8}),
        (("d", (8.0, 7.0)), {"textcoords": "offset points", "xytext": (6, 4), "fontsize": 8})]
    assert calls_of(log, "ax", "set") == [((), {"xlim": (0, top), "ylim": (0, top), "xlabel": "predicted p99 (ms)",
                                                "ylabel": "measured p99 (ms)"})]
    assert calls_of(log, "ax", "legend") == [((), {"loc": "upper left", "fontsize": 8})]
    assert calls_of(log, "fig", "tight_layout") == [((), {})]
    assert [kwargs for _, kwargs in calls_of(log, "fig", "savefig")] == [{"format": "svg"}]
    assert log[-1] == ("plt", "close", (), {})
    assert report.predicted_vs_measured_plot([ROWS[1]]) == "<p>(no points)</p>"


SERIES = {"series": [{"t_s": 0.0, "rate_rps": 10.0, "gpus": 1, "slo_ms": {"w2": 10.0, "w1": 20.0},
                      "p99_ms": {"w1": 5.0, "w2": None}},
                     {"t_s": 30.0, "rate_rps": 25.0, "gpus": 2, "slo_ms": {"w2": 10.0, "w1": 20.0},
                      "p99_ms": {"w1": 30.0, "w2": 4.0}}],
          "load_steps": [{"at_s": 20.0}], "interference": [{"at_s": 25.0}],
          "applies": [{"start_s": 21.0, "end_s": 24.0}]}


def test_the_time_series_draws_rate_gpus_and_p99_over_slo_with_the_steps_marked(monkeypatch):
    import matplotlib.figure
    log = []

    class RecordedFigure(matplotlib.figure.Figure):
        def __init__(self, *args, **kwargs):
            log.append(("Figure", "__init__", args, kwargs))
            super().__init__(*args, **kwargs)

        def subplots(self, *args, **kwargs):
            log.append(("fig", "subplots", args, kwargs))
            return [Recorder(ax, log, name) for ax, name in zip(super().subplots(*args, **kwargs),
                                                                 ("rate", "gpus", "p99"))]

        def savefig(self, *args, **kwargs):
            log.append(("fig", "savefig", args[1:], kwargs))
            return super().savefig(*args, **kwargs)
    monkeypatch.setattr(matplotlib.figure, "Figure", RecordedFigure)
    png = report.timeseries_png(SERIES)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (800, 700)  # 8 x 7 in at 100 dpi
    assert log[0] == ("Figure", "__init__", (), {"figsize": (8, 7), "layout": "constrained"})
    assert log[1] == ("fig", "subplots", (3, 1), {"sharex": True})
    assert log[-1] == ("fig", "savefig", (), {"format": "png", "dpi": 100})
    t = [0.0, 30.0]
    assert calls_of(log, "rate", "step") == [((t, [10.0, 25.0]), {"where": "post"})]
    assert calls_of(log, "gpus", "step") == [((t, [1, 2]), {"where": "post", "color": "tab:green"})]
    steps = calls_of(log, "p99", "step")
    assert [(args[0], kwargs) for args, kwargs in steps] == [(t, {"where": "post", "label": "w1"}),
                                                             (t, {"where": "post", "label": "w2"})]
    assert steps[0][0][1] == [0.25, 1.5]
    assert math.isnan(steps[1][0][1][0]) and steps[1][0][1][1] == pytest.approx(0.4)
    assert calls_of(log, "rate", "set_ylabel") == [(("offered req/s",), {})]
    assert calls_of(log, "gpus", "set_ylabel") == [(("GPUs in use",), {})]
    assert calls_of(log, "p99", "set_ylabel") == [(("p99 / SLO",), {})]
    assert calls_of(log, "p99", "axhline") == [((1.0,), {"color": "black", "linestyle": "--", "linewidth": 1})]
    assert calls_of(log, "p99", "set_yscale") == [(("log",), {})]
    assert calls_of(log, "p99", "set_xlabel") == [(("time (s, unscaled)",), {})]
    assert calls_of(log, "p99", "legend") == [((), {"fontsize": 7, "loc": "upper left"})]
    for axis in ("rate", "gpus", "p99"):
        assert calls_of(log, axis, "axvline") == [((20.0,), {"color": "tab:orange", "linestyle": ":"}),
                                                  ((25.0,), {"color": "tab:red", "linestyle": ":"})]
        assert calls_of(log, axis, "axvspan") == [((21.0, 24.0), {"color": "tab:gray", "alpha": 0.3})]
    assert calls_of(log, "rate", "set_title") == [
        (("orange: load step, red: interference step, grey: re-provisioning applies",), {"fontsize": 9})]


def test_a_time_series_without_steps_and_no_series_at_all():
    assert report.timeseries_png({}) is None and report.timeseries_png({"series": []}) is None
    png = report.timeseries_png({"series": SERIES["series"]})  # no load steps, interference or applies: drawn
    assert png.startswith(b"\x89PNG")


def test_the_demo_warns_when_its_load_generator_fell_behind(tmp_path):
    """send lag p99 on a quiet host is ~2 ms; a host stall that made the client 43 ms late is named, per workload,
    in the JSON, the HTML report and not for a workload that kept to its schedule (or sent nothing)."""
    from igniter.demo import measurement_warnings  # noqa: PLC0415
    rows = [{"name": "ranking", "send_lag_p99_ms": 42.9}, {"name": "vision", "send_lag_p99_ms": 2.1},
            {"name": "idle", "send_lag_p99_ms": float("nan")}]
    [warning] = measurement_warnings(rows)
    assert "ranking 42.9 ms" in warning and "vision" not in warning and "idle" not in warning
    assert measurement_warnings(rows[1:]) == []
    page = report.write_html_report(tmp_path / "r.html", {"workloads": [], "warnings": [warning + " <b>"]})
    assert "ranking 42.9 ms" in page.read_text() and "<b>" not in page.read_text()
