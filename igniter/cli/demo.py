"""`igniter demo`: the embedded default, end to end on a local real Triton (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import click

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.provisioning import STRATEGIES


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path(".igniter/demo"), show_default=True,
              help="Where the model file, plan, state, result.json and report.html go.")
@click.option("--workloads", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Workloads YAML (default: examples/demo_workloads.yaml).")
@click.option("--duration", type=click.FloatRange(1, 600), default=20.0, show_default=True,
              help="Seconds of replayed traffic.")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="ilp", show_default=True)
@json_option
@user_errors
def demo(workdir: Path, workloads: Path | None, duration: float, strategy: str, as_json: bool) -> None:
    """Profile (or reuse profiles), fit, provision, apply, replay the planned rates, and report SLO attainment."""
    from igniter.demo import DemoOptions, run_demo  # noqa: PLC0415 - pulls in every stage

    opts = DemoOptions(workdir=workdir, duration_s=duration, strategy=strategy)
    if workloads:
        opts.workloads = workloads
    result = run_demo(opts, say=lambda m: click.echo(m, err=True))
    emit(result, as_json, _human)


def _human(result: dict) -> str:
    rows = [{k: r[k] for k in ("name", "model", "rate", "slo_ms", "batch", "share", "predicted_p99_ms",
                               "measured_p99_ms", "attainment", "requests", "failed")} for r in result["workloads"]]
    return "\n".join([
        table(rows),
        f"overall attainment {result['attainment'] * 100:.2f} % of requests within SLO; "
        f"{result['hosts']} host(s), {result['cores_used']} core(s); plan gap "
        + ("none (the plan misses SLOs)" if result["gap"] is None else f"{result['gap'] * 100:.1f} %"),
        f"machine: {result['machine']}; profiles: {result['profiles']}; {result['seconds']} s in all",
        f"report: {result['report']}",
    ])
