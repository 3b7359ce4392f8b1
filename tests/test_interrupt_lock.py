"""The writer lock and signal handling on their own (no server): real signals to this process, real file locks."""

from __future__ import annotations

import os
import signal

import pytest

from igniter.deployment import interrupt
from igniter.deployment.interrupt import Interrupted, signals_interrupt
from igniter.deployment.lock import HOLDER_FILE, LOCK_DIR, writer_lock
from igniter.errors import UserError


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_raises_interrupted_with_its_exit_code(sig):
    with pytest.raises(Interrupted) as caught, signals_interrupt():
        os.kill(os.getpid(), sig)
        for _ in range(10_000_000):  # Python runs the handler between bytecodes, right after the kill
            pass
    assert caught.value.exit_code == 128 + sig


def test_deferred_holds_a_signal_until_the_block_ends():
    finished = []
    with pytest.raises(Interrupted), signals_interrupt():
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1_000_000):
                pass
            finished.append(True)  # reached: the signal waited
    assert finished == [True]


def test_a_second_signal_during_the_rollback_is_held_back():
    rolled_back = []
    with pytest.raises(Interrupted), signals_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000_000):
                pass
        except Interrupted:
            os.kill(os.getpid(), signal.SIGTERM)  # while "rolling back"
            for _ in range(1_000_000):
                pass
            rolled_back.append(True)
            raise
    assert rolled_back == [True]


def test_signal_handlers_are_restored_after_the_block():
    before = signal.getsignal(signal.SIGTERM)
    with signals_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_held_lock_names_its_holder_and_is_released(tmp_path):
    with writer_lock(tmp_path):
        assert (tmp_path / LOCK_DIR / HOLDER_FILE).exists()
        with pytest.raises(UserError) as caught, writer_lock(tmp_path, timeout_s=0.1):
            pass
    assert f"pid {os.getpid()}" in caught.value.what and "--lock-timeout" in caught.value.fix
    assert not (tmp_path / LOCK_DIR / HOLDER_FILE).exists()
    with writer_lock(tmp_path, timeout_s=0.1):  # free again
        pass


def spin(n=1_000_000):
    for _ in range(n):  # Python runs a handler between bytecodes, right after the kill
        pass


def test_a_signal_after_the_work_committed_says_it_completed():
    with pytest.raises(Interrupted) as before_commit, signals_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        spin()
    with pytest.raises(Interrupted) as in_commit, signals_interrupt():
        with interrupt.deferred():
            interrupt.mark_completed()
            os.kill(os.getpid(), signal.SIGTERM)
            spin()
    with pytest.raises(Interrupted) as after_commit, signals_interrupt():
        with interrupt.deferred():
            interrupt.mark_completed()
        os.kill(os.getpid(), signal.SIGTERM)
        spin()
    with pytest.raises(Interrupted) as next_block, signals_interrupt():  # a new block starts uncommitted
        os.kill(os.getpid(), signal.SIGTERM)
        spin()
    assert [e.value.completed for e in (before_commit, in_commit, after_commit, next_block)] == [False, True, True, False]
