"""The profile store: hardware.json + solo.csv + pairs.csv in one directory (docs/artefacts.md, section 1).

Every write replaces the whole file atomically (temp file + os.replace), so a profiler killed mid-run leaves the
store as it was after its last finished measurement, and `done_keys()` tells a restarted profiler what to skip.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, StringConstraints

from igniter.atomic import atomic_write, atomic_write_many
from igniter.errors import UserError
from igniter.schema import (NAME_MAX, NAME_PATTERN, NAME_RULE, Count, NonNegativeFloat, PositiveFloat, Strict,
                            read_json, read_text, validate as validate_schema)

if TYPE_CHECKING:   # pandas is imported where a CSV is read or built: `igniter provision` loads a fitted model only
    import pandas as pd

SOLO_REQUIRED = ["model", "batch", "share", "throughput_rps", "latency_mean_ms", "latency_p50_ms", "latency_p99_ms"]
PAIR_REQUIRED = ["model", "batch", "share", "partner", "partner_batch", "partner_share", "throughput_rps",
                 "latency_mean_ms", "latency_p50_ms", "latency_p99_ms"]
OPTIONAL = ["latency_p90_ms", "queue_ms", "compute_ms", "l2_util_pct", "dram_util_pct", "sm_clock_mhz", "power_w",
            "gpu_util_pct", "cpu_util_pct", "memory_mb", "repeats", "latency_mean_ms_std", "run_id"]
# Columns that identify one run: a profiler skips a run whose key is already stored.
SOLO_KEY = ["model", "batch", "share"]
PAIR_KEY = ["model", "batch", "share", "partner", "partner_batch", "partner_share"]

HARDWARE_FILE, SOLO_FILE, PAIRS_FILE = "hardware.json", "solo.csv", "pairs.csv"


TEXT_COLUMNS = ("model", "partner", "run_id", "latency_source")
NAME_COLUMNS = ("model", "partner")                   # schema.SafeName
MEASUREMENTS = ("throughput_rps", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms")
SHARES, BATCHES = ("share", "partner_share"), ("batch", "partner_batch")
MAX_CSV_BYTES = 256 * 1024 * 1024
_SAFE_NAME = re.compile(NAME_PATTERN)


class PathOverheadRow(Strict):
    """One calibration of the real request path at one rate (igniter.replay.calibrate); what else the
    calibration recorded (requests, load average, when) is kept."""
    model_config = ConfigDict(extra="allow")
    rate_rps: PositiveFloat
    p50_ms: NonNegativeFloat
    p99_ms: NonNegativeFloat
    baseline_p50_ms: NonNegativeFloat | None = None   # the path as the profiler saw it (direct, one outstanding)
    cpu_ms_per_request: NonNegativeFloat | None = None


class HardwareFile(Strict):
    """hardware.json: the fields igniter reads are typed; anything else a profiler recorded is kept."""
    model_config = ConfigDict(extra="allow")
    kind: Literal["gpu", "cpu"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)] = "unknown"
    source: str | None = None
    sm_count: Count | None = None
    max_clock_mhz: PositiveFloat | None = None
    tdp_w: PositiveFloat | None = None
    idle_power_w: NonNegativeFloat | None = None
    memory_mb: PositiveFloat | None = None
    cores: Count | None = None
    imported: dict[str, dict[str, Any]] = {}
    path_overhead: Annotated[list[PathOverheadRow], Field(max_length=64)] = []


HARDWARE_FIX = {"kind": 'set "kind" to "gpu" or "cpu" (the kinds igniter can provision)',
                "": "fix the field or regenerate the file with igniter profile / igniter import-profiles"}


def validate(df: pd.DataFrame, required: list[str], where: str) -> pd.DataFrame:
    """Column rules of the profile CSVs (docs/artefacts.md section 1): required columns; numbers in every column
    but the text ones, finite; measurements > 0, shares in (0, 100], batches whole >= 1, model names safe. The
    error names the file, the line (header = line 1) and the row's model/batch/share."""
    import pandas as pd

    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"profile file lacks the required column '{missing[0]}'",
                        f"add the column(s) {', '.join(missing)} (see docs/artefacts.md) or re-run igniter profile",
                        where)
    df = df.reset_index(drop=True)
    for col in df.columns:
        if col in TEXT_COLUMNS:
            _check_text(df, col, required, where)
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        _refuse(df, where, col, values.isna() & df[col].notna(), "must be a number", "write numbers only in that column")
        df[col] = values
        finite = values.isna() | np.isfinite(values)
        _refuse(df, where, col, ~finite, "must be a finite number", "remove or re-measure that row")
        if col in required:
            _refuse(df, where, col, values.isna(), "is empty", "fill it in or re-measure that row")
        if col in MEASUREMENTS:
            _refuse(df, where, col, values <= 0, "must be > 0 (a measurement)", "remove or re-measure that row")
        elif col in SHARES:
            _refuse(df, where, col, (values <= 0) | (values > 100), "is outside (0, 100]",
                    "give shares as percentages between 0 (exclusive) and 100")
        elif col in BATCHES:
            _refuse(df, where, col, (values < 1) | (values != np.floor(values)), "must be a whole batch size >= 1",
                    "use batch sizes >= 1")
        elif col in OPTIONAL:
            _refuse(df, where, col, values < 0, "must be >= 0", "remove or re-measure that row")
    return df


def _check_text(df: pd.DataFrame, col: str, required: list[str], where: str) -> None:
    present = df[col].notna()
    if col in required:
        _refuse(df, where, col, ~present, "is empty", "fill it in or re-measure that row")
    if col in NAME_COLUMNS:
        safe = df[col].map(lambda v: isinstance(v, str) and len(v) <= NAME_MAX and bool(_SAFE_NAME.match(v)))
        unsafe = present & ~safe.astype(bool)
        _refuse(df, where, col, unsafe, f"must be {NAME_RULE}", "rename the model (it names Triton models)")


