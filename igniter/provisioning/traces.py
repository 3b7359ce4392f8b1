"""Rate traces: what load arrives when. Read by `igniter capacity` (and meant for a later replay command).

The trace file is a CSV with a ``timestamp`` column (seconds, or ISO 8601 date-times) and either one column per
workload name (requests per second) or a single ``scale`` column that multiplies every workload's ``rate`` from
the workloads file::

    timestamp,scale                 timestamp,w1,w2
    0,0.8                           2026-01-05T00:00:00Z,120,40
    60,1.0                          2026-01-05T00:01:00Z,130,38

A sample holds until the next one (sample-and-hold); the last one holds for the median sample interval.
``Trace.steps(step_s)`` averages that step function over fixed steps from the first timestamp, so a trace finer
than the step is averaged and one coarser than the step is repeated.

Converters turn the public traces (../shared/data/traces) into a ``scale`` trace, normalised to a time-weighted
mean of 1 (so the workloads file's rates are the mean rates): ``twitter`` (one line of per-second request counts,
optionally in a .tbz2/.bz2), ``azure-llm`` (one row per request, TIMESTAMP column), ``alibaba-pods`` (pods with
creation/deletion times and GPU requests: the cluster's requested GPUs over time).
"""

from __future__ import annotations

import bz2
import io
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from igniter.errors import UserError
from igniter.schema import read_text

MAX_TRACE_BYTES = 512 * 1024 * 1024
SCALE = "scale"


