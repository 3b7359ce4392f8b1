"""`igniter demo`: the embedded default, end to end on a local real Triton (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import click

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.cli.deploy import lock_timeout_option, writing
from igniter.provisioning import STRATEGIES


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path(".igniter/demo"), show_default=True,
              help="Where the model file, plan, state, result.json and report.html go.")
@click.option("--workloads", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Workloads YAML (default: examples/demo_workloads.yaml).")
@click.option("--duration", type=click.FloatRange(1, 600), default=20.0, show_default=True,
              help="Seconds of replayed traffic.")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="ilp", show_default=True)
@lock_timeout_option
@json_option
@user_errors
def demo(workdir: Path, workloads: Path | None, duration: float, strategy: str, lock_timeout: float,
         as_json: bool) -> None:
    """Profile (or reuse profiles), fit, provision, apply, replay the planned rates, and report SLO attainment."""
    from igniter.demo import DemoOptions, own_workdir, run_demo  # noqa: PLC0415 - pulls in every stage

    opts = DemoOptions(workdir=workdir, duration_s=duration, strategy=strategy)
    if workloads:
        opts.workloads = workloads
    own_workdir(workdir)  # before its lock is made inside it
    with writing(workdir, lock_timeout, "demo", as_json):  # the demo deploys into workdir/state.json
        result = run_demo(opts, say=lambda m: click.echo(m, err=True))
    emit(result, as_json, _human)


def _ms(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) and value == value else "-"


def _human(result: dict) -> str:
    rows = [{k: r[k] for k in ("name", "model", "rate", "slo_ms", "batch", "share", "predicted_p99_ms",
                               "measured_p99_ms", "attainment", "requests", "failed")} for r in result["workloads"]]
    return "\n".join([
        table(rows),
        f"overall attainment {result['attainment'] * 100:.2f} % of requests within SLO; "
        f"{result['hosts']} host(s), {result['cores_used']} core(s); plan gap "
        + ("none (the plan misses SLOs)" if result["gap"] is None else f"{result['gap'] * 100:.1f} %"),
        "where the time went: " + "; ".join(
            f"{r['name']} p99 95 % interval {_ms(r['measured_p99_interval_ms'][0])}-"
            f"{_ms(r['measured_p99_interval_ms'][1])} ms, Triton queue {_ms(r.get('server_queue_ms'))} + compute "
            f"{_ms(r.get('server_compute_ms'))} ms mean, load generator send lag p99 {_ms(r['send_lag_p99_ms'])} ms"
            for r in result["workloads"]),
        "cores kept busy: " + ", ".join(f"{party} {cores:.2f}" for party, cores in result["cores_busy"].items()),
        f"machine: {result['machine']}; profiles: {result['profiles']}; {result['seconds']} s in all",
        f"report: {result['report']}",
    ] + [f"warning: {w}" for w in result["warnings"]])
