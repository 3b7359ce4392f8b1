"""The capacity report on disk: OUT_DIR/report.html (plots drawn with matplotlib, embedded) and the same numbers
as CSV (policies.csv, steps.csv, growth.csv, gpu_types.csv) and capacity.json. Written to a temporary sibling
directory and renamed into place; an earlier report in OUT_DIR is replaced only once the new one is complete."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from igniter.atomic import swap_in_directory
from igniter.errors import UserError
from igniter.ownership import is_empty_dir, is_owned, mark
from igniter.provisioning.capacity import CapacityResult, cheapest

MARKER = "capacity.json"
STYLES = ("-", "--", ":")     # one per policy: where two policies use the same plan the lines stay visible


def summary(result: CapacityResult, report: Path | None = None) -> dict:
    """The command's --json document (and capacity.json)."""
    s = result.settings
    return {"steps": len(result.starts), "step_s": s.step_s,
            "policies": [p.summary() for p in result.policies], "growth": result.growth,
            "gpu_types": result.gpu_types, "cheapest": cheapest(result) if len(result.types) > 1 else None,
            "plans_solved": result.plans_solved, "seconds": round(result.seconds, 3),
            "refinement": result.refinement,
            "settings": {"headroom": s.headroom, "hysteresis_steps": s.hysteresis_steps, "move_cost": s.move_cost,
                         "strategy": s.strategy, "ilp_budget_s": s.ilp_budget_s, "latency_model": s.latency_model},
            "report": str(report) if report else None}


