"""`igniter predict` says when it extrapolates beyond the profiled grid (profiles/cpu-2core: batches 1-8, shares
50-100 for every model, read off solo.csv by hand)."""

import json

import pytest
from click.testing import CliRunner

from igniter.cli.main import cli


@pytest.fixture(scope="module")
def cpu_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "cpu.model.json"
    result = CliRunner().invoke(cli, ["fit", "--profiles", "profiles/cpu-2core", "--out", str(out), "--no-residual"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("member, extrapolated", [
    ("mlp:4:75", False),     # inside: batch 1-8, share 50-100
    ("mlp:8:50", False),     # the corner itself was measured
    ("mlp:64:75", True),     # batch beyond 8
    ("mlp:4:20", True),      # share below 50
])
def test_predict_flags_points_outside_the_profiled_grid(cpu_model, member, extrapolated):
    result = CliRunner().invoke(cli, ["predict", "--perf-model", str(cpu_model), "--colocate", member, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["extrapolated"] for r in rows] == [extrapolated]
    assert ("extrapolated" in result.stderr) == extrapolated
