"""Profiling commands: `igniter import-profiles` (profiles measured elsewhere -> profile store)."""

from __future__ import annotations

import click

from igniter.cli.common import emit, json_option, user_errors
from igniter.profiling.importers import FORMATS, import_profiles as run_import


@click.command("import-profiles")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Source format.")
@click.argument("src_dir", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Profile store to write.")
@json_option
@user_errors
def import_profiles(fmt, src_dir, out_dir, as_json):
    """Convert profiles measured elsewhere (SRC_DIR) into a profile store."""
    result = run_import(fmt, src_dir, out_dir)
    emit(result, as_json, lambda r: f"wrote {r['out']}: {r['solo_rows']} solo rows, {r['pair_rows']} pair rows "
                                    f"({', '.join(r['models'])})")
