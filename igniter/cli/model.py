"""`igniter fit` (profile store -> model file) and `igniter predict` (one co-located set)."""

from __future__ import annotations

import time

import click

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.errors import UserError


@click.command("fit")
@click.option("--profiles", "profile_dir", required=True, type=click.Path(file_okay=False),
              help="Profile store directory (hardware.json, solo.csv, pairs.csv).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
@click.option("--no-residual", is_flag=True, help="Analytical model only (no xgboost residual).")
@json_option
@user_errors
def fit(profile_dir, out_path, no_residual, as_json):
    """Fit the performance model on a profile store and write the model file."""
    from igniter.model import PerfModel  # imported here: xgboost is slow to import and only these commands need it

    start = time.perf_counter()
    pm = PerfModel.fit(profile_dir, use_residual=not no_residual)   # validates everything before writing
    try:
        pm.save(out_path)   # atomic: the previous model file stays until the new one is complete
    except OSError as err:
        raise UserError(f"cannot write the model file {out_path!r}: {err.strerror or err}",
                        "choose a writable --out path") from None
    result = {"out": out_path, "models": pm.models, "pressure_metric": pm.pressure_metric,
              "residual": pm.residual is not None, "fit_seconds": round(time.perf_counter() - start, 3),
              "coefficients": [{"model": m, "sensitivity": round(f.sensitivity, 4), "sched_ms": round(f.sched_ms, 4)}
                               for m, f in sorted(pm.fits.items())]}
    emit(result, as_json, lambda r: f"wrote {r['out']} (pressure: {r['pressure_metric']}, residual: "
                                    f"{r['residual']}, {r['fit_seconds']} s)\n" + table(r["coefficients"]))


@click.command("predict")
@click.option("--perf-model", "model_path", required=True, type=click.Path(dir_okay=False), help="Model file.")
@click.option("--colocate", required=True, help='Co-located set: "MODEL:BATCH:SHARE,MODEL:BATCH:SHARE,...".')
@json_option
@user_errors
def predict(model_path, colocate, as_json):
    """Predict batch latency and throughput of every member of one co-located set."""
    from igniter.model import PerfModel

    members = parse_colocate(colocate)
    pm = PerfModel.load(model_path)
    predictions = pm.predict(members)
    rows = [{**p._asdict(), "extrapolated": outside_profile(pm, m)} for p, m in zip(predictions, members)]
    for row, m in zip(rows, members):
        if row["extrapolated"]:
            click.echo(f"warning: {m.model} at batch {m.batch}, share {m.share:g} is outside its profiled range "
                       f"(batches {min(pm.batches(m.model))}-{max(pm.batches(m.model))}, shares "
                       f"{min(pm.shares(m.model)):g}-{max(pm.shares(m.model)):g}): the prediction is extrapolated. "
                       "To fix: profile that batch and share, or trust this figure less", err=True)
    emit(rows, as_json, table)


def outside_profile(pm, member) -> bool:
    """Beyond the profiled grid the model extrapolates; inside it interpolates between measured points."""
    batches, shares = pm.batches(member.model), pm.shares(member.model)
    return not (min(batches) <= member.batch <= max(batches) and min(shares) <= member.share <= max(shares))


def parse_colocate(text: str) -> list:
    from igniter.model import Member

    members = []
    for item in (x.strip() for x in text.split(",")):
        parts = item.split(":")
        if len(parts) != 3 or not parts[0]:
            raise UserError(f"'{item}' in --colocate is not MODEL:BATCH:SHARE",
                            'write e.g. --colocate "resnet50:8:30,vgg19:4:50"')
        try:
            batch, share = int(parts[1]), float(parts[2])
        except ValueError:
            raise UserError(f"'{item}' in --colocate has a non-numeric batch or share",
                            "use a whole batch size and a share in percent, e.g. resnet50:8:30") from None
        members.append(Member(parts[0], batch, share))
    return members
