"""The profile store: hardware.json + solo.csv + pairs.csv in one directory (docs/artefacts.md, section 1).

Every write replaces the whole file atomically (temp file + os.replace), so a profiler killed mid-run leaves the
store as it was after its last finished measurement, and `done_keys()` tells a restarted profiler what to skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from igniter.atomic import atomic_write
from igniter.errors import UserError

SOLO_REQUIRED = ["model", "batch", "share", "throughput_rps", "latency_mean_ms", "latency_p50_ms", "latency_p99_ms"]
PAIR_REQUIRED = ["model", "batch", "share", "partner", "partner_batch", "partner_share", "throughput_rps",
                 "latency_mean_ms", "latency_p50_ms", "latency_p99_ms"]
OPTIONAL = ["latency_p90_ms", "queue_ms", "compute_ms", "l2_util_pct", "dram_util_pct", "sm_clock_mhz", "power_w",
            "gpu_util_pct", "cpu_util_pct", "memory_mb", "repeats", "latency_mean_ms_std", "run_id"]
# Columns that identify one run: a profiler skips a run whose key is already stored.
SOLO_KEY = ["model", "batch", "share"]
PAIR_KEY = ["model", "batch", "share", "partner", "partner_batch", "partner_share"]

HARDWARE_FILE, SOLO_FILE, PAIRS_FILE = "hardware.json", "solo.csv", "pairs.csv"


def validate(df: pd.DataFrame, required: list[str], where: str) -> pd.DataFrame:
    """Check required columns, numeric fields and share range; UserError naming the column and the file."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"profile file lacks the required column '{missing[0]}'",
                        f"add the column(s) {', '.join(missing)} (see docs/artefacts.md) or re-run igniter profile",
                        where)
    numeric = [c for c in df.columns if c not in ("model", "partner", "run_id", "latency_source")]
    for col in numeric:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            raise UserError(f"column '{col}' has a non-numeric value {df[col][bad].iloc[0]!r}",
                            "write numbers only in that column", where)
        df[col] = values
    for col in ("share", "partner_share"):
        if col in df.columns and ((df[col] <= 0) | (df[col] > 100)).any():
            raise UserError(f"column '{col}' has a value outside (0, 100]: {df[col][(df[col] <= 0) | (df[col] > 100)].iloc[0]}",
                            "give shares as percentages between 0 (exclusive) and 100", where)
    for col in ("batch", "partner_batch"):
        if col in df.columns and (df[col] < 1).any():
            raise UserError(f"column '{col}' has a batch size below 1", "use batch sizes >= 1", where)
    return df


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
        try:
            hardware = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"hardware.json is not valid JSON ({err.msg}, line {err.lineno})",
                            "fix or regenerate the file", str(path)) from None
        if not isinstance(hardware, dict) or hardware.get("kind") not in ("gpu", "cpu"):
            raise UserError("hardware.json needs \"kind\": \"gpu\" or \"cpu\"", "add the kind field", str(path))
        return hardware

    def write_hardware(self, hardware: dict) -> None:
        atomic_write(self.dir / HARDWARE_FILE, json.dumps(hardware, indent=2, sort_keys=True) + "\n")

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
        path = self.dir / name
        if not path.exists():
            if required_file:
                raise UserError(f"the profile directory has no {name}",
                                "run igniter profile or igniter import-profiles into it first", str(self.dir))
            return pd.DataFrame(columns=required)
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise UserError(f"{name} is not a readable CSV ({str(err).splitlines()[0]})",
                            "fix or regenerate the file", str(path)) from None
        return validate(df, required, str(path))

    @staticmethod
    def _concat(df: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
        new = pd.DataFrame(rows)
        return new if df.empty else pd.concat([df, new], ignore_index=True)

    def _write(self, name: str, df: pd.DataFrame) -> None:
        atomic_write(self.dir / name, df.to_csv(index=False, float_format="%.9g"))


def run_key(row: dict, key: list[str]) -> tuple:
    """Normalised identity of a run (ints for batches, floats for shares) so CSV round trips compare equal."""
    out = []
    for col in key:
        value = row[col]
        out.append(int(value) if col.endswith("batch") else float(value) if col.endswith("share") else str(value))
    return tuple(out)
