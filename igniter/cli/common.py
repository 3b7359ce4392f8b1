"""Shared CLI plumbing: --json, one-line errors (exit 2 for what the user can fix, 1 for igniter's bugs), output.

The error form (docs/artefacts.md, "The CLI error form"): the error is one line, the last on stderr,
``error: WHAT (WHERE). To fix: FIX``; with --json it is also one JSON object on stdout,
``{"error": ..., "where": ..., "fix": ..., "exit_code": ...}``.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import tempfile
import traceback
from typing import Any, Callable, NoReturn

import click

from igniter.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
DEBUG_ENV = "IGNITER_DEBUG"  # set to 1: internal errors print their traceback (it always goes to a log file)
# The OS refusing a path the user chose (an argument, or a name in an input file that became a path): the user's to
# fix, wherever it surfaces. ENOENT is not among them: a missing file igniter expected is a bug.
PATH_ERRNOS = {errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
               errno.ENOTDIR, errno.EISDIR, errno.ELOOP}


def json_option(func: Callable) -> Callable:
    """Add ``--json`` (machine-readable stdout) to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(func)


def user_errors(func: Callable) -> Callable:
    """Turn a UserError raised by the command into the one-line error form and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as err:
            fail(err, bool(kwargs.get("as_json")))
        except OSError as err:
            if err.errno not in PATH_ERRNOS:
                raise
            fail(path_error(err), bool(kwargs.get("as_json")))

    return wrapper


def path_error(err: OSError) -> UserError:
    where = f" {err.filename}" if err.filename else ""
    return UserError(f"cannot use{where}: {err.strerror or err}",
                     "choose a path that exists, is writable and shorter (each name at most 255 bytes)")


def fail(err: UserError, as_json: bool, exit_code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print ``err`` in the error form and exit."""
    if as_json:
        what = " ".join(err.what.split())
        click.echo(json.dumps({"error": what, "where": err.where, "fix": " ".join(err.fix.split()),
                               "exit_code": exit_code}))
    sys.stdout.flush()
    click.echo(f"error: {err.line()}", err=True)
    sys.exit(exit_code)


def usage_error(err: click.ClickException) -> UserError:
    """click's own errors (missing option, bad choice, out of range...) as one line with a fix."""
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else "igniter"
    see = f"see `{command} --help`"
    param = getattr(err, "param", None)
    if isinstance(err, click.MissingParameter) and param is not None and ctx is not None:
        fix = f"give {param.get_error_hint(ctx)} ({see})"
    elif isinstance(err, click.BadParameter) and param is not None and ctx is not None:
        fix = f"give a valid value for {param.get_error_hint(ctx)} ({see})"
    else:
        fix = see
    return UserError(err.format_message().rstrip("."), fix, command)


def internal_error(err: BaseException) -> UserError:
    """An exception igniter did not expect: one line pointing at a log file holding the traceback."""
    text = "".join(traceback.format_exception(err))
    if os.environ.get(DEBUG_ENV) == "1":
        sys.stderr.write(text)
    try:
        fd, log = tempfile.mkstemp(prefix="igniter-error-", suffix=".log")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    except OSError:
        log = f"(not written; rerun with {DEBUG_ENV}=1 to see it)"
    return UserError(f"internal error: {type(err).__name__}: {err}",
                     f"this is a bug in igniter; please report it with the traceback in {log}")


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
