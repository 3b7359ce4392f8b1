"""Shared CLI plumbing: --json, one-line user errors with exit code 2, output helpers."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from igniter.errors import UserError

EXIT_USER_ERROR = 2


def json_option(func: Callable) -> Callable:
    """Add ``--json`` (machine-readable stdout) to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(func)


def user_errors(func: Callable) -> Callable:
    """Turn UserError (and click's own usage errors keep their exit 2) into one stderr line + exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as err:
            click.echo(f"error: {err.line()}", err=True)
            sys.exit(EXIT_USER_ERROR)

    return wrapper


def emit(result: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print ``result`` as JSON (one document) or through the ``human`` formatter."""
    if as_json:
        click.echo(json.dumps(result, indent=None, sort_keys=False, default=str))
    elif human is not None:
        click.echo(human(result))
    else:
        click.echo(json.dumps(result, indent=2, default=str))


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Plain-text table for human output."""
    if not rows:
        return "(nothing)"
    columns = columns or list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)
