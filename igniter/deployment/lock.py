"""One writer per state directory: apply, down and demo hold an exclusive lock on it; status and --dry-run do not.

The lock is an OS file lock (the ``filelock`` library: flock on Linux), so it is released by the kernel when its
holder dies, even by kill -9: a stale lock cannot block the next writer. Beside it the holder writes who it is
(pid and command line) so a writer that gives up can say whom it waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from igniter.atomic import atomic_write
from igniter.errors import UserError

LOCK_FILE = "state.lock"
HOLDER_FILE = "state.lock.holder"
DEFAULT_LOCK_TIMEOUT_S = 5.0


@contextlib.contextmanager
def writer_lock(state_dir: Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the state directory's writer lock; wait up to ``timeout_s`` for another writer, then one UserError."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(state_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise UserError(f"another igniter is changing this deployment ({holder(state_dir)}); waited {timeout_s:g} s",
                        "wait for it to finish and run this again, or give a longer --lock-timeout",
                        str(state_dir / LOCK_FILE)) from None
    holder_path = state_dir / HOLDER_FILE
    try:
        atomic_write(holder_path, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)}) + "\n")
        yield
    finally:
        holder_path.unlink(missing_ok=True)
        lock.release()


def holder(state_dir: Path) -> str:
    """'pid N: COMMAND' of the writer holding the lock, as it wrote it (or why that is not known)."""
    try:
        data = json.loads((Path(state_dir) / HOLDER_FILE).read_text()[:4096])
        return f"pid {int(data['pid'])}: {str(data['command'])[:200]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not yet recorded"
