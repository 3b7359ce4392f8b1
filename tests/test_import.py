"""import-profiles on the iGniter V100 reference data (skipped when ../shared is absent)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from igniter.cli.profile import import_profiles
from igniter.profiling.store import ProfileStore
from tests.conftest import shared_data

# Computed from the source: 4 models x (batch 1: 7 shares + batches 2..32: 5 shares) = 4 x 162 solo rows;
# 750 measured pairs x 2 members = 1500 pair rows.
SOLO_ROWS, PAIR_ROWS = 4 * (7 + 31 * 5), 2 * 750


def test_import_igniter_v100(tmp_path):
    src = shared_data("igniter-v100")
    out = tmp_path / "v100"
    result = CliRunner().invoke(import_profiles, ["--format", "igniter", str(src), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["solo_rows"], summary["pair_rows"]) == (SOLO_ROWS, PAIR_ROWS) == (648, 1500)
    store = ProfileStore(out)
    solo, pairs, hardware = store.read_solo(), store.read_pairs(), store.read_hardware()
    assert len(solo) == 648 and len(pairs) == 1500
    assert set(solo["model"]) == {"alexnet", "resnet50", "vgg19", "ssd"}
    assert (solo["latency_p99_ms"] == solo["latency_mean_ms"]).all() and (solo["latency_source"] == "mean-only").all()
    assert solo["l2_util_pct"].notna().sum() == 4 * 160  # batch 1 at 10 % and 100 % has no L2 measurement
    assert ((pairs["share"] + pairs["partner_share"]) == 100).all()
    assert pairs["latency_mean_ms_std"].notna().all()
    assert hardware["name"] == "V100" and hardware["tdp_w"] == 300 and hardware["max_clock_mhz"] == 1530
    assert hardware["imported"]["hardware"]["idlepower"] == 53.5
    assert hardware["imported"]["resnet50"]["kernel"] == 80


def test_import_missing_source_is_a_user_error(tmp_path):
    result = CliRunner().invoke(import_profiles, ["--format", "igniter", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "To fix:" in result.output
    assert not (tmp_path / "o").exists()
