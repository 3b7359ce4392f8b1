"""Prediction-error benchmark: writes the "## Prediction error" section of BENCHMARKS.md (only that section).

Cross-validation on co-located pair rows (solo profiles are always available to every fold, as in deployment):
(i) group k-fold over batch-size combinations {batch, partner_batch} (5 folds), (ii) leave-one-model-pair-out.
Methods: interference-blind solo, gpu-let-style linear regression, analytical alone, analytical + residual.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from igniter.model import Member, PerfModel
from igniter.profiling.importers import import_profiles
from igniter.profiling.store import ProfileStore

from benchmarks_md import write_section  # scripts/, on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
V100_SRC = ROOT.parent / "shared" / "data" / "igniter-v100"
CPU_PROFILES = ROOT / "profiles" / "cpu-2core"
HEADING = "## Prediction error"
FOLDS = 5
MIN_PAIR_ROWS = 12  # 6 co-located runs (2 rows each): fewer leave a held-out fold nothing to fit on


def run_key(pairs: pd.DataFrame) -> pd.Series:
    """Both rows of one co-located run share this key (so a run is never half in training)."""
    return pairs.apply(lambda r: tuple(sorted([(r.model, r.batch, r.share), (r.partner, r.partner_batch,
                                                                              r.partner_share)])), axis=1)


def batch_combo_folds(pairs: pd.DataFrame) -> np.ndarray:
    combos = pairs.apply(lambda r: tuple(sorted((int(r.batch), int(r.partner_batch)))), axis=1)
    order = {c: i % FOLDS for i, c in enumerate(sorted(set(combos)))}
    return combos.map(order).to_numpy()


def model_pair_folds(pairs: pd.DataFrame) -> np.ndarray:
    keys = pairs.apply(lambda r: tuple(sorted((r.model, r.partner))), axis=1)
    order = {k: i for i, k in enumerate(sorted(set(keys)))}
    return keys.map(order).to_numpy()


def own_terms(pm: PerfModel, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(own solo latency, design matrix of the linear gpu-let-style model) for each pair row."""
    own = [pm._terms(r.model, int(r.batch), float(r.share)) for r in pairs.itertuples()]
    other = [pm._terms(r.partner, int(r.partner_batch), float(r.partner_share)) for r in pairs.itertuples()]
    solo = np.array([t[0] for t in own])
    cols = [np.ones(len(pairs))] + [np.nan_to_num([t[i] for t in src]) for src in (own, other) for i in (3, 4)]
    cols += [pairs["partner_share"].to_numpy(float) / 100.0]
    return solo, solo[:, None] * np.column_stack(cols)


def predict_rows(pm: PerfModel, pairs: pd.DataFrame) -> np.ndarray:
    sets = [[Member(r.model, int(r.batch), float(r.share)), Member(r.partner, int(r.partner_batch),
                                                                      float(r.partner_share))]
            for r in pairs.itertuples()]
    return np.array([p[0].latency_ms for p in pm.predict_sets(sets)])


def cross_validate(solo: pd.DataFrame, pairs: pd.DataFrame, hardware: dict, folds: np.ndarray) -> dict:
    errors = {k: np.zeros(len(pairs)) for k in ("solo", "linear", "analytical", "analytical+residual")}
    measured = pairs["latency_mean_ms"].to_numpy(float)
    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        full = PerfModel.fit_frames(solo, pairs[train], hardware, use_residual=True)
        plain = PerfModel.fit_frames(solo, pairs[train], hardware, use_residual=False)
        solo_ms, design = own_terms(plain, pairs)
        weights, *_ = np.linalg.lstsq(design[train] / measured[train, None], np.ones(train.sum()), rcond=None)
        for name, pred in (("solo", solo_ms), ("linear", design @ weights),
                           ("analytical", predict_rows(plain, pairs)), ("analytical+residual", predict_rows(full, pairs))):
            errors[name][test] = np.abs(pred[test] / measured[test] - 1.0) * 100.0
    return {k: (float(v.mean()), float(np.percentile(v, 90))) for k, v in errors.items()}


