"""Issue #19, input half: all-or-nothing multi-file writes (a write failing midway leaves the old files
byte-identical and no temporary file), max_count as a hard limit in every strategy, and the bounded search."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402

from igniter import atomic  # noqa: E402
from igniter.cli.main import cli  # noqa: E402
from igniter.errors import UserError  # noqa: E402
from igniter.provisioning import solve  # noqa: E402
from igniter.provisioning.candidates import build_problem  # noqa: E402
from igniter.provisioning.strategy import violations  # noqa: E402
from igniter.provisioning.workloads import GpuType, Workload, WorkloadSet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CPU_PROFILES = ROOT / "profiles" / "cpu-2core"
STRATEGIES = ("ilp", "igniter", "ffd")   # through igniter.provisioning.solve: repair and max_count


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def write_source(src: Path, latency: float) -> None:
    """A small valid iGniter-format source; `latency` makes each import's files differ."""
    src.mkdir(parents=True, exist_ok=True)
    lines = [{m: {"latency": {"1": {"50": latency, "100": latency * 0.8}, "2": {"50": latency * 1.5}}}}
             for m in ("alexnet", "resnet50")]
    lines.append({"interference": {"latency": [["alexnet", "resnet50", 1, 2, 40, latency * 1.2, latency * 2.0]]}})
    (src / "profiles.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (src / "coefficients.jsonl").write_text('{"hardware": {"idlepower": 50.0}}\n')


def import_into(src: Path, out: Path):
    return CliRunner().invoke(cli, ["import-profiles", "--format", "igniter", str(src), "--out", str(out)])


@pytest.fixture
def store(tmp_path) -> Path:
    write_source(tmp_path / "old-src", 1.0)
    assert import_into(tmp_path / "old-src", tmp_path / "store").exit_code == 0
    write_source(tmp_path / "new-src", 2.0)
    return tmp_path / "store"


def failing_on_call(real, failing_call: int):
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)
    return wrapper


@pytest.mark.parametrize("failing_rename", [1, 2, 3])
def test_import_rename_failing_midway_keeps_the_old_store(store, monkeypatch, failing_rename):
    before = contents(store)
    monkeypatch.setattr(atomic.os, "replace", failing_on_call(os.replace, failing_rename))
    result = import_into(store.parent / "new-src", store)
    assert result.exit_code == 2 and "No space left" in result.stderr
    assert contents(store) == before          # byte-identical, and no temp or backup file left beside them


@pytest.mark.parametrize("failing_file", [1, 2, 3])
def test_import_write_failing_midway_keeps_the_old_store(store, monkeypatch, failing_file):
    before = contents(store)
    monkeypatch.setattr(atomic, "_write_temp", failing_on_call(atomic._write_temp, failing_file))
    assert import_into(store.parent / "new-src", store).exit_code == 2
    assert contents(store) == before


def test_import_without_failure_replaces_all_three(store):
    before = contents(store)
    assert import_into(store.parent / "new-src", store).exit_code == 0
    after = contents(store)
    assert set(after) == {"hardware.json", "solo.csv", "pairs.csv"}
    assert after["solo.csv"] != before["solo.csv"] and after["pairs.csv"] != before["pairs.csv"]


def test_atomic_write_many_restores_renamed_files_and_removes_new_ones(tmp_path, monkeypatch):
    (tmp_path / "a").write_text("old a")
    monkeypatch.setattr(atomic.os, "replace", failing_on_call(os.replace, 3))
    with pytest.raises(OSError):
        atomic.atomic_write_many(tmp_path, {"a": "new a", "b": "new b", "c": "new c"})
    assert contents(tmp_path) == {"a": b"old a"}   # b was new: gone again; c never came


