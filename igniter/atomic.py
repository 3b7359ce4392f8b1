"""Atomic file writes, shared by every stage (like errors.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never a partial one.

    The file is made world-readable (mkstemp makes 0600): Triton servers may run as another user."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_many(directory: str | Path, files: dict[str, str | bytes]) -> None:
    """Replace several files of one directory together: every new file is written in full beside its target
    first, then all are renamed into place; if anything fails, the targets already renamed get their previous
    version back (kept as a hard link until the end), so the directory holds either all old or all new files,
    and no temporary file is left."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    temps: dict[str, str] = {}
    backups: dict[str, str] = {}
    replaced: list[str] = []
    try:
        for name, data in files.items():
            temps[name] = _write_temp(directory / name, data)
        for name in files:
            if (directory / name).exists():
                backups[name] = _backup(directory / name)
        for name, tmp in temps.items():
            os.replace(tmp, directory / name)
            replaced.append(name)
    except BaseException:
        for name in reversed(replaced):
            if name in backups:
                os.replace(backups.pop(name), directory / name)
            else:
                (directory / name).unlink(missing_ok=True)
        raise
    finally:
        for leftover in [*temps.values(), *backups.values()]:
            Path(leftover).unlink(missing_ok=True)


def _write_temp(path: Path, data: str | bytes) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.chmod(tmp, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _backup(path: Path) -> str:
    """A second name for the current file (a hard link: no copy), to put back if the swap fails."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(path, tmp)
    except OSError:          # no hard links here (some network file systems): a copy
        shutil.copy2(path, tmp)
    return tmp


def swap_in_directory(new: Path, out: Path) -> None:
    """Put the complete directory ``new`` (a sibling of ``out``) at ``out``: readers see the old directory or the
    new one, never a mix, and on any failure an existing ``out`` is as it was."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    try:
        os.replace(out, old)   # onto the empty temporary directory: rename(2) replaces an empty one
    except BaseException:
        old.rmdir()
        raise
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
