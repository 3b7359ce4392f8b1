"""`igniter replay`: run a plan on local Triton servers with emulated accelerator timings and measure its p99."""

from __future__ import annotations

import math
from pathlib import Path

import click

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.errors import UserError


@click.command()
@click.argument("plan", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--perf-model", "perf_model", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Fitted model file (igniter fit): the emulated batch latencies.")
@click.option("--time-scale", "time_scale", type=float, default=10.0, show_default=True,
              help="K: emulated latencies x K, rates / K; results are reported unscaled.")
@click.option("--duration", type=float, default=60.0, show_default=True,
              help="Real seconds of measured traffic (emulated seconds: duration / K).")
@click.option("--warmup", type=float, default=3.0, show_default=True, help="Real seconds before measuring.")
@click.option("--trace", type=click.Path(path_type=Path, dir_okay=False),
              help="Rate trace CSV: timestamp (s or ISO 8601) and one req/s column per workload, or a scale column.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=Path(".igniter/replay"),
              show_default=True, help="Where the emulated plan, state, result.json and report.html go.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the arrival processes.")
@click.option("--load-step", "load_steps", multiple=True, metavar="FACTOR@T",
              help="Every rate x FACTOR from T unscaled seconds after traffic starts (repeatable; steps compound).")
@click.option("--interference", multiple=True, metavar="GPU=FACTOR@T",
              help="An emulated neighbour: every batch on the plan's GPU x FACTOR from T unscaled seconds on.")
@click.option("--watch", "watch", is_flag=True,
              help="Clients through each workload's front door; the watch loop re-provisions live (needs --workloads).")
@click.option("--workloads", type=click.Path(path_type=Path, dir_okay=False),
              help="--watch: the workloads file PLAN was provisioned from (what re-plans start from).")
@click.option("--gpus", "catalog", type=click.Path(path_type=Path, dir_okay=False),
              help="--watch: the GPU catalog PLAN was provisioned with, if any.")
@click.option("--watch-interval", "watch_interval", type=float, default=1.0, show_default=True,
              help="--watch: unscaled seconds between two observations (real: x K).")
@json_option
@user_errors
def replay(plan: Path, perf_model: Path, time_scale: float, duration: float, warmup: float, trace: Path | None,
           workdir: Path, seed: int, load_steps: tuple[str, ...], interference: tuple[str, ...], watch: bool,
           workloads: Path | None, catalog: Path | None, watch_interval: float, as_json: bool) -> None:
    """Replay PLAN (plan.json) with Poisson arrivals at its rates on emulated GPUs; report measured p99 vs predicted.
    With --watch, through the front doors with the watch loop re-provisioning live."""
    from igniter.replay.run import ReplayOptions, run_replay  # noqa: PLC0415 - starts servers, heavy imports
    from igniter.replay.trace import parse_step  # noqa: PLC0415

    for name, value, low in (("--time-scale", time_scale, 0.0), ("--duration", duration, 0.0), ("--warmup", warmup, -1e-9)):
        if not (math.isfinite(value) and value > low):
            raise UserError(f"{name} {value} is not a positive number of {'seconds' if name != '--time-scale' else 'times'}",
                            f"give e.g. {name} 10")
    opts = ReplayOptions(plan=plan, perf_model=perf_model, workdir=workdir, time_scale=time_scale,
                         duration_s=duration, warmup_s=warmup, trace=trace, seed=seed,
                         load_steps=[parse_step(x, "--load-step", with_gpu=False) for x in load_steps],
                         interference=[parse_step(x, "--interference", with_gpu=True) for x in interference])
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    if not watch:
        emit(run_replay(opts, say=say), as_json, _human)
        return
    from igniter.replay.live import WatchOptions, run_live_replay  # noqa: PLC0415

    if workloads is None:
        raise UserError("--watch needs the workloads file the plan was provisioned from",
                        "add --workloads FILE (and --gpus CATALOG if the plan used one)", "--watch")
    emit(run_live_replay(opts, WatchOptions(workloads, catalog, watch_interval), say=say), as_json, _human_watch)


def _human(result: dict) -> str:
    columns = ["name", "model", "rate", "slo_ms", "replicas", "batch", "predicted_p99_ms", "measured_p50_ms",
               "measured_p99_ms", "attainment", "requests", "failed"]
    overhead = result["overhead"]
    return "\n".join([
        table([{c: r[c] for c in columns} for r in result["workloads"]]),
        f"{result['gpus']} GPU(s), {result['servers']} server(s), K = {result['time_scale']:g}, "
        f"{result['emulated_duration_s']:g} emulated s; worst attainment {result['attainment_min'] * 100:.2f} %",
        f"residual overhead of the real path: p50 {overhead['real_p50_ms']:.2f} ms, p99 {overhead['real_p99_ms']:.2f} ms"
        f" real ({overhead['unscaled_p99_ms']:.3f} ms unscaled p99), {overhead['per_batch_real_ms']:.2f} ms real per"
        " batch left out of every emulated hold; times above are unscaled",
        f"report: {result['report']}",
    ])


def _human_watch(result: dict) -> str:
    columns = ["name", "model", "slo_ms", "measured_p50_ms", "measured_p99_ms", "attainment", "requests", "failed"]
    return "\n".join([
        table([{c: r[c] for c in columns} for r in result["workloads"]]),
        f"attainment {result['attainment'] * 100:.2f} % (worst workload {result['attainment_min'] * 100:.2f} %), "
        f"{result['gpu_hours']:.4g} GPU-hours, {result['reconfigurations']} reconfiguration(s), "
        f"{result['failed_during_reconfiguration']} failed request(s) during them; K = {result['time_scale']:g}",
        "detections: " + (", ".join(f"{d['kind']} at {d['time_s']:g} s" for d in result["detections"]) or "none"),
        f"plot: {result['plot']}; report: {result['report']}",
    ])
