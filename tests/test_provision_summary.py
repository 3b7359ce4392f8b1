"""`igniter provision`'s summary: per workload the serving model, predicted p99 beside the SLO, price per hour, and
the accuracy term apart from the cost (never a negative "cost")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402

from igniter.cli import provision as provision_cli  # noqa: E402

VARIANTS = Path(__file__).resolve().parents[1] / "examples" / "workloads-variants.yaml"


@pytest.fixture
def provision(monkeypatch, tmp_path):
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: FakePerfModel()))
    (tmp_path / "m.json").write_text("{}")

    def invoke(*extra):
        return CliRunner().invoke(provision_cli.provision, ["--workloads", str(VARIANTS), "--perf-model",
                                                           str(tmp_path / "m.json"), "--out", str(tmp_path / "out"),
                                                           *extra])
    return invoke


def test_summary_json_per_workload(provision, tmp_path):
    res = provision("--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())   # the oracle: the plan file itself
    servers = [(g, s) for g in plan["gpus"] for s in g["servers"]]
    price = sum(g["price_per_hour"] for g in plan["gpus"])
    accuracy = {s["workload"]: s["accuracy"] for _, s in servers}
    assert out["cost"] == pytest.approx(price) and out["cost"] > 0
    assert out["accuracy_weight"] == 2.0
    assert out["accuracy_term"] == pytest.approx(2.0 * sum(accuracy.values()))
    assert out["objective"] == pytest.approx(out["cost"] - out["accuracy_term"])
    rows = {r["workload"]: r for r in out["workloads"]}
    assert set(rows) == {"classify", "detect"}
    for name, row in rows.items():
        mine = [s for _, s in servers if s["workload"] == name]
        assert row["model"] == mine[0]["model"] and row["replicas"] == len(mine)
        assert row["predicted_p99_ms"] == max(s["predicted_p99_ms"] for s in mine) <= row["slo_ms"]
        assert row["accuracy_term"] == pytest.approx(2.0 * accuracy[name])
    assert rows["classify"]["model"] in {"vgg19", "resnet50", "alexnet"}
    assert sum(r["price_per_hour"] for r in rows.values()) == pytest.approx(price)


def test_summary_table_shows_model_p99_slo_and_price(provision):
    res = provision()
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = next(line for line in lines if line.startswith("workload"))
    for column in ("model", "predicted_p99_ms", "slo_ms", "price_per_hour", "accuracy_term"):
        assert column in header.split()
    assert "cost -" not in res.output.replace("objective = cost - accuracy term", "")
    assert "objective = cost - accuracy term" in res.output


def test_a_baseline_server_that_cannot_carry_its_rate_is_written_and_shown_as_unbounded(monkeypatch, tmp_path):
    """ffd ignores interference: on these workloads (found by search) a co-located server's queue grows without
    bound; the plan records its p99 as null (not Infinity, which is not JSON) and the summary says so."""
    import random

    rng = random.Random(0)
    rows = [{"name": f"w{i}", "model": rng.choice(["alexnet", "resnet50", "vgg19", "ssd"]),
             "rate": rng.uniform(20, 300), "slo_ms": rng.uniform(40, 150)} for i in range(10)]
    (tmp_path / "w.yaml").write_text(json.dumps({"workloads": rows}))
    (tmp_path / "m.json").write_text("{}")
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: FakePerfModel()))
    res = CliRunner().invoke(provision_cli.provision, ["--workloads", str(tmp_path / "w.yaml"), "--perf-model",
                                                       str(tmp_path / "m.json"), "--out", str(tmp_path / "out"),
                                                       "--strategy", "ffd", "--json"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "out" / "plan.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    plan = json.loads(text)
    unbounded = {s["workload"] for g in plan["gpus"] for s in g["servers"] if s["predicted_p99_ms"] is None}
    assert unbounded
    assert {r["workload"] for r in json.loads(res.output)["workloads"] if r["predicted_p99_ms"] is None} == unbounded
