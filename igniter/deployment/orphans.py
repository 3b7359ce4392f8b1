"""Servers of a deployment that its state lost: tagged with its owner (OWNER_ENV) but recorded nowhere.

They exist only after igniter itself died mid-apply (kill -9, OOM) between starting a process and committing the
state; every writer holds the state directory's lock, so under the lock any tagged process the state does not
list is such an orphan, and is stopped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from igniter.triton.server import owned_by, owned_servers_under, stop_process_group


def tagged_servers(owner: str) -> list[int]:
    """Pids of the live tritonservers carrying exactly this owner tag (the state directory, resolved)."""
    return [pid for pid in owned_servers_under(Path(owner)) if owned_by(pid, owner)]


def stop_orphans(owner: str, known_pids: Iterable[int | None], say: Callable[[str], None]) -> list[int]:
    """Stop every tagged server of ``owner`` whose pid is not in ``known_pids``; returns their pids."""
    known = {pid for pid in known_pids if pid}
    orphans = [pid for pid in tagged_servers(owner) if pid not in known and pid != os.getpid()]
    for pid in orphans:
        say(f"stop     orphan tritonserver pid {pid} (tagged for this deployment, not in its state)")
        stop_process_group(pid, timeout_s=15)
    return orphans