def _refuse(df: pd.DataFrame, where: str, col: str, bad: pd.Series, rule: str, fix: str) -> None:
    if not bad.any():
        return
    i = int(np.flatnonzero(bad.to_numpy())[0])
    row = df.iloc[i]
    label = ", ".join(f"{k} {row[k]!r}" if k == "model" else f"{k} {row[k]}"
                      for k in ("model", "batch", "share") if k in df.columns and k != col)
    raise UserError(f"line {i + 2} ({label}): {col} = {row[col]!r} {rule}", fix, where)


class ProfileStore:
    """One profile directory. Reads validate; appends rewrite the CSV atomically."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    # --- hardware.json -------------------------------------------------------------------------------------
    def read_hardware(self) -> dict:
        path = self.dir / HARDWARE_FILE
        if not path.exists():
            raise UserError("the profile directory has no hardware.json",
                            "run igniter profile or igniter import-profiles into it first", str(self.dir))
        hardware = read_json(path, HARDWARE_FILE)
        validate_schema(HardwareFile, hardware, str(path), HARDWARE_FIX)
        return hardware

    def write_hardware(self, hardware: dict) -> None:
        atomic_write(self.dir / HARDWARE_FILE, _hardware_text(hardware, self.dir))

    def write_all(self, hardware: dict, solo: pd.DataFrame, pairs: pd.DataFrame) -> None:
        """A whole store at once: all three validated and serialised first, then swapped in together
        (atomic_write_many), so a failure leaves the previous store intact."""
        files = {SOLO_FILE: _csv(validate(solo.copy(), SOLO_REQUIRED, str(self.dir / SOLO_FILE))),
                 PAIRS_FILE: _csv(validate(pairs.copy(), PAIR_REQUIRED, str(self.dir / PAIRS_FILE))),
                 HARDWARE_FILE: _hardware_text(hardware, self.dir)}
        atomic_write_many(self.dir, files)

    # --- solo.csv / pairs.csv -------------------------------------------------------------------------------
    def read_solo(self) -> pd.DataFrame:
        return self._read(SOLO_FILE, SOLO_REQUIRED, required_file=True)

    def read_pairs(self) -> pd.DataFrame:
        return self._read(PAIRS_FILE, PAIR_REQUIRED, required_file=False)

    def write_solo(self, df: pd.DataFrame) -> None:
        self._write(SOLO_FILE, validate(df.copy(), SOLO_REQUIRED, str(self.dir / SOLO_FILE)))

    def write_pairs(self, df: pd.DataFrame) -> None:
        self._write(PAIRS_FILE, validate(df.copy(), PAIR_REQUIRED, str(self.dir / PAIRS_FILE)))

    def append_solo(self, row: dict) -> None:
        """Add one finished solo measurement (rewrites solo.csv atomically)."""
        self.write_solo(self._concat(self._read(SOLO_FILE, SOLO_REQUIRED, required_file=False), [row]))

    def append_pair_rows(self, rows: list[dict]) -> None:
        """Add the rows of one finished co-located run, one row per member (rewrites pairs.csv atomically)."""
        self.write_pairs(self._concat(self.read_pairs(), rows))

    def done_keys(self, kind: str) -> set[tuple]:
        """Identity tuples of the runs already stored: kind "solo" -> SOLO_KEY, "pairs" -> PAIR_KEY."""
        df, key = (self._read(SOLO_FILE, SOLO_REQUIRED, required_file=False), SOLO_KEY) if kind == "solo" \
            else (self.read_pairs(), PAIR_KEY)
        return {run_key(r, key) for r in df[key].to_dict("records")} if len(df) else set()

    # --- helpers --------------------------------------------------------------------------------------------
    def _read(self, name: str, required: list[str], required_file: bool) -> pd.DataFrame:
        import pandas as pd

        path = self.dir / name
        if not path.exists():
            if required_file:
                raise UserError(f"the profile directory has no {name}",
                                "run igniter profile or igniter import-profiles into it first", str(self.dir))
            return pd.DataFrame(columns=required)
        text = read_text(path, name, MAX_CSV_BYTES)
        header = next(csv.reader([text.split("\n", 1)[0]]), [])
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise UserError(f"{name} has the column '{twice[0]}' twice", "keep one column of each name", str(path))
        try:
            df = pd.read_csv(io.StringIO(text), dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                             na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
            raise UserError(f"{name} is not a readable CSV ({str(err).splitlines()[0]})",
                            "fix or regenerate the file", str(path)) from None
        return validate(df, required, str(path))

    @staticmethod
    def _concat(df: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
        import pandas as pd

        new = pd.DataFrame(rows)
        return new if df.empty else pd.concat([df, new], ignore_index=True)

    def _write(self, name: str, df: pd.DataFrame) -> None:
        atomic_write(self.dir / name, _csv(df))


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.9g")


def _hardware_text(hardware: dict, directory: Path) -> str:
    validate_schema(HardwareFile, hardware, str(directory / HARDWARE_FILE), HARDWARE_FIX)
    return json.dumps(hardware, indent=2, sort_keys=True, allow_nan=False) + "\n"


def run_key(row: dict, key: list[str]) -> tuple:
    """Normalised identity of a run (ints for batches, floats for shares) so CSV round trips compare equal."""
    out = []
    for col in key:
        value = row[col]
        out.append(int(value) if col.endswith("batch") else float(value) if col.endswith("share") else str(value))
    return tuple(out)
