"""What the watcher remembers between intervals, and between runs of `igniter watch --once` (a cron job's runs):
``<state dir>/watch-history.json``, typed and versioned like the state (docs/artefacts.md, "igniter watch")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from igniter.atomic import atomic_write
from igniter.ownership import output_errors
from igniter.schema import NonNegativeFloat, SafeName, Strict, dump_json, read_json, validate

HISTORY_FORMAT, HISTORY_VERSION = "igniter-watch-history", 1
MAX_HISTORY = 256   # intervals kept per series (the EWMA forgets older ones anyway: 0.5^256)
HISTORY_FIX = "move the file away: igniter watch then starts a fresh history"
Series = Annotated[list[float], Field(max_length=MAX_HISTORY)]
Evidence = Annotated[list[float | None], Field(max_length=MAX_HISTORY)]


class History(Strict):
    format: Literal["igniter-watch-history"] = HISTORY_FORMAT
    version: Literal[1] = HISTORY_VERSION
    plan: str                                                      # the running plan these figures are about
    replans: Annotated[int, Field(ge=0)] = 0                       # re-plans applied (numbers the plan directories)
    rates: dict[SafeName, Series]                                  # workload -> arrival rate per interval
    since: dict[SafeName, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)  # first interval of the plan
    ratios: dict[SafeName, Evidence] = Field(default_factory=dict)  # server -> observed / predicted batch latency
    p99s: dict[SafeName, Evidence] = Field(default_factory=dict)    # server -> Triton's p99 (ms)
    failures: dict[SafeName, Annotated[list[NonNegativeFloat], Field(max_length=MAX_HISTORY)]] = \
        Field(default_factory=dict)
    plan_corrections: list[dict[SafeName, float]] = Field(default_factory=list)  # per GPU type: the plan's model
    corrections: list[dict[SafeName, float]] = Field(default_factory=list)       # per GPU type: the adapted model

    def trim(self, keep: int) -> None:
        """Keep the last ``keep`` intervals of every series (streak origins moved along)."""
        for workload, rates in self.rates.items():
            dropped = max(0, len(rates) - keep)
            del rates[:dropped]
            self.since[workload] = max(0, self.since.get(workload, 0) - dropped)
        for series in (self.ratios, self.p99s, self.failures):
            for values in series.values():
                del values[:max(0, len(values) - keep)]


def load_history(path: Path) -> History | None:
    """The history at ``path``; None where there is none yet."""
    if not path.exists():
        return None
    return validate(History, read_json(path, "watch history"), path.name, HISTORY_FIX)


def save_history(history: History, path: Path) -> None:
    with output_errors(path, "watch history"):
        atomic_write(path, dump_json(history))