class HalfWriter:
    """A file object that writes half of what it is given, then fails (a full disk midway)."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")


def test_fit_write_failing_midway_keeps_the_old_model(tmp_path, monkeypatch):
    out = tmp_path / "m.json"
    out.write_text("the previous model file\n")
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    result = CliRunner().invoke(cli, ["fit", "--profiles", str(CPU_PROFILES), "--out", str(out), "--no-residual"])
    assert result.exit_code == 2 and "No space left" in result.stderr and "To fix:" in result.stderr
    assert contents(tmp_path) == {"m.json": b"the previous model file\n"}


def test_fit_refusing_a_bad_store_writes_nothing(tmp_path):
    store = tmp_path / "p"
    store.mkdir()
    for name in ("hardware.json", "pairs.csv"):
        (store / name).write_bytes((CPU_PROFILES / name).read_bytes())
    (store / "solo.csv").write_text((CPU_PROFILES / "solo.csv").read_text().replace("0.989025", "nan", 1))
    out = tmp_path / "m.json"
    out.write_text("previous\n")
    result = CliRunner().invoke(cli, ["fit", "--profiles", str(store), "--out", str(out)])
    assert result.exit_code == 2 and "latency_p50_ms" in result.stderr
    assert out.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "p"]


# -- max_count ------------------------------------------------------------------------------------------------------

def workload_set(n: int, model: str = "alexnet", rate: float = 100.0, slo: float = 60.0) -> WorkloadSet:
    return WorkloadSet(tuple(Workload(f"w{i}", model, rate, slo) for i in range(n)))


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_max_count_refuses_what_cannot_fit(strategy):
    # 40 alexnet workloads at 100 req/s each need at least 7.5 % of a GPU each (the profiled floor is 10 %,
    # one 2.5 % step below it is allowed): 40 x 7.5 % = 300 %, so no plan fits on one GPU
    problem = build_problem(workload_set(40), [GpuType("V100", 3.0, 1, FakePerfModel())])
    assert min(o.share for opts in problem.options for o in opts) == pytest.approx(7.5)
    with pytest.raises(UserError) as err:
        solve(problem, strategy, 5)[0]
    assert "max_count is 1" in str(err.value) and "GPUs of type 'V100'" in str(err.value)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_max_count_spills_onto_another_type(strategy):
    """The cheaper, faster type is limited to 2 GPUs: the rest goes to the unbounded type, every replica placed."""
    fast = GpuType("A100", 1.0, 2, FakePerfModel("A100", speed=2.0))
    slow = GpuType("T4", 2.0, None, FakePerfModel("T4"))
    problem = build_problem(workload_set(30, rate=150.0), [fast, slow])
    a = solve(problem, strategy, 5)[0]
    assert sum(1 for g in a.gpus if g.type_index == 0) <= 2
    assert sum(1 for g in a.gpus if g.type_index == 1) >= 1
    servers = [s for g in a.gpus for s in g.servers]
    replicas = {s.workload: s.option.replicas for s in servers}
    assert sorted((s.workload, s.replica) for s in servers) == \
        [(wi, r) for wi in range(30) for r in range(replicas[wi])]     # every replica once, none lost
    assert all(g.share() <= 100 + 1e-6 for g in a.gpus)
    if strategy != "ffd":    # ffd is interference-blind by design
        assert not violations(problem, a.gpus)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_max_count_exactly_enough_is_accepted(strategy):
    # three light workloads at the 7.5 % floor each: 22.5 % of one GPU, so max_count 1 suffices
    problem = build_problem(workload_set(3, rate=20.0, slo=100.0), [GpuType("V100", 3.0, 1, FakePerfModel())])
    assert len(solve(problem, strategy, 5)[0].gpus) == 1


def test_free_gpu_type_is_accepted():
    problem = build_problem(workload_set(5), [GpuType("owned", 0.0, 3, FakePerfModel())])
    a, _ = solve(problem, "ilp", 5)
    assert 1 <= len(a.gpus) <= 3 and a.lower_bound == 0.0


# -- the bounded search ---------------------------------------------------------------------------------------------

def test_rate_needing_too_many_servers_is_refused_with_the_figure():
    # one alexnet server at most: batch 32 on a whole GPU, L = (0.30 + 0.25 * 32) + 0.1 = 8.4 ms, so 32 / 8.4 ms
    # = 3809.5 req/s, with the 0.95 utilisation cap 3619.05 req/s; 1e9 req/s needs ceil(1e9 / 3619.05) = 276316
    problem = WorkloadSet((Workload("huge", "alexnet", 1e9, 60.0),))
    with pytest.raises(UserError) as err:
        build_problem(problem, [GpuType("V100", 1.0, None, FakePerfModel())])
    assert "would need 276316 servers" in str(err.value) and "at most 64" in str(err.value)


def test_rate_1e308_is_refused_at_once():
    with pytest.raises(UserError, match="would need 2.76e"):
        build_problem(WorkloadSet((Workload("huge", "alexnet", 1e308, 60.0),)),
                      [GpuType("V100", 1.0, None, FakePerfModel())])


def test_plan_above_the_server_cap_is_refused_with_the_figure():
    # 12,667 req/s needs ceil(12667 / 3619.05) = 4 alexnet servers; 1,100 such workloads need 4,400 > 4,096
    ws = WorkloadSet(tuple(Workload(f"w{i}", "alexnet", 12667.0, 1000.0) for i in range(1100)))
    with pytest.raises(UserError, match="need at least 4400 servers; igniter plans at most 4096"):
        build_problem(ws, [GpuType("V100", 1.0, None, FakePerfModel())])


def test_ilp_within_max_count_where_only_its_greedy_warm_start_is_over():
    # found by search over random instances (SLOs x 0.8 since the p99 model's fix of issue #11): the greedy needs
    # 3 GPUs, 2 suffice (the ILP's plan below is the witness, checked with the full model); with max_count 2 the
    # greedy is refused, the ILP must not be
    specs = [("ssd", 154.5, 68.7), ("ssd", 21.6, 107.2), ("vgg19", 86.6, 51.6), ("vgg19", 104.6, 61.5),
             ("resnet50", 286.5, 85.0), ("alexnet", 241.0, 116.2)]
    ws = WorkloadSet(tuple(Workload(f"w{i}", m, r, s) for i, (m, r, s) in enumerate(specs)))
    problem = build_problem(ws, [GpuType("V100", 1.0, 2, FakePerfModel())])
    with pytest.raises(UserError, match="need 3 GPUs"):
        solve(problem, "igniter", 5)
    a, _ = solve(problem, "ilp", 60)     # it stops when it has proven the optimum (well under a second here)
    assert len(a.gpus) == 2 and not violations(problem, a.gpus)
    assert sorted((s.workload, s.replica) for g in a.gpus for s in g.servers) == \
        sorted((wi, r) for wi in range(len(specs)) for r in range(
            next(s.option.replicas for g in a.gpus for s in g.servers if s.workload == wi)))
