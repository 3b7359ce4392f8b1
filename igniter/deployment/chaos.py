"""Poisson load through a stable endpoint while something else happens (a reshare, a kill -9, a signal).

Unlike the load generator's bounded runs, this load runs until stopped, so a test or benchmark can wrap any
sequence of faults in it; every request is kept as (scheduled time, latency or None, error), on the monotonic
clock, so failures can be placed against the faults' times.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from igniter.profiling.loadgen import triton_infer

DRAIN_S = 30.0


@dataclass
class Request:
    scheduled: float  # time.monotonic()
    latency_ms: float | None  # None: failed
    error: str | None = None


@dataclass
class LoadRecord:
    requests: list[Request] = field(default_factory=list)

    @property
    def failed(self) -> list[Request]:
        return [r for r in self.requests if r.latency_ms is None]

    def latencies_ms(self) -> np.ndarray:
        return np.array([r.latency_ms for r in self.requests if r.latency_ms is not None], dtype=float)


class PoissonLoad:
    """Open-loop Poisson arrivals at ``rate_rps`` of single-sample requests to ``model`` at gRPC ``endpoint``."""

    def __init__(self, endpoint: str, model: str, rate_rps: float, seed: int = 0, timeout_s: float = 30.0):
        self.endpoint, self.model, self.rate_rps, self.timeout_s = endpoint, model, rate_rps, timeout_s
        self.rng = np.random.default_rng(seed)
        self.record = LoadRecord()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PoissonLoad":
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(DRAIN_S + 30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # noqa: BLE001 - surfaced to the caller in __enter__
            self._error = err
            self._ready.set()

    async def _main(self) -> None:
        async with triton_infer(self.endpoint, self.model, 1, timeout_s=self.timeout_s) as infer:
            self._ready.set()
            tasks, next_at = [], time.monotonic()
            while not self._stop.is_set():
                next_at += float(self.rng.exponential(1.0 / self.rate_rps))
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                tasks.append(asyncio.ensure_future(self._one(infer, next_at)))
            if tasks:
                await asyncio.wait(tasks, timeout=DRAIN_S)

    async def _one(self, infer, scheduled: float) -> None:
        try:
            await infer()
            self.record.requests.append(Request(scheduled, (time.monotonic() - scheduled) * 1e3))
        except Exception as err:  # noqa: BLE001 - every failure is kept
            self.record.requests.append(Request(scheduled, None, f"{type(err).__name__}: {err}"[:300]))
