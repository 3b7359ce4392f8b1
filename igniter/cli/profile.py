"""Profiling commands: `igniter profile` (measure solo + co-located runs on a real Triton into a profile store) and
`igniter import-profiles` (profiles measured elsewhere -> profile store)."""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
from pathlib import Path

import click

from igniter.cli.common import emit, json_option, user_errors
from igniter.errors import UserError
from igniter.profiling.backends import BACKENDS
from igniter.profiling.importers import FORMATS, import_profiles as run_import
from igniter.schema import NAME_MAX, NAME_PATTERN, NAME_RULE


@click.command("import-profiles")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Source format.")
@click.argument("src_dir", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Profile store to write.")
@json_option
@user_errors
def import_profiles(fmt, src_dir, out_dir, as_json):
    """Convert profiles measured elsewhere (SRC_DIR) into a profile store."""
    try:
        result = run_import(fmt, src_dir, out_dir)
    except OSError as err:
        raise UserError(f"cannot write the profile store {out_dir!r}: {err.strerror or err}",
                        "choose a writable --out directory") from None
    emit(result, as_json, lambda r: f"wrote {r['out']}: {r['solo_rows']} solo rows, {r['pair_rows']} pair rows "
                                    f"({', '.join(r['models'])})")



def _csv_list(text: str, kind, what: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{what} {text!r} is not a comma-separated list of numbers", f"give e.g. --{what} 1,2,4") from None
    if not values:
        raise UserError(f"--{what} is empty: nothing to profile", f"give at least one value, e.g. --{what} 1,2")
    return list(dict.fromkeys(values))


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write to the output directory {str(out)!r}: {err.strerror or err}",
                        "choose a writable --out directory") from None


def _check_models(repo: Path, models: list[str], batches: list[int]) -> None:
    from igniter.triton.config import read_config  # noqa: PLC0415
    from igniter.triton.server import list_repo_models  # noqa: PLC0415

    known = list_repo_models(repo)
    for model in models:
        if model not in known:
            raise UserError(f"model {model!r} is not in the repository {str(repo)!r}",
                            f"choose from: {', '.join(known) or '(none)'}")
        max_batch = read_config(repo / model / "config.pbtxt").max_batch_size
        over = [b for b in batches if b > max(max_batch, 1)]
        if over:
            raise UserError(f"batch {over[0]} exceeds max_batch_size {max_batch} of model {model!r}",
                            "lower --batches or raise the model's max_batch_size")


@click.command()
@click.option("--repo", type=click.Path(path_type=Path), default=Path("triton_repo"), show_default=True,
              help="Triton model repository (the models to profile).")
@click.option("--models", "models_csv", required=True, help="Comma-separated models to profile.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Profile store directory to (re)fill.")
@click.option("--batches", "batches_csv", default="1,2,4,8", show_default=True, help="Batch sizes.")
@click.option("--shares", "shares_csv", default="50,100", show_default=True, help="Resource shares (%).")
@click.option("--pairs", type=click.IntRange(0), default=None, help="Co-located pair runs [default: 2 x models].")
@click.option("--duration", type=click.FloatRange(0.05), default=3.0, show_default=True, help="Seconds per measurement.")
@click.option("--repeats", type=click.IntRange(1), default=1, show_default=True, help="Measurements per run (spread).")
@click.option("--warmup", type=click.FloatRange(0), default=1.0, show_default=True, help="Warm-up seconds per run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the pair design and inputs.")
@click.option("--server", "server_url", help="Profile a running server (http://HOST:PORT); shares must be 100.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="How a workload gets its share: CPU cores + threads, or NVIDIA MPS.")
@click.option("--loadgen", "loadgen_name", type=click.Choice(["builtin", "perf_analyzer"]), default="builtin",
              show_default=True, help="Load generator.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@json_option
@user_errors
def profile(repo: Path, models_csv: str, out: Path, batches_csv: str, shares_csv: str, pairs: int | None,
            duration: float, repeats: int, warmup: float, seed: int, server_url: str | None, backend: str,
            loadgen_name: str, quiet: bool, as_json: bool) -> None:
    """Profile models solo (batch x share) and co-located in pairs against a real Triton; resumable.

    throughput_rps is samples (inferences) per second; latency_* is the latency of one batch request (ms).
    """
    from igniter.profiling.backends import get_backend  # noqa: PLC0415
    from igniter.profiling.loadgen import require_perf_analyzer  # noqa: PLC0415
    from igniter.profiling.runner import ProfileSpec, run_profile  # noqa: PLC0415
    from igniter.profiling.store import ProfileStore  # noqa: PLC0415
    from igniter.triton.client import resolve_repo  # noqa: PLC0415

    models = _csv_list(models_csv, str, "models")
    unsafe = next((m for m in models if not re.fullmatch(NAME_PATTERN, m) or len(m) > NAME_MAX), None)
    if unsafe is not None:   # refused now, not when its first measurement is stored
        raise UserError(f"model name {unsafe[:80]!r} in --models must be {NAME_RULE}",
                        "rename the model directory in the repository")
    batches = _csv_list(batches_csv, int, "batches")
    shares = _csv_list(shares_csv, float, "shares")
    if any(b < 1 for b in batches):
        raise UserError(f"--batches has a batch below 1: {batches_csv}", "use batch sizes >= 1")
    if any(not 0 < s <= 100 for s in shares):
        raise UserError(f"--shares {shares_csv} has a value outside (0, 100]", "give percentages like 50,100")
    if pairs and len(models) < 2:
        raise UserError("pair runs need at least two different models", "give two or more --models, or --pairs 0")
    if loadgen_name == "perf_analyzer":
        require_perf_analyzer()  # before any server starts
    if not server_url:
        repo = resolve_repo(repo)
        _check_models(repo, models, batches)
    _check_out(out)
    spec = ProfileSpec(repo=repo, models=models, batches=batches, shares=shares, pairs=pairs, duration_s=duration,
                       repeats=repeats, warmup_s=warmup, seed=seed, loadgen=loadgen_name)
    # SIGTERM unwinds like Ctrl-C: servers are stopped, the store keeps every finished run.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        from igniter.profiling.runner import Progress  # noqa: PLC0415

        resource = get_backend(backend, server_url=server_url)
        resource.check_shares(shares)  # before connecting or starting anything
        with resource:
            summary = run_profile(spec, ProfileStore(out), resource, progress=Progress(0, enabled=not quiet))
    finally:
        signal.signal(signal.SIGTERM, previous)
    emit(summary, as_json, lambda s: (f"profiled {s['solo_runs']} solo and {s['pair_runs']} pair runs "
                                      f"({s['skipped']} already stored) in {s['seconds']:.1f} s -> {s['out']}"))
