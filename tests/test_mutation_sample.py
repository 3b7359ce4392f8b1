"""scripts/mutation_sample.py: the sample is seeded and per module, the score counts as docs/testing.md says."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mutation_sample.py"
spec = importlib.util.spec_from_file_location("mutation_sample", SCRIPT)
ms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ms)


def _meta(root: Path, rel: str, codes: dict) -> None:
    path = root / "mutants" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exit_code_by_key": codes}))


def test_wilson_interval_hand_worked():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71675, half 1.96 * sqrt(0.016 + 0.009604) / 1.38416
    low, high = ms.wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert ms.wilson(0, 0) == (0.0, 1.0)


def test_module_of_plain_and_method_names():
    assert ms.module_of("igniter.provisioning.queueing.x_wait_p99_ms__mutmut_3") == "igniter.provisioning.queueing"
    assert ms.module_of("igniter.provisioning.plan.x\u01c1Plan\u01c1by_workload__mutmut_1") == "igniter.provisioning.plan"


def test_score_counts_timeouts_as_killed_and_leaves_out_equivalents_and_untested(tmp_path):
    codes = {f"igniter.a.x_f__mutmut_{i}": c for i, c in enumerate([1, 1, 3, 24, 0, 0, 0, 5, None, 33])}
    codes["igniter.b.x_g__mutmut_1"] = 0
    _meta(tmp_path, "igniter/a.py.meta", {k: v for k, v in codes.items() if ".a." in k})
    _meta(tmp_path, "igniter/b.py.meta", {k: v for k, v in codes.items() if ".b." in k})
    (tmp_path / "docs" / "mutation").mkdir(parents=True)
    (tmp_path / "docs" / "mutation" / "equivalent-x.txt").write_text(
        "# header\nigniter.a.x_f__mutmut_4  # a reason\n")
    row = ms.score(ms.exit_codes(tmp_path), "igniter.a", ms.equivalents(tmp_path))
    # run: codes 1, 1, 3, 24, 0, 0, 0 (5 and 33 are "no tests", None not run); killed 4 (one a timeout);
    # survivors 4, 5, 6 of which 4 is equivalent: score 4 / (7 - 1)
    assert (row["mutants"], row["run"], row["killed"], row["timeout"], row["equivalent"], row["no_tests"]) == \
        (10, 7, 4, 1, 1, 2)
    assert row["not_killed"] == ["igniter.a.x_f__mutmut_5", "igniter.a.x_f__mutmut_6"]
    assert row["score"] == pytest.approx(4 / 6)


def test_sample_is_seeded_per_module_and_never_larger_than_the_module(tmp_path):
    codes = {f"igniter.a.x_f__mutmut_{i}": None for i in range(50)}
    codes.update({f"igniter.b.x_g__mutmut_{i}": None for i in range(3)})
    first = ms.sample(codes, "igniter.a", 10, seed=7)
    assert first == ms.sample(codes, "igniter.a", 10, seed=7) and len(set(first)) == 10
    assert all(ms.module_of(n) == "igniter.a" for n in first)
    assert first != ms.sample(codes, "igniter.a", 10, seed=8)
    assert len(ms.sample(codes, "igniter.b", 10, seed=7)) == 3


def test_no_mutants_is_one_line_and_exit_2(tmp_path, capsys):
    assert ms.main(["--root", str(tmp_path), "score", "igniter.a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "To fix" in err[0]
