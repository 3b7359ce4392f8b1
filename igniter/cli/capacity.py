"""`igniter capacity`: plans over a rate trace -> policies, growth, GPU-type comparison, HTML report + CSV."""

from __future__ import annotations

import re

import click

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.errors import UserError
from igniter.provisioning import STRATEGIES, load_problem
from igniter.provisioning.capacity import Settings, plan_capacity
from igniter.provisioning.capacity_report import summary, with_saving, write_report
from igniter.provisioning.queueing import LATENCY_MODELS
from igniter.provisioning.solvers import native_stdout_to_stderr
from igniter.provisioning.traces import FORMATS, load_trace
from igniter.provisioning.workloads import WorkloadSet, load_perf_model

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> float:
    """'300', '30s', '5m', '1h', '1d' -> seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"{option} {text!r} is not a duration", f"write {option} as e.g. 300, 30s, 5m, 1h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_growth(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v < 1e6 for v in values):
        raise UserError(f"--growth {text!r} is not a list of positive factors", "write e.g. --growth 1,1.5,2")
    return values


@click.command("capacity")
@click.option("--workloads", "workloads_path", required=True, type=click.Path(dir_okay=False),
              help="Workloads YAML (the rates are the base that a `scale` trace multiplies).")
@click.option("--trace", "trace_path", required=True, type=click.Path(dir_okay=False),
              help="Rate trace: CSV with `timestamp` and one column per workload (req/s) or a `scale` column.")
@click.option("--trace-format", type=click.Choice(sorted(FORMATS)), default="csv", show_default=True,
              help="Read a public trace directly (twitter, azure-llm, alibaba-pods: see docs/capacity.md).")
@click.option("--perf-model", "perf_model", type=click.Path(dir_okay=False), help="Fitted model file (igniter fit).")
@click.option("--gpus", "catalog", type=click.Path(dir_okay=False), help="GPU catalog YAML (types compared).")
@click.option("--step", default="5m", show_default=True, help="Planning step (300, 30s, 5m, 1h).")
@click.option("--duration", default=None, help="Plan only the first part of the trace (e.g. 1d).")
@click.option("--growth", default="1,1.5,2", show_default=True, help="Traffic growth factors to compare.")
@click.option("--headroom", type=click.FloatRange(min=0.001, max=1.0), default=0.05, show_default=True,
              help="Rates are rounded up to levels this far apart (steps share plans; the plan's spare capacity).")
@click.option("--hysteresis", "hysteresis_steps", type=click.IntRange(min=1), default=3, show_default=True,
              help="K: the hysteresis policy scales down only after K quieter steps.")
@click.option("--move-cost", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Cost of one reconfiguration (price units), added to every policy's cost.")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="igniter", show_default=True,
              help="Solver of each step's plan.")
@click.option("--ilp-budget", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds of ILP spent re-solving the plans that carry the most cost (0: none).")
@click.option("--time-limit", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Solver time limit per plan, seconds.")
@click.option("--latency-model", type=click.Choice(LATENCY_MODELS), default="queueing", show_default=True)
@click.option("--out", "out_dir", default="capacity-report", show_default=True, type=click.Path(file_okay=False),
              help="Report directory (report.html, CSVs, capacity.json).")
@json_option
@user_errors
def capacity(workloads_path, trace_path, trace_format, perf_model, catalog, step, duration, growth, headroom,
             hysteresis_steps, move_cost, strategy, ilp_budget, time_limit, latency_model, out_dir, as_json):
    """How many GPUs of which type, step by step, under each policy, with growth and GPU types compared."""
    settings = Settings(parse_duration(step, "--step"), headroom, hysteresis_steps, move_cost, strategy, time_limit,
                        ilp_budget, latency_model)
    growths = parse_growth(growth)
    span = parse_duration(duration, "--duration") if duration else None
    with native_stdout_to_stderr():
        problem = load_problem(workloads_path, perf_model, catalog, latency_model, _loader())
        trace = load_trace(trace_path, trace_format)
        result = plan_capacity(WorkloadSet(problem.workloads, problem.accuracy_weight), problem.types, trace,
                               settings, growths, span, progress=True)
        report = write_report(result, out_dir)
    emit(summary(result, report), as_json, _human)


def _loader():
    """Indirection for tests (they substitute a fake performance model)."""
    return load_perf_model


def _human(doc: dict) -> str:
    head = (f"{doc['steps']} steps, {doc['plans_solved']} plans solved in {doc['seconds']:.1f} s; "
            f"report: {doc['report']}")
    lines = [head, table(with_saving(doc["policies"]))]
    lines += [f"growth x{r['growth']:g}: cannot be planned: {r['error']}" for r in doc["growth"] if "error" in r]
    if doc["cheapest"]:
        c = doc["cheapest"]
        lines.append(f"cheapest single type (replan): {c['single_type']} at {c['single_cost']}; mix: {c['mix']}")
    return "\n".join(lines)