def write_report(result: CapacityResult, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or not (is_empty_dir(out) or is_owned(out))):  # only igniter's is replaced
        raise UserError(f"output directory {out} exists and is not a capacity report (not an igniter output)",
                        "choose a new --out directory (or an earlier report's, which is replaced)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as err:
        raise UserError(f"cannot write the report beside {out}: {err.strerror or err}",
                        "choose an --out directory in a writable place") from None
    try:
        _write_all(result, tmp, out / "report.html")
        mark(tmp, "igniter capacity")
        os.chmod(tmp, 0o755)
        swap_in_directory(tmp, out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write the report to {out}: {err.strerror or err}",
                        "free disk space or choose another --out directory") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "report.html"


def _write_all(result: CapacityResult, tmp: Path, final_report: Path) -> None:
    doc = summary(result, final_report)
    (tmp / MARKER).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    _csv(tmp / "policies.csv", doc["policies"])
    _csv(tmp / "growth.csv", result.growth)
    _csv(tmp / "gpu_types.csv", result.gpu_types)
    _csv(tmp / "steps.csv", step_rows(result))
    plots = {name: draw(result) for name, draw in PLOTS.items()}
    if len(result.types) > 1:
        plots["types"] = plot_types(result)
    for name, png in plots.items():
        (tmp / f"{name}.png").write_bytes(png)
    (tmp / "report.html").write_text(_html(result, doc, plots))


def step_rows(result: CapacityResult) -> list[dict]:
    """One row per (step, policy): GPUs per type, cost per hour, total rate and capacity, violation."""
    rate_total = result.rates.sum(axis=1)
    rows = []
    for p in result.policies:
        capacity = p.capacity.sum(axis=1)
        for i, start in enumerate(result.starts):
            row = {"step": i, "start_s": round(float(start), 3), "policy": p.name, "gpus": int(p.gpus[i].sum())}
            row.update({f"gpus_{t}": int(n) for t, n in zip(result.types, p.gpus[i])})
            row.update({"cost_per_h": round(float(p.cost_per_h[i]), 4), "rate_total": round(float(rate_total[i]), 4),
                        "capacity_total": round(float(capacity[i]), 4), "violation": int(p.violated[i])})
            rows.append(row)
    return rows


def _csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _figure():
    import matplotlib

    matplotlib.use("Agg")   # no display: render to PNG bytes
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _hours(result: CapacityResult) -> np.ndarray:
    return (result.starts - result.starts[0]) / 3600.0


def _over_time(result: CapacityResult, values, ylabel: str, title: str) -> bytes:
    plt, fig, ax = _figure()
    for p, style in zip(result.policies, STYLES):
        ax.step(_hours(result), values(p), style, where="post", label=p.name, linewidth=1.2)
    ax.set_xlabel("time since trace start (h)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _png(plt, fig)


def plot_gpus(result: CapacityResult) -> bytes:
    return _over_time(result, lambda p: p.gpus.sum(axis=1), "GPUs", "GPUs in use per policy")


def plot_cost(result: CapacityResult) -> bytes:
    return _over_time(result, lambda p: p.cost_per_h, "cost per hour", "Cost per hour per policy")


def plot_rate(result: CapacityResult) -> bytes:
    plt, fig, ax = _figure()
    hours = _hours(result)
    ax.step(hours, result.rates.sum(axis=1), where="post", color="black", linewidth=1.0, label="rate (all workloads)")
    for p, style in zip(result.policies, STYLES):
        ax.step(hours, p.capacity.sum(axis=1), style, where="post", linewidth=1.0, alpha=0.8,
                label=f"capacity: {p.name}")
        bad = p.violated
        if bad.any():
            ax.plot(hours[bad], result.rates.sum(axis=1)[bad], "x", markersize=3, label=f"violation: {p.name}")
    ax.set_xlabel("time since trace start (h)")
    ax.set_ylabel("req/s")
    ax.set_title("Rate against the capacity of the plan in force")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    return _png(plt, fig)


def plot_growth(result: CapacityResult) -> bytes:
    plt, fig, ax = _figure()
    rows = [r for r in result.growth if "cost" in r]
    for name in dict.fromkeys(r["name"] for r in rows):
        points = [(r["growth"], r["cost"]) for r in rows if r["name"] == name]
        ax.plot(*zip(*points), "o-", label=name)
    ax.set_xlabel("traffic growth (x the trace)")
    ax.set_ylabel("cost over the trace")
    ax.set_title("Cost against growth")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _png(plt, fig)


def plot_types(result: CapacityResult) -> bytes:
    """GPUs of each type over time under re-planning (which types the per-step plans choose)."""
    plt, fig, ax = _figure()
    replan = next(p for p in result.policies if p.name == "replan")
    ax.stackplot(_hours(result), replan.gpus.T, labels=result.types, step="post")
    ax.set_xlabel("time since trace start (h)")
    ax.set_ylabel("GPUs")
    ax.set_title("GPUs per type under replan")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _png(plt, fig)


PLOTS = {"gpus": plot_gpus, "cost": plot_cost, "rate": plot_rate, "growth": plot_growth}


def with_saving(policies: list[dict]) -> list[dict]:
    """Policy rows plus their saving against provisioning the peak once (static-peak)."""
    static = next(p["cost"] for p in policies if p["name"] == "static-peak")
    return [{**p, "saving_vs_static_peak": f"{(static - p['cost']) / static * 100:.1f} %" if static else "-"}
            for p in policies]


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _html(result: CapacityResult, doc: dict, plots: dict[str, bytes]) -> str:
    s = result.settings
    img = {k: base64.b64encode(v).decode() for k, v in plots.items()}
    figure = lambda name: f'<img alt="{name}" src="data:image/png;base64,{img[name]}">'   # noqa: E731
    best = doc["cheapest"]
    types_note = (f"<p>Cheapest single type under re-plan: <b>{html.escape(str(best['single_type']))}</b> "
                  f"(cost {best['single_cost']}); the whole catalog (mix): {best['mix']}. Every option here uses the "
                  f"per-step "
                  f"solver's plans ({html.escape(s.strategy)}), without the ILP refinement.</p>" if best else
                  "<p>One GPU type only: no comparison (give --gpus with several types).</p>")
    refine = result.refinement
    refine_note = (f"<p>ILP refinement: {refine['plans']} of {refine['of']} plans re-solved with the ILP "
                   f"(carrying {refine['weight_covered'] * 100:.0f} % of plan-steps x cost); the ILP was cheaper on "
                   f"{refine['improved']}; greedy cost error there: mean {refine['mean_error'] * 100:.2f} %, max "
                   f"{refine['max_error'] * 100:.2f} %.</p>" if refine.get("plans") else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>igniter capacity report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>Capacity report</h1>
<p>{len(result.starts)} steps of {s.step_s:g} s, {len(result.workloads)} workloads, GPU types:
{html.escape(', '.join(result.types))}. Rates rounded up to levels of {s.headroom * 100:g} % (plan headroom);
{result.plans_solved} distinct plans solved ({html.escape(s.strategy)}) in {result.seconds:.1f} s. Hysteresis:
{s.hysteresis_steps} steps; move cost {s.move_cost:g} per reconfiguration (included in cost).</p>
<h2>Policies</h2>{_table(with_saving(doc["policies"]))}{refine_note}
{figure("gpus")}{figure("cost")}{figure("rate")}
<h2>Growth</h2>{_table(result.growth)}{figure("growth")}
<h2>GPU types</h2>{types_note}{_table(result.gpu_types) if result.gpu_types else ""}
{figure("types") if "types" in img else ""}
<p>Per-step numbers: steps.csv (GPUs per type, cost per hour, rate, capacity, violation per policy).</p>
</body></html>
"""
