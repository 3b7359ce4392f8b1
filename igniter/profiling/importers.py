"""Import profiles measured elsewhere into a profile store.

Format "igniter": the public iGniter repository's V100 data (profiles.jsonl = gpulet.config, coefficients.jsonl
= Algorithm/config). The source has mean latencies only, so latency_p50_ms and latency_p99_ms repeat the mean;
the ``latency_source`` column says so ("mean-only") for every imported row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd

from igniter.errors import UserError
from igniter.profiling.store import ProfileStore

FORMATS = ("igniter",)
MEAN_ONLY = "mean-only"
V100 = {"kind": "gpu", "name": "V100", "sm_count": 80, "max_clock_mhz": 1530, "tdp_w": 300, "memory_mb": 16384}


def import_profiles(fmt: str, src_dir: str | Path, out_dir: str | Path) -> dict:
    """Convert ``src_dir`` into a profile store at ``out_dir``; returns row counts."""
    if fmt not in FORMATS:
        raise UserError(f"unknown import format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    src = Path(src_dir)
    profiles = _read_jsonl(src / "profiles.jsonl")
    coefficients = _read_jsonl(src / "coefficients.jsonl")
    solo, pairs = igniter_solo(profiles), igniter_pairs(profiles)
    hardware = dict(V100, source="imported:igniter-v100", imported=_merge(coefficients))
    store = ProfileStore(out_dir)
    store.write_solo(solo)
    store.write_pairs(pairs)
    store.write_hardware(hardware)  # last: a store is complete once hardware.json exists
    return {"out": str(out_dir), "solo_rows": len(solo), "pair_rows": len(pairs),
            "models": sorted(solo["model"].unique().tolist())}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise UserError(f"{path.name} is missing", "point SRC_DIR at the folder holding profiles.jsonl and "
                        "coefficients.jsonl", str(path.parent))
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise UserError(f"{path.name} has a line that is not JSON ({err.msg})", "fix or re-copy the file",
                        str(path)) from None


def _merge(lines: list[dict]) -> dict:
    """{scope: {metric: value}} lines -> one nested dict (later lines win)."""
    out: dict = defaultdict(dict)
    for line in lines:
        for scope, metrics in line.items():
            out[scope].update(metrics)
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def igniter_solo(profiles: list[dict]) -> pd.DataFrame:
    """One row per (model, batch, share) with a latency entry; throughput / L2 / DRAM where the source has them."""
    merged = _merge([p for p in profiles if "interference" not in p])
    rows = []
    for model, metrics in merged.items():
        for batch, by_share in metrics.get("latency", {}).items():
            for share, latency in by_share.items():
                value = lambda metric: metrics.get(metric, {}).get(batch, {}).get(share)  # noqa: E731
                rows.append({"model": model, "batch": int(batch), "share": float(share),
                             "throughput_rps": value("throughput"), "latency_mean_ms": latency,
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
