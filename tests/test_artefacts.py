"""plan.json, launch.json and state.json: typed, versioned, one reader each; bad or other-version files are one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402

from igniter.cli import provision as provision_cli  # noqa: E402
from igniter.cli.main import cli  # noqa: E402
from igniter.deployment.state import DeploymentState, ServerState, load_state, save_state  # noqa: E402
from igniter.errors import UserError  # noqa: E402
from igniter.provisioning.plan import read_launch, read_plan  # noqa: E402

WORKLOADS = """
workloads:
  - {name: a, model: alexnet, rate: 400, slo_ms: 20}
  - {name: r, model: resnet50, rate: 150, slo_ms: 50}
"""


@pytest.fixture
def plan_dir(monkeypatch, tmp_path) -> Path:
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: FakePerfModel()))
    (tmp_path / "w.yaml").write_text(WORKLOADS)
    (tmp_path / "m.json").write_text("{}")
    res = CliRunner().invoke(provision_cli.provision, ["--workloads", str(tmp_path / "w.yaml"), "--perf-model",
                                                       str(tmp_path / "m.json"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    return tmp_path / "out"


def test_plan_round_trip(plan_dir):
    raw = json.loads((plan_dir / "plan.json").read_text())
    plan = read_plan(plan_dir / "plan.json")
    assert plan.version == raw["version"] == 3
    assert not [s for g in raw["gpus"] for s in g["servers"] if "instances" in s], "plans state no instance count"
    assert [s.name for _, s in plan.servers()] == [s["name"] for g in raw["gpus"] for s in g["servers"]]
    assert read_plan(plan_dir) == plan, "the plan directory reads as its plan.json"
    for gpu, server in plan.servers():
        launch = read_launch(plan_dir / "triton_repo" / server.name / "launch.json")
        assert (launch.server, launch.gpu, launch.share, launch.backend) == (server.name, gpu.id, server.share, "mps")


def _rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _first_server(data: dict) -> dict:
    return data["gpus"][0]["servers"][0]


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.update(version=1), "is version 1; this igniter reads version 3 (and version 2)"),
    (lambda d: d.pop("version"), "is version None"),
    (lambda d: d.update(format="something-else"), "format='something-else'"),
    (lambda d: _first_server(d).update(share=0.0), "share = 0.0: input should be greater than 0"),
    (lambda d: _first_server(d).update(share=150.0), "share = 150.0: input should be less than or equal to 100"),
    (lambda d: _first_server(d).update(name="../escape"), "must be letters, digits"),
    (lambda d: _first_server(d).update(batch=1.5), "batch = 1.5"),
    (lambda d: d["gpus"][0]["servers"].append(dict(_first_server(d))), "is given twice"),
])
def test_bad_plan_is_one_line_with_the_reprovision_hint(plan_dir, change, needle):
    _rewrite(plan_dir / "plan.json", change)
    with pytest.raises(UserError) as err:
        read_plan(plan_dir / "plan.json")
    line = err.value.line()
    assert needle in line and "To fix: re-run igniter provision" in line and "\n" not in line


def _as_version_2(data: dict, counts: dict[int, object] | None = None) -> None:
    """The plan as igniter wrote it before version 3: every server also said ``instances`` (1, or counts[i] for
    the i-th server)."""
    data["version"] = 2
    for i, server in enumerate(s for g in data["gpus"] for s in g["servers"]):
        server["instances"] = (counts or {}).get(i, 1)


def test_version_2_plan_with_one_instance_per_server_reads_as_its_version_3_plan(plan_dir):
    current = read_plan(plan_dir)
    _rewrite(plan_dir / "plan.json", _as_version_2)
    assert read_plan(plan_dir) == current


@pytest.mark.parametrize("count", [2, 0, True, "1", 1.0, None])
def test_version_2_plan_with_another_instance_count_is_one_line(plan_dir, count):
    _rewrite(plan_dir / "plan.json", lambda d: _as_version_2(d, {1: count}))
    second = [s for g in json.loads((plan_dir / "plan.json").read_text())["gpus"] for s in g["servers"]][1]["name"]
    with pytest.raises(UserError) as err:
        read_plan(plan_dir)
    line = err.value.line()
    assert f"server {second!r} of the version-2 plan" in line and f"instances={count!r}" in line
    assert "To fix: re-run igniter provision" in line and "\n" not in line


def test_version_3_plan_with_an_instance_count_is_refused_as_an_unknown_key(plan_dir):
    _rewrite(plan_dir / "plan.json", lambda d: _first_server(d).update(instances=1))
    with pytest.raises(UserError, match=r"unknown key gpus\[0\] 'V100'.servers\[0\] 'gpu0-a-r0'.instances "):
        read_plan(plan_dir / "plan.json")


def test_apply_refuses_a_version_2_plan_of_two_instances_before_starting_anything(plan_dir, tmp_path):
    _rewrite(plan_dir / "plan.json", lambda d: _as_version_2(d, {0: 2}))
    res = CliRunner().invoke(cli, ["apply", str(plan_dir / "plan.json"), "--state", str(tmp_path / "s.json")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "instances=2" in res.output
    assert not (tmp_path / "s.json").exists()


def test_unknown_key_names_the_valid_ones(plan_dir):
    _rewrite(plan_dir / "plan.json", lambda d: _first_server(d).update(bacth=4))
    where = r"unknown key gpus\[0\] 'V100'.servers\[0\] 'gpu0-a-r0'.bacth "
    with pytest.raises(UserError, match=where + ".*did you mean 'batch'"):
        read_plan(plan_dir / "plan.json")


def test_non_finite_number_is_refused(plan_dir):
    path = plan_dir / "plan.json"
    path.write_text(path.read_text().replace('"slo_ms": 20.0', '"slo_ms": NaN', 1))
    with pytest.raises(UserError, match="slo_ms = nan"):
        read_plan(path)


def test_apply_refuses_an_old_plan_in_one_line(plan_dir, tmp_path):
    _rewrite(plan_dir / "plan.json", lambda d: d.update(version=1))
    res = CliRunner().invoke(cli, ["apply", str(plan_dir / "plan.json"), "--state", str(tmp_path / "s.json")])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "To fix: re-run igniter provision" in res.output
    assert not (tmp_path / "s.json").exists()


def test_old_launch_spec_is_refused(plan_dir):
    launch = next((plan_dir / "triton_repo").glob("*/launch.json"))
    _rewrite(launch, lambda d: d.update(version=1))
    with pytest.raises(UserError, match="To fix: re-run igniter provision"):
        read_launch(launch)


def _state() -> DeploymentState:
    server = ServerState(name="gpu0-a-r0", gpu="gpu0", share=50.0, repo="/srv/r", http="127.0.0.1:1",
                         grpc="127.0.0.1:2", metrics=None, pid=1234, launch_digest="abc", models={"alexnet": "d1"},
                         workloads=["a"])
    return DeploymentState(plan="/p/plan.json", servers={server.name: server})


def test_state_round_trip_and_versions(tmp_path):
    path = tmp_path / "state.json"
    assert load_state(path) == DeploymentState(), "no file: nothing deployed"
    save_state(_state(), path)
    assert json.loads(path.read_text())["version"] == 2
    assert load_state(path) == _state()
    _rewrite(path, lambda d: d.update(version=1))
    with pytest.raises(UserError) as err:
        load_state(path)
    assert "is version 1" in err.value.line() and "igniter down" in err.value.line()
    path.write_text('{"format": "igniter-state", "version": 2, "servers": {"x": {"name": "x"}}}')
    with pytest.raises(UserError, match="servers.x.gpu: field required"):
        load_state(path)


def test_launch_spec_must_match_its_plan_entry(plan_dir):
    from igniter.deployment.apply import planned_servers

    launch = next((plan_dir / "triton_repo").glob("*/launch.json"))
    _rewrite(launch, lambda d: d.update(share=100.0))
    with pytest.raises(UserError, match="does not match the plan.*To fix: re-run igniter provision"):
        planned_servers(plan_dir / "plan.json")
