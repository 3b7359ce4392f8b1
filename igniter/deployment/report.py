"""A self-contained HTML report: per-workload SLO, predicted vs measured p99 (table, and a matplotlib plot inlined
as SVG); with a time series (`igniter replay --watch`), its plot (matplotlib, inline PNG)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path


def predicted_vs_measured_plot(rows: list[dict]) -> str:
    """Inline SVG (matplotlib, Agg: no display) of each workload's measured against its predicted p99, with the
    line where they are equal; each point is an SVG group with id="point-N" (N: its row) for readers and tests."""
    points = [(r["predicted_p99_ms"], r["measured_p99_ms"], str(r["name"])) for r in rows
              if _finite(r.get("predicted_p99_ms")) and _finite(r.get("measured_p99_ms"))]
    if not points:
        return "<p>(no points)</p>"
    import matplotlib  # noqa: PLC0415 - heavy, only when a report is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    top = max(max(p, m) for p, m, _ in points) * 1.15
    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        ax.plot([0, top], [0, top], linestyle="--", color="#999", label="measured = predicted")
        for i, (predicted, measured, name) in enumerate(points):
            ax.scatter([predicted], [measured], color="#d62728", zorder=3, gid=f"point-{i}")
            ax.annotate(name, (predicted, measured), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set(xlim=(0, top), ylim=(0, top), xlabel="predicted p99 (ms)", ylabel="measured p99 (ms)")
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
    finally:
        plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]   # inline: without the XML declaration and doctype


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def write_html_report(path: Path, result: dict, title: str = "igniter demo") -> Path:
    rows = result["workloads"]
    columns = ["name", "model", "rate", "slo_ms", "predicted_p99_ms", "measured_p99_ms", "attainment", "requests", "failed"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c), c)}</td>" for c in columns) + "</tr>" for r in rows)
    summary = {k: v for k, v in result.items() if k != "workloads" and not isinstance(v, (dict, list))}
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body><h1>{html.escape(title)}: predicted vs measured</h1>
<p>{", ".join(f"{html.escape(str(k))} = {_cell(v, k)}" for k, v in summary.items())}</p>
{"".join(f"<p><strong>warning:</strong> {html.escape(w)}</p>" for w in result.get("warnings", []))}
<table><tr>{head}</tr>{body}</table>
<h2>p99 latency, predicted vs measured (dashed: equal)</h2>{predicted_vs_measured_plot(rows)}
{_timeseries_section(result)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path


def _cell(value, column: str = "") -> str:
    if column in ("attainment", "gap") and isinstance(value, (int, float)):
        return f"{value * 100:.2f} %"
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value if value is not None else ""))


# -- the watch replay's time series (matplotlib) ----------------------------------------------------------------------

def timeseries_png(result: dict) -> bytes | None:
    """Offered rate, GPUs in use and each workload's p99 / SLO per interval (result["series"] of `igniter replay
    --watch`), with the load steps, interference steps and applies marked; None without a series."""
    series = result.get("series")
    if not series:
        return None
    from matplotlib.figure import Figure  # noqa: PLC0415 - heavy; no pyplot (no global state, no display)

    t = [row["t_s"] for row in series]
    fig = Figure(figsize=(8, 7), layout="constrained")
    rate, gpus, p99 = fig.subplots(3, 1, sharex=True)
    rate.step(t, [row["rate_rps"] for row in series], where="post")
    rate.set_ylabel("offered req/s")
    gpus.step(t, [row["gpus"] for row in series], where="post", color="tab:green")
    gpus.set_ylabel("GPUs in use")
    for workload in sorted(series[0]["slo_ms"]):
        ratio = [(row["p99_ms"][workload] / row["slo_ms"][workload]) if row["p99_ms"].get(workload) is not None
                 else math.nan for row in series]
        p99.step(t, ratio, where="post", label=workload)
    p99.axhline(1.0, color="black", linestyle="--", linewidth=1)
    p99.set_ylabel("p99 / SLO")
    p99.set_yscale("log")
    p99.set_xlabel("time (s, unscaled)")
    p99.legend(fontsize=7, loc="upper left")
    for axis in (rate, gpus, p99):
        for step in result.get("load_steps", []):
            axis.axvline(step["at_s"], color="tab:orange", linestyle=":")
        for step in result.get("interference", []):
            axis.axvline(step["at_s"], color="tab:red", linestyle=":")
        for apply in result.get("applies", []):
            axis.axvspan(apply["start_s"], apply["end_s"], color="tab:gray", alpha=0.3)
    rate.set_title("orange: load step, red: interference step, grey: re-provisioning applies", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _timeseries_section(result: dict) -> str:
    png = timeseries_png(result)
    if png is None:
        return ""
    return ('<h2>Over time: offered rate, GPUs, p99 vs SLO</h2>'
            f'<img alt="time series" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
