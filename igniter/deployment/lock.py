"""One writer per state directory: apply, down and demo hold an exclusive lock on it; status and --dry-run do not.

The lock is an OS file lock (the ``filelock`` library: flock on Linux), so it is released by the kernel when its
holder dies, even by kill -9: a stale lock cannot block the next writer. Beside it the holder writes who it is
(pid and command line) so a writer that gives up can say whom it waited for. Both live in ``<state dir>/lock/``, a
directory carrying igniter's ownership marker (a plan directory holding a stopped deployment stays replaceable).
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
from igniter.ownership import make_owned_dir

LOCK_DIR = "lock"
LOCK_FILE = "state.lock"
HOLDER_FILE = "holder.json"
DEFAULT_LOCK_TIMEOUT_S = 5.0


@contextlib.contextmanager
def writer_lock(state_dir: Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the state directory's writer lock; wait up to ``timeout_s`` for another writer, then one UserError."""
    lock_dir = make_owned_dir(Path(state_dir) / LOCK_DIR, "igniter (the state directory's writer lock)",
                              "lock directory", "choose another --state directory")
    lock = FileLock(lock_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise UserError(f"another igniter is changing this deployment ({holder(lock_dir)}); waited {timeout_s:g} s",
                        "wait for it to finish and run this again, or give a longer --lock-timeout",
                        str(lock_dir / LOCK_FILE)) from None
    holder_path = lock_dir / HOLDER_FILE
    try:
        # cut as holder() shows it: a long command line (mutmut passes hundreds of names) stays within its 4 KiB read
        atomic_write(holder_path, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:200]}) + "\n")
        yield
    finally:
        holder_path.unlink(missing_ok=True)
        lock.release()


def holder(lock_dir: Path) -> str:
    """'pid N: COMMAND' of the writer holding the lock, as it wrote it (or why that is not known)."""
    try:
        data = json.loads((Path(lock_dir) / HOLDER_FILE).read_text()[:4096])
        return f"pid {int(data['pid'])}: {str(data['command'])[:200]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not yet recorded"
