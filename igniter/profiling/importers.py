"""Import profiles measured elsewhere into a profile store.

Format "igniter": the public iGniter repository's V100 data (profiles.jsonl = gpulet.config, coefficients.jsonl
= Algorithm/config). The source has mean latencies only, so latency_p50_ms and latency_p99_ms repeat the mean;
the ``latency_source`` column says so ("mean-only") for every imported row.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import pandas as pd
from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints

from igniter.errors import UserError
from igniter.profiling.store import ProfileStore
from igniter.schema import (NAME_MAX, NAME_PATTERN, NAME_RULE, Count, NonNegativeFloat, PositiveFloat, SafeName,
                            Strict, read_text)
from igniter.schema import validate as validate_schema

FORMATS = ("igniter",)
MEAN_ONLY = "mean-only"
V100 = {"kind": "gpu", "name": "V100", "sm_count": 80, "max_clock_mhz": 1530, "tdp_w": 300, "memory_mb": 16384}


MAX_SOURCE_BYTES = 64 * 1024 * 1024
PAIR_FIELDS = "[model1, model2, batch1, batch2, share1 %, latency1 ms, latency2 ms]"
STD_FIELDS = "[model1, model2, batch1, batch2, share1 %, std1 ms, std2 ms]"

Number = Annotated[float, Field(allow_inf_nan=False)]
Measured = Annotated[float, Field(gt=0)]                 # a latency or a throughput
BatchKey = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,5}$")]
ShareKey = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?$")]
PairShare = Annotated[float, Field(gt=0, lt=100)]        # the partner gets 100 - share


class SoloMetrics(Strict):
    """One model's measured tables, each {batch: {share %: value}}."""
    latency: dict[BatchKey, dict[ShareKey, Measured]] = {}
    throughput: dict[BatchKey, dict[ShareKey, Measured]] = {}
    l2cache: dict[BatchKey, dict[ShareKey, NonNegativeFloat]] = {}
    dram: dict[BatchKey, dict[ShareKey, NonNegativeFloat]] = {}


# JSON has lists, not tuples; the entries are fixed-arity rows
_row = BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)


class Interference(Strict):
    latency: list[Annotated[tuple[SafeName, SafeName, Count, Count, PairShare, Measured, Measured], _row]] = []
    std: list[Annotated[tuple[SafeName, SafeName, Count, Count, PairShare, NonNegativeFloat, NonNegativeFloat],
                        _row]] = []


Coefficient = Number | list[Number] | list[list[Number]]


class ModelCoefficients(Strict):
    """iGniter's per-model coefficients: what the fit reads is typed, the rest are numbers or tables of numbers."""
    model_config = ConfigDict(extra="allow")
    kernel: PositiveFloat | None = None
    power: Annotated[list[Annotated[list[Number], Field(min_length=3)]], Field(min_length=3)] | None = None


class HardwareCoefficients(Strict):
    model_config = ConfigDict(extra="allow")
    idlepower: NonNegativeFloat | None = None


FIX = {"latency": f"write pair entries as {PAIR_FIELDS} with shares in (0, 100) and latencies > 0",
       "std": f"write std entries as {STD_FIELDS}", "": "fix that line or re-copy the file from the iGniter repository"}
SOLO_FIX = {"": "write each table as {batch: {share %: value}} with batches >= 1, latencies and throughputs > 0"}
_SAFE_NAME = re.compile(NAME_PATTERN)


