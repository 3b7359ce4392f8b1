"""SIGTERM and SIGHUP handled like SIGINT: the work in progress is rolled back, then the command exits 128+signal.

``timeout``, CI runners, systemd and Kubernetes stop a command with SIGTERM, a closed terminal sends SIGHUP; without
a handler Python dies at once and whatever the apply had started keeps running unrecorded. Inside
``signals_interrupt()`` the first of these signals raises ``Interrupted`` (a BaseException, like KeyboardInterrupt,
so the rollback's ``except BaseException`` sees it and ``except Exception`` does not swallow it); later ones are
held back so the rollback itself runs to its end. Inside ``deferred()`` (the commit of a new state and the retiring
of old servers, which must not stop half way) a signal is held back and raised when the block ends. Once the work
has committed (``mark_completed()``) a signal can no longer undo it: from then on, to the end of the block, it is
raised as ``Interrupted`` with ``completed`` set, so no caller reports a rollback that did not happen.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    def __init__(self, signum: int, completed: bool = False):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.completed = completed  # the work had committed before the signal came: it stands, nothing rolled back

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_pending: list[int] = []  # signals received and held back
_raised = False  # the first signal was raised already: the rest are held back
_deferring = 0
_completed = False  # the work of this block has committed (mark_completed)


def _handler(signum: int, frame) -> None:
    global _raised
    if _raised or _deferring:
        _pending.append(signum)
        return
    _raised = True
    raise Interrupted(signum, _completed)


def mark_completed() -> None:
    """The work has committed (call it inside ``deferred()``): signals from here on say so."""
    global _completed
    _completed = True


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into Interrupted for the duration of the block (main thread only)."""
    global _raised, _completed
    previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    _pending.clear()
    _raised = _completed = False
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold back the signals of ``signals_interrupt`` until the block ends, then raise the first one."""
    global _deferring, _raised
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and _pending and not _raised:
        _raised = True
        raise Interrupted(_pending[0], _completed)