@dataclass(frozen=True)
class Trace:
    times: np.ndarray        # (N,) seconds, strictly increasing
    columns: tuple[str, ...]  # workload names, or ("scale",)
    values: np.ndarray       # (N, C) req/s per workload, or the multiplier; finite, >= 0
    source: str

    @property
    def is_scale(self) -> bool:
        return self.columns == (SCALE,)

    def end(self) -> float:
        """Where the last sample stops holding: one median interval after it (1 s for a single sample)."""
        gaps = np.diff(self.times)
        return float(self.times[-1] + (np.median(gaps) if len(gaps) else 1.0))

    def steps(self, step_s: float, duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(start of each step (S,), time-weighted mean value in each step (S, C)); the last step may be shorter
        (its mean is over the part the trace covers). duration_s: only the first duration_s of the trace."""
        start, end = float(self.times[0]), self.end()
        if duration_s is not None:
            end = min(end, start + duration_s)
        count = max(1, int(np.ceil((end - start) / step_s - 1e-9)))
        bounds = np.minimum(start + np.arange(count + 1) * step_s, end)
        integral = self._integral(bounds)
        return bounds[:-1], np.diff(integral, axis=0) / np.diff(bounds)[:, None]

    def _integral(self, at: np.ndarray) -> np.ndarray:
        """Integral of the step function from the first timestamp to each point of ``at`` (within the trace)."""
        edges = np.append(self.times, self.end())
        cumulative = np.vstack([np.zeros((1, self.values.shape[1])),
                                np.cumsum(self.values * np.diff(edges)[:, None], axis=0)])
        k = np.clip(np.searchsorted(edges, at, side="right") - 1, 0, len(self.times) - 1)
        return cumulative[k] + self.values[k] * (at - edges[k])[:, None]

    def to_csv(self) -> str:
        frame = pd.DataFrame(self.values, columns=list(self.columns))
        frame.insert(0, "timestamp", [np.format_float_positional(t, trim="-") for t in self.times])  # exact
        return frame.to_csv(index=False, float_format="%.6g")


def load_trace(path: str | Path, fmt: str = "csv") -> Trace:
    """Read a trace file of format ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown trace format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    return FORMATS[fmt](Path(path))


def read_csv_trace(path: Path) -> Trace:
    text = read_text(path, "trace file", MAX_TRACE_BYTES).lstrip("\ufeff")   # a spreadsheet's byte-order mark
    header = [c.strip() for c in text.split("\n", 1)[0].split(",")]
    src = path.name
    if "timestamp" not in header:
        raise UserError(f"{src} has no `timestamp` column (columns: {', '.join(header)})",
                        "name the time column `timestamp` (seconds or ISO 8601)", src)
    columns = [c for c in header if c != "timestamp"]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise UserError(f"{src} has column {dupes[0]!r} twice", "give every column once", src)
    if not columns:
        raise UserError(f"{src} has no rate column", "add one column per workload (req/s) or a `scale` column", src)
    if SCALE in columns and len(columns) > 1:
        raise UserError(f"{src} mixes a `scale` column with workload columns",
                        "give either one `scale` column or one column per workload", src)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as err:
        raise UserError(f"{src} is not a valid CSV: {str(err).splitlines()[0]}", "fix the CSV", src) from err
    if frame.empty:
        raise UserError(f"{src} has no rows", "give at least one sample", src)
    frame.columns = header
    times = _timestamps(frame["timestamp"], src)
    values = np.empty((len(frame), len(columns)))
    for j, column in enumerate(columns):
        values[:, j] = _rates(frame[column], column, src)
    return _checked(Trace(times, tuple(columns), values, src))


def _timestamps(raw: pd.Series, src: str) -> np.ndarray:
    numeric = pd.to_numeric(raw, errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy(float)
    try:
        stamps = pd.to_datetime(raw, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        fix = "write timestamps as seconds (e.g. 60) or ISO 8601 (e.g. 2026-01-05T00:01:00Z)"
        bad = next((i for i, v in enumerate(raw) if _neither(v)), None)
        if bad is None:   # each one reads, as seconds or as a date-time, but not the column as one kind
            raise UserError(f"{src} mixes timestamps in seconds with ISO 8601 date-times", f"{fix}, all alike",
                            src) from None
        raise UserError(f"{src} row {bad + 2}: timestamp {raw.iloc[bad]!r} is neither seconds nor ISO 8601", fix,
                        src) from None
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(float)


def _neither(value: str) -> bool:
    """Neither a number of seconds nor an ISO 8601 date-time (parsed as the whole column is)."""
    if not math.isnan(pd.to_numeric(value, errors="coerce")):
        return False
    try:
        pd.to_datetime(value, format="ISO8601", utc=True)
        return False
    except (ValueError, TypeError):
        return True


def _rates(raw: pd.Series, column: str, src: str) -> np.ndarray:
    values = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    bad = np.nonzero(~np.isfinite(values) | (values < 0))[0]
    if len(bad):
        i = int(bad[0])
        raise UserError(f"{src} row {i + 2}: {column} = {raw.iloc[i]!r} is not a finite number >= 0",
                        "give rates (req/s) or scale factors as non-negative numbers", src)
    return values


def _checked(trace: Trace) -> Trace:
    gaps = np.diff(trace.times)
    if not np.isfinite(trace.times).all() or (gaps <= 0).any():
        i = int(np.argmax(gaps <= 0)) + 1 if len(gaps) else 0
        raise UserError(f"{trace.source} row {i + 2}: timestamps must be strictly increasing",
                        "sort the rows by time and drop duplicate timestamps", trace.source)
    return trace


def _normalised(times: np.ndarray, rates: np.ndarray, src: str) -> Trace:
    """A scale trace with time-weighted mean 1."""
    trace = _checked(Trace(times.astype(float), (SCALE,), rates.astype(float)[:, None], src))
    mean = trace._integral(np.array([trace.end()]))[0, 0] / (trace.end() - trace.times[0])
    if mean <= 0:
        raise UserError(f"{src} has no load at all", "give a trace with some requests", src)
    return Trace(trace.times, trace.columns, trace.values / mean, src)


def twitter_counts(path: Path) -> Trace:
    """Whitespace-separated per-second request counts (the Twitter trace), plain, .bz2 or a .tbz2 archive."""
    raw = _read_bytes(path)
    if raw[:3] == b"BZh":
        try:
            raw = _untar(bz2.BZ2Decompressor().decompress(raw, max_length=MAX_TRACE_BYTES))
        except (OSError, ValueError, EOFError, tarfile.TarError) as err:
            raise UserError(f"cannot decompress {path.name}: {err}", "give the .tbz2/.bz2 file as published",
                            path.name) from err
    try:
        counts = np.array(raw.split(), dtype=float)
    except ValueError:
        raise UserError(f"{path.name} is not a list of per-second request counts",
                        "give the Twitter trace (whitespace-separated integers)", path.name) from None
    if not len(counts) or not np.isfinite(counts).all() or (counts < 0).any():
        raise UserError(f"{path.name} has no valid counts", "give non-negative per-second counts", path.name)
    return _normalised(np.arange(len(counts), dtype=float), counts, path.name)


def _untar(data: bytes) -> bytes:
    """The first regular file of a tar archive, or the data itself when it is not one."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = next(m for m in archive.getmembers() if m.isfile())
            return archive.extractfile(member).read()
    except tarfile.ReadError:
        return data


def azure_llm(path: Path) -> Trace:
    """Azure LLM inference request log (one row per request, TIMESTAMP column): requests per second."""
    frame = _csv(path, ["TIMESTAMP"])
    try:
        stamps = pd.to_datetime(frame["TIMESTAMP"], format="ISO8601", utc=True)
    except (ValueError, TypeError) as err:
        raise UserError(f"{path.name}: TIMESTAMP values are not date-times ({err})",
                        "give the Azure LLM trace as published", path.name) from None
    seconds = (stamps - stamps.min()).dt.total_seconds().to_numpy(float)
    counts = np.bincount(np.floor(seconds).astype(int)).astype(float)
    start = stamps.min().floor("s")
    return _normalised((start - pd.Timestamp(0, tz="UTC")).total_seconds() + np.arange(len(counts)), counts,
                       path.name)


def alibaba_pods(path: Path) -> Trace:
    """Alibaba GPU pod list: the GPUs requested by live pods (num_gpu x gpu_milli / 1000, creation to deletion;
    pods never deleted live to the last event), as a step function at every creation and deletion."""
    frame = _csv(path, ["num_gpu", "gpu_milli", "creation_time", "deletion_time"])
    gpus = pd.to_numeric(frame["num_gpu"], errors="coerce") * pd.to_numeric(frame["gpu_milli"], errors="coerce") / 1000
    born = pd.to_numeric(frame["creation_time"], errors="coerce")
    died = pd.to_numeric(frame["deletion_time"], errors="coerce")
    last = float(np.nanmax(np.concatenate([born.to_numpy(float), died.to_numpy(float)])))
    keep = (gpus > 0) & born.notna()
    born, died, gpus = born[keep].to_numpy(float), died[keep].fillna(last).to_numpy(float), gpus[keep].to_numpy(float)
    if not len(gpus):
        raise UserError(f"{path.name} has no pod requesting a GPU", "give the pod list as published", path.name)
    times = np.concatenate([born, died])
    change = np.concatenate([gpus, -gpus])
    order = np.argsort(times, kind="stable")
    at, first = np.unique(times[order], return_index=True)
    demand = np.maximum(np.cumsum(change[order])[np.append(first[1:], len(order)) - 1], 0.0)
    return _normalised(at, demand, path.name)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise UserError(f"trace file {path} does not exist or is not a file", "fix the --trace path")
    if path.stat().st_size > MAX_TRACE_BYTES:
        raise UserError(f"trace file {path} is larger than {MAX_TRACE_BYTES >> 20} MiB", "give a smaller trace")
    return path.read_bytes()


def _csv(path: Path, required: list[str]) -> pd.DataFrame:
    text = read_text(path, "trace file", MAX_TRACE_BYTES)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as err:
        raise UserError(f"{path.name} is not a valid CSV: {str(err).splitlines()[0]}", "fix the CSV",
                        path.name) from err
    missing = [c for c in required if c not in frame.columns]
    if missing or frame.empty:
        raise UserError(f"{path.name} lacks column(s) {', '.join(missing) or '(no rows)'}",
                        "give the trace file as published (see docs/capacity.md)", path.name)
    return frame.replace("", np.nan)


FORMATS = {"csv": read_csv_trace, "twitter": twitter_counts, "azure-llm": azure_llm, "alibaba-pods": alibaba_pods}