def timings(store_dir: Path) -> dict:
    start = time.perf_counter()
    pm = PerfModel.fit(store_dir)
    fit_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    models = pm.models
    sets = [[Member(models[rng.integers(len(models))], int(rng.choice(pm.batches(m))), float(rng.choice([10, 20, 30])))
             for m in models[:3]] for _ in range(10000)]
    start = time.perf_counter()
    pm.predict_sets(sets)
    return {"fit_s": fit_s, "predict_10k_sets_s": time.perf_counter() - start}


def evaluate(name: str, store_dir: Path) -> list[str]:
    store = ProfileStore(store_dir)
    solo, pairs, hardware = store.read_solo(), store.read_pairs(), store.read_hardware()
    lines = [f"### {name}: {len(solo)} solo rows, {len(pairs)} pair rows, {solo['model'].nunique()} models", ""]
    if len(pairs) < 100:
        lines += [f"Small sample ({len(pairs)} pair rows): the percentages below are indicative only.", ""]
    lines += [
             "| held out | method | mean APE % | p90 APE % |", "|---|---|---|---|"]
    for split, folds in (("batch combinations (5-fold)", batch_combo_folds(pairs)),
                         ("model pairs (leave-one-out)", model_pair_folds(pairs))):
        for method, (mean, p90) in cross_validate(solo, pairs, hardware, folds).items():
            lines.append(f"| {split} | {method} | {mean:.2f} | {p90:.2f} |")
    t = timings(store_dir)
    lines += ["", f"Fit on all rows: {t['fit_s']:.2f} s; predict_sets on 10,000 three-member sets: "
                  f"{t['predict_10k_sets_s']:.2f} s.", ""]
    return lines


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"Machine: {nproc} cores (nproc), {cpu}, Python {platform.python_version()}."


def section() -> str:
    lines = [HEADING, "", "Written by `python scripts/bench_prediction.py`. Absolute percentage error (APE) of the "
             "predicted batch latency of each member of held-out co-located runs; every fold sees all solo profiles "
             "(they are cheap to measure) but none of its held-out runs. Methods: solo = interference-blind measured "
             "solo latency; linear = gpu-let-style least squares of latency on own/partner L2, DRAM and partner "
             "share (times solo latency); analytical = iGniter-style surface + sensitivity x partner "
             "pressure (global coefficients: sensitivity from own L2/DRAM demand and share, pressure = partner L2/DRAM "
             "demand) + scheduling delay per kernel + power-capped clock; +residual = clipped, monotone xgboost on "
             "log(measured/analytical) with pair-agnostic features, shrunk by weights chosen by inner CV on the "
             "training folds only (leave-one-model-pair-out for unseen pairs, batch-combination folds for seen).", "",
             machine(), ""]
    with tempfile.TemporaryDirectory() as tmp:
        if V100_SRC.exists():
            import_profiles("igniter", V100_SRC, Path(tmp) / "v100")
            lines += evaluate("V100 (iGniter data, ../shared/data/igniter-v100)", Path(tmp) / "v100")
        else:
            lines += [f"V100 data absent ({V100_SRC}); not run.", ""]
    cpu_pairs = len(ProfileStore(CPU_PROFILES).read_pairs()) if (CPU_PROFILES / "pairs.csv").exists() else 0
    if cpu_pairs >= MIN_PAIR_ROWS:
        lines += evaluate(f"CPU ({CPU_PROFILES.relative_to(ROOT)})", CPU_PROFILES)
    else:
        lines += [f"CPU profiles in {CPU_PROFILES.relative_to(ROOT)}/ have {cpu_pairs} pair rows (< {MIN_PAIR_ROWS}: "
                  "too few to cross-validate); not run yet.", ""]
    return "\n".join(lines)


def main() -> None:
    new = section()
    write_section(HEADING, new)
    print(new)


if __name__ == "__main__":
    sys.exit(main())
