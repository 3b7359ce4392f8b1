"""What igniter owns on disk: directory markers, path containment, and output paths that fail in one line.

Shared by every stage (like errors.py and atomic.py). igniter replaces or deletes a directory only when it carries
the marker file igniter wrote when it made it; any path built from a name in an input file is checked to stay
inside the directory it was meant for. The process side (which tritonserver processes are igniter's) lives beside
the launcher: igniter.triton.server.owned_by.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

from igniter.errors import UserError

MARKER = ".igniter-owned"
MARKER_FORMAT = "igniter-owned"
_MARKER_MAX_BYTES = 4096


def mark(directory: Path, made_by: str) -> None:
    """Record that igniter made ``directory`` (``made_by``: the command or stage, for the person who finds it)."""
    text = json.dumps({"format": MARKER_FORMAT, "made_by": made_by}, sort_keys=True) + "\n"
    (Path(directory) / MARKER).write_text(text)


def is_owned(directory: Path) -> bool:
    """True when ``directory`` is a real directory holding igniter's marker (a regular file, not a link)."""
    directory, marker = Path(directory), Path(directory) / MARKER
    if directory.is_symlink() or not directory.is_dir() or marker.is_symlink() or not marker.is_file():
        return False
    try:
        with marker.open("rb") as fh:
            data = json.loads(fh.read(_MARKER_MAX_BYTES))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == MARKER_FORMAT


def is_empty_dir(directory: Path) -> bool:
    directory = Path(directory)
    return directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir())


def require_owned(directory: Path, what: str, fix: str) -> None:
    """Refuse to replace or delete ``directory`` unless igniter made it (an empty directory holds nothing to lose)."""
    directory = Path(directory)
    if directory.exists() and not is_empty_dir(directory) and not is_owned(directory):
        raise UserError(f"{what} {directory} is not an igniter output (it has no {MARKER} marker)", fix)


def make_owned_dir(directory: Path, made_by: str, what: str, fix: str) -> Path:
    """Create ``directory`` (or adopt an empty one) with the marker; an existing igniter directory is reused."""
    directory = Path(directory)
    with output_errors(directory, what):
        require_owned(directory, what, fix)
        directory.mkdir(parents=True, exist_ok=True)
        if not is_owned(directory):
            mark(directory, made_by)
    return directory


def contained(path: Path, root: Path, what: str, fix: str) -> Path:
    """``path`` resolved, refused unless it lies inside ``root`` (a name with '..', '/' or a link must not escape)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise UserError(f"{what} {path} resolves to {resolved}, outside {base}", fix)
    return resolved


def child_of(root: Path, name: str, what: str, fix: str) -> Path:
    """``root / name`` where ``name`` must be one plain path component (no separator, not '.' or '..')."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UserError(f"{what} {str(name)[:80]!r} is not a plain name (it would leave {root})", fix)
    return Path(root) / name


@contextlib.contextmanager
def output_errors(path: Path, what: str) -> Iterator[None]:
    """Turn the OS refusing an output path (read-only, too long, not a directory...) into one line."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(f"cannot write {what} {path}: {reason}",
                        "choose a writable location with a shorter path") from err
