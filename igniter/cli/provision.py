"""`igniter provision`: workloads + perf model -> OUT_DIR/plan.json and per-server Triton repositories."""

from __future__ import annotations

import math
import sys

import click

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.errors import UserError
from igniter.provisioning import STRATEGIES, run
from igniter.provisioning.check import check_plan
from igniter.provisioning.plan import read_plan, write_plan
from igniter.provisioning.queueing import LATENCY_MODELS
from igniter.provisioning.summary import summary
from igniter.provisioning.workloads import load_perf_model


@click.command("provision")
@click.option("--workloads", "workloads_path", required=True, type=click.Path(dir_okay=False),
              help="Workloads YAML (name, model, rate req/s, slo_ms p99).")
@click.option("--perf-model", "perf_model", type=click.Path(dir_okay=False), help="Fitted model file (igniter fit).")
@click.option("--gpus", "catalog", type=click.Path(dir_okay=False), help="GPU catalog YAML (heterogeneous fleets).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="ilp", show_default=True)
@click.option("--time-limit", "time_limit", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Solver time limit in seconds.")
@click.option("--repo", "src_repo", type=click.Path(file_okay=False, exists=True),
              help="Source model repository: base configs and model files are copied from it.")
@click.option("--latency-model", type=click.Choice(LATENCY_MODELS), default="queueing", show_default=True,
              help="queueing: p99 with batch formation and queueing; half-slo: iGniter's 2 x batch latency rule.")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 0 if --out holds exactly what this run would write, else 1 with a diff.")
@json_option
@user_errors
def provision(workloads_path, perf_model, catalog, out_dir, strategy, time_limit, src_repo, latency_model, check,
              as_json):
    """Choose GPUs, batches and shares for every workload and write the plan and Triton repositories."""
    if not math.isfinite(time_limit):   # click's FloatRange lets nan and inf through
        raise UserError(f"--time-limit {time_limit} is not a number of seconds", "give e.g. --time-limit 10")
    problem, assignment, plan, seconds = run(workloads_path, perf_model, catalog, strategy, time_limit,
                                             latency_model, _loader(), src_repo)
    solve_info = {"strategy": strategy, "solve_seconds": round(seconds, 3), "status": assignment.status,
                  "details": assignment.details}
    if check:
        sys.exit(_check(plan, problem, out_dir, src_repo, solve_info, as_json))
    write_plan(plan, problem, out_dir, src_repo, solve_info)
    result = {**summary(read_plan(out_dir)), "solve_seconds": round(seconds, 3), "out": str(out_dir),
              "bound": {k: v for k, v in assignment.details.items() if k.startswith("bound")}}   # how lower_bound came
    emit(result, as_json, _human)


def _check(plan, problem, out_dir, src_repo, solve_info, as_json) -> int:
    diffs = check_plan(plan, problem, out_dir, src_repo, solve_info)
    emit({"out": out_dir, "up_to_date": not diffs, "differing": sorted(diffs), "diff": "".join(diffs.values())},
         as_json, _human_check)
    return 1 if diffs else 0


def _human_check(result: dict) -> str:
    if result["up_to_date"]:
        return f"{result['out']} is up to date"
    return (f"{result['diff']}{len(result['differing'])} file(s) in {result['out']} differ from what this run writes "
            "(re-run without --check to update them)")


def _loader():
    """Indirection for tests (they substitute a fake performance model)."""
    return load_perf_model


def _human(result: dict) -> str:
    head = (f"{result['gpus']} GPUs ({result['strategy']}, {result['status']}), cost {result['cost']:g}/h, "
            f"solved in {result['solve_seconds']:.2f} s -> {result['out']}")
    gap = "no gap: the plan is infeasible" if result["gap"] is None else f"gap {result['gap'] * 100:.1f} %"
    bound = f"lower bound {result['lower_bound']:g}, {gap}"
    if result["misses"]:
        bound += (f"\nINFEASIBLE: {len(result['misses'])} misses under the full model: "
                  + ", ".join(m.get("server") or m.get("gpu") for m in result["misses"][:10]))
    if result["accuracy_weight"]:
        head += (f"\nobjective = cost - accuracy term = {result['cost']:g} - {result['accuracy_term']:g} = "
                 f"{result['objective']:g} (accuracy weight {result['accuracy_weight']:g}); {bound} (of the objective)")
    else:
        head += f"\n{bound}"
    columns = ["workload", "model", "replicas", "batch", "share", "rate", "predicted_p99_ms", "slo_ms",
               "price_per_hour"] + (["accuracy", "accuracy_term"] if result["accuracy_weight"] else [])
    rows = [{**r, "predicted_p99_ms": "unbounded" if r["predicted_p99_ms"] is None else r["predicted_p99_ms"]}
            for r in result["workloads"]]
    return head + "\n" + table(rows, columns)