def import_profiles(fmt: str, src_dir: str | Path, out_dir: str | Path) -> dict:
    """Convert ``src_dir`` into a profile store at ``out_dir``; returns row counts. Everything is read and
    validated first, then the three files are swapped in together (ProfileStore.write_all): a bad source
    leaves an existing store as it was."""
    if fmt not in FORMATS:
        raise UserError(f"unknown import format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    src = Path(src_dir)
    profiles = _read_jsonl(src / "profiles.jsonl", _check_profile_line)
    coefficients = _read_jsonl(src / "coefficients.jsonl", _check_coefficient_line)
    solo, pairs = igniter_solo(profiles), igniter_pairs(profiles)
    hardware = dict(V100, source="imported:igniter-v100", imported=_merge(coefficients))
    ProfileStore(out_dir).write_all(hardware, solo, pairs)
    return {"out": str(out_dir), "solo_rows": len(solo), "pair_rows": len(pairs),
            "models": sorted(solo["model"].unique().tolist())}


def _read_jsonl(path: Path, check) -> list[dict]:
    """The lines of a JSON-lines file, each validated by ``check(line, where)``; NaN and Infinity refused."""
    if not path.exists():
        raise UserError(f"{path.name} is missing", "point SRC_DIR at the folder holding profiles.jsonl and "
                        "coefficients.jsonl", str(path.parent))
    lines = []
    for number, text in enumerate(read_text(path, path.name, MAX_SOURCE_BYTES).splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            line = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as err:
            raise UserError(f"a line is not JSON ({str(err).splitlines()[0][:120]})", "fix or re-copy the file",
                            where) from None
        check(line, where)
        lines.append(line)
    return lines


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number igniter accepts")


def _unique_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice")
        out[key] = value
    return out


def _scopes(line, where: str) -> dict:
    if not isinstance(line, dict) or not all(isinstance(v, dict) for v in line.values()):
        raise UserError("a line must be an object {scope: {metric: value}}", "fix or re-copy the file", where)
    return line


def _check_profile_line(line, where: str) -> None:
    for scope, metrics in _scopes(line, where).items():
        if scope == "interference":
            validate_schema(Interference, metrics, where, FIX)
        else:
            if not _SAFE_NAME.match(scope) or len(scope) > NAME_MAX:
                raise UserError(f"model name {scope[:80]!r} must be {NAME_RULE}", "rename the model", where)
            validate_schema(SoloMetrics, metrics, f"{where}, model {scope!r}", SOLO_FIX)
            for batch, by_share in metrics.get("latency", {}).items():
                bad = next((s for s in by_share if not 0 < float(s) <= 100), None)
                if bad is not None:
                    raise UserError(f"{scope}.latency.{batch}: share {bad!r} is outside (0, 100]",
                                    "give shares as percentages", where)


def _check_coefficient_line(line, where: str) -> None:
    for scope, metrics in _scopes(line, where).items():
        schema = HardwareCoefficients if scope == "hardware" else ModelCoefficients
        validate_schema(schema, metrics, where, FIX)
        for name, value in metrics.items():
            validate_schema(CoefficientValue, {"value": value}, where, f"give {scope}.{name} as a number or a "
                            "list of numbers")


class CoefficientValue(Strict):
    value: Coefficient


def _merge(lines: list[dict]) -> dict:
    """{scope: {metric: value}} lines -> one nested dict (later lines win)."""
    out: dict = defaultdict(dict)
    for line in lines:
        for scope, metrics in line.items():
            out[scope].update(metrics)
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def igniter_solo(profiles: list[dict]) -> pd.DataFrame:
    """One row per (model, batch, share) with a latency entry; throughput / L2 / DRAM where the source has them
    (an unmeasured throughput is that of one batch at a time, as for the pairs)."""
    merged = _merge([p for p in profiles if "interference" not in p])
    rows = []
    for model, metrics in merged.items():
        for batch, by_share in metrics.get("latency", {}).items():
            for share, latency in by_share.items():
                value = lambda metric: metrics.get(metric, {}).get(batch, {}).get(share)  # noqa: E731
                throughput = value("throughput") or 1000.0 * int(batch) / latency   # unmeasured: one batch at a time
                rows.append({"model": model, "batch": int(batch), "share": float(share),
                             "throughput_rps": throughput, "latency_mean_ms": latency,
                             "latency_p50_ms": latency, "latency_p99_ms": latency,
                             "l2_util_pct": value("l2cache"), "dram_util_pct": value("dram"),
                             "latency_source": MEAN_ONLY})
    if not rows:
        raise UserError("profiles.jsonl has no latency entries", "use the iGniter gpulet.config data")
    return pd.DataFrame(rows).sort_values(["model", "batch", "share"], ignore_index=True)


def igniter_pairs(profiles: list[dict]) -> pd.DataFrame:
    """Each measured pair [m1, m2, b1, b2, pct1, lat1, lat2] -> two rows (one per member); pct2 = 100 - pct1."""
    interference = _merge([p for p in profiles if "interference" in p]).get("interference", {})
    latencies, stds = interference.get("latency", []), interference.get("std", [])
    std_of = {tuple(s[:5]): s[5:7] for s in stds}
    rows = []
    for m1, m2, b1, b2, pct1, lat1, lat2 in latencies:
        std1, std2 = std_of.get((m1, m2, b1, b2, pct1), (None, None))
        run_id = f"igniter-{m1}-{m2}-b{b1}-b{b2}-p{pct1}"
        for model, batch, share, partner, pbatch, pshare, lat, std in (
                (m1, b1, pct1, m2, b2, 100 - pct1, lat1, std1), (m2, b2, 100 - pct1, m1, b1, pct1, lat2, std2)):
            rows.append({"model": model, "batch": int(batch), "share": float(share), "partner": partner,
                         "partner_batch": int(pbatch), "partner_share": float(pshare),
                         "throughput_rps": 1000.0 * batch / lat, "latency_mean_ms": lat, "latency_p50_ms": lat,
                         "latency_p99_ms": lat, "latency_mean_ms_std": std, "run_id": run_id,
                         "latency_source": MEAN_ONLY})
    return pd.DataFrame(rows)
