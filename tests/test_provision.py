"""Provisioning: candidates, strategies, plan files and the CLI, on the analytical fake perf model."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402
from provision_oracle import partitions  # noqa: E402

from igniter.cli import provision as provision_cli  # noqa: E402
from igniter.provisioning import ffd, greedy_igniter, solve  # noqa: E402
from igniter.provisioning.candidates import build_problem  # noqa: E402
from igniter.provisioning.strategy import (Gpu, Server, cost, fits_linear, memory_limit,  # noqa: E402
                                           violations)
from igniter.provisioning.workloads import Workload, WorkloadSet, default_catalog  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def problem_of(specs, pm=None, latency_model="queueing"):
    pm = pm or FakePerfModel()
    ws = WorkloadSet(tuple(Workload(f"w{i}", m, r, slo) for i, (m, r, slo) in enumerate(specs)))
    return build_problem(ws, default_catalog(pm), latency_model)


def enumerate_optimum(problem) -> int:
    """Fewest GPUs by brute force: every set partition of the servers x every option choice per server."""
    servers = [Server(wi, r, None) for wi, opts in enumerate(problem.options) for r in range(opts[0].replicas)]
    best = len(servers)
    for part in partitions(list(range(len(servers)))):
        if len(part) >= best:
            continue
        if all(any(fits_linear(problem, 0, list(c)) for c in
                   itertools.product(*[problem.options[servers[i].workload] for i in group])) for group in part):
            best = len(part)
    return best


SMALL = [
    [("alexnet", 200, 20), ("resnet50", 100, 40), ("vgg19", 50, 80)],
    [("alexnet", 500, 15), ("alexnet", 300, 20), ("resnet50", 150, 50), ("ssd", 40, 120)],
    [("vgg19", 100, 60), ("vgg19", 80, 70), ("ssd", 60, 90), ("resnet50", 200, 40)],
]


@pytest.mark.parametrize("specs", SMALL)
def test_ilp_matches_enumerated_optimum(specs):
    problem = problem_of(specs)
    for opts in problem.options:   # keep enumeration small: the ILP sees the same options
        del opts[6:]
    best = enumerate_optimum(problem)
    plan, _ = solve(problem, "ilp", 10)
    assert not violations(problem, plan.gpus)
    assert len(plan.gpus) == best


@pytest.mark.parametrize("seed", range(4))
def test_limits_hold_and_ilp_never_worse_than_greedy(seed):
    import random
    rng = random.Random(seed)
    specs = [(rng.choice(["alexnet", "resnet50", "vgg19", "ssd"]), rng.uniform(20, 300), rng.uniform(40, 150))
             for _ in range(10)]
    problem = problem_of(specs, FakePerfModel(memory_mb=4000))
    results = {name: solve(problem, name, 5)[0] for name in ("ilp", "igniter", "ffd")}
    for name, a in results.items():
        # every workload's replicas placed exactly once (replica counts are each strategy's own choice)
        placed = sorted((s.workload, s.replica) for g in a.gpus for s in g.servers)
        replicas = {s.workload: s.option.replicas for g in a.gpus for s in g.servers}
        assert sorted(replicas) == list(range(len(problem.workloads))), name
        assert placed == sorted((wi, r) for wi, k in replicas.items() for r in range(k)), name
        for g in a.gpus:
            assert g.share() <= 100 + 1e-6
            assert g.memory() <= memory_limit(problem, g.type_index) + 1e-6
    assert not violations(problem, results["ilp"].gpus)
    assert not violations(problem, results["igniter"].gpus)
    assert cost(problem, results["ilp"].gpus) <= cost(problem, results["igniter"].gpus) + 1e-9
    assert results["ilp"].lower_bound <= cost(problem, results["ilp"].gpus) + 1e-9


def test_large_instance_uses_windows_and_stays_feasible():
    import random
    rng = random.Random(7)
    specs = [(rng.choice(["alexnet", "resnet50", "vgg19", "ssd"]), rng.uniform(20, 200), rng.uniform(50, 150))
             for _ in range(60)]
    problem = problem_of(specs)
    a, _ = solve(problem, "ilp", 3)
    g, _ = solve(problem, "igniter", 3)
    assert a.details["mode"] == "windows"
    assert not violations(problem, a.gpus)
    assert len(a.gpus) <= len(g.gpus)


def test_ffd_ignores_interference():
    problem = problem_of([("vgg19", 100, 60), ("ssd", 60, 90), ("resnet50", 150, 50)])
    blind = ffd.solve(problem)
    gpus = [Gpu(0, [s for s in g.servers]) for g in blind.gpus]
    assert sum(g.share() for g in gpus) == pytest.approx(sum(min(o.share * o.replicas for o in opts)
                                                          for opts in problem.options))


# ---------------------------------------------------------------- CLI


@pytest.fixture
def fake_cli(monkeypatch):
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: FakePerfModel()))
    return CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


WORKLOADS = """
workloads:
  - {name: a, model: alexnet, rate: 400, slo_ms: 20}
  - {name: r, model: resnet50, rate: 150, slo_ms: 50}
  - {name: v, model: vgg19, rate: 60, slo_ms: 80}
"""


def invoke(runner, tmp_path, workloads_text, *extra):
    w = write(tmp_path / "w.yaml", workloads_text)
    model = write(tmp_path / "m.json", "{}")
    return runner.invoke(provision_cli.provision, ["--workloads", str(w), "--perf-model", str(model),
                                                   "--out", str(tmp_path / "out"), *extra])


def test_cli_writes_plan_and_repos(fake_cli, tmp_path):
    res = invoke(fake_cli, tmp_path, WORKLOADS, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) >= {"gpus", "cost", "lower_bound", "gap", "solve_seconds", "workloads"}
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["format"] == "igniter-plan" and plan["totals"]["gpus"] == out["gpus"] and "rejected" not in plan
    servers = [s for g in plan["gpus"] for s in g["servers"]]
    assert sorted(w["workload"] for w in out["workloads"]) == sorted({s["workload"] for s in servers})
    from igniter.triton.config import driven_fields, read_config
    for g in plan["gpus"]:
        for s in g["servers"]:
            repo = tmp_path / "out" / "triton_repo" / s["name"]
            launch = json.loads((repo / "launch.json").read_text())
            assert launch["env"]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == f"{s['share']:g}"
            fields = driven_fields(read_config(repo / s["model"] / "config.pbtxt"))
            assert fields["max_batch_size"] >= s["batch"] and fields["preferred_batch_size"] == [s["batch"]]
            # one instance per server, and the plan states no count of its own (docs/artefacts.md §3)
            assert fields["kinds"] == ["KIND_GPU"] and fields["instances"] == 1 and "instances" not in s
            assert fields["max_queue_delay_us"] == s["max_queue_delay_us"]
            assert s["predicted_p99_ms"] <= s["slo_ms"]


def test_cli_is_deterministic(fake_cli, tmp_path):
    def files(root: Path):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != "solve.json"}

    assert invoke(fake_cli, tmp_path, WORKLOADS).exit_code == 0
    first = files(tmp_path / "out")
    assert invoke(fake_cli, tmp_path, WORKLOADS).exit_code == 0
    assert files(tmp_path / "out") == first
    assert "plan.json" in first


def test_cli_copies_source_repo(fake_cli, tmp_path):
    src = tmp_path / "src"
    (src / "alexnet" / "1").mkdir(parents=True)
    (src / "alexnet" / "1" / "model.onnx").write_bytes(b"weights")
    (src / "alexnet" / "labels.txt").write_text("cat\n")
    from igniter.triton.config import new_model_config, set_parameter, write_config
    base = new_model_config("alexnet", backend="onnxruntime", max_batch_size=1)
    set_parameter(base, "custom", "kept")
    write_config(base, src / "alexnet" / "config.pbtxt")
    res = invoke(fake_cli, tmp_path, WORKLOADS, "--repo", str(src))
    assert res.exit_code == 0, res.output
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    s = next(s for g in plan["gpus"] for s in g["servers"] if s["model"] == "alexnet")
    repo = tmp_path / "out" / "triton_repo" / s["name"] / "alexnet"
    assert (repo / "1" / "model.onnx").read_bytes() == b"weights"
    assert (repo / "labels.txt").exists()
    from igniter.triton.config import read_config
    cfg = read_config(repo / "config.pbtxt")
    assert cfg.backend == "onnxruntime" and cfg.parameters["custom"].string_value == "kept"
    assert cfg.max_batch_size >= s["batch"]


@pytest.mark.parametrize("text, needle", [
    ("workloads:\n  - {name: a, rate: 10, slo_ms: 20}\n", "workloads[0] 'a'.model: field required"),
    ("workloads:\n  - {name: a, model: alexnet, rate: -5, slo_ms: 20}\n", "workloads[0] 'a'.rate = -5: input should be greater than or equal to 0.001"),
    ("workloads:\n  - {name: a, model: alexnet, rate: 5, slo_ms: 20}\n  - {name: b, model: alexnet, rate: 5, slo_ms: 0}\n",
     "workloads[1] 'b'.slo_ms = 0: input should be greater than 0"),
    ("workloads:\n  - {name: a, model: bert, rate: 10, slo_ms: 20}\n", "'bert' is not in the performance model"),
    ("workloads: [\n", "not valid YAML"),
    ("other: 1\n", "unknown key other"),
])
def test_bad_workloads_exit_2(fake_cli, tmp_path, text, needle):
    res = invoke(fake_cli, tmp_path, text)
    assert res.exit_code == 2
    assert needle in res.output and "To fix:" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("catalog, needle", [
    ("gpus:\n  - {type: V100, price_per_hour: 3.06, perf_model: missing.json}\n", "gpus[0] 'V100'.perf_model 'missing.json' does not exist"),
    ("gpus:\n  - {type: V100, price_per_hour: -1, perf_model: m.json}\n", "gpus[0] 'V100'.price_per_hour = -1: input should be greater than or equal to 0"),
    ("gpus:\n  - {type: V100, price_per_hour: 1, max_count: 0, perf_model: m.json}\n", "gpus[0] 'V100'.max_count = 0: input should be greater than or equal to 1"),
    ("gpus: []\n", "gpus = []: list should have at least 1 item"),
])
def test_bad_catalog_exit_2(fake_cli, tmp_path, catalog, needle):
    cat = write(tmp_path / "gpus.yaml", catalog)
    res = invoke(fake_cli, tmp_path, WORKLOADS, "--gpus", str(cat))
    assert res.exit_code == 2
    assert needle in res.output and "To fix:" in res.output


def test_catalog_heterogeneous(monkeypatch, tmp_path):
    models = {"slow.json": FakePerfModel("T4", speed=0.5), "fast.json": FakePerfModel("A100", speed=2.0)}
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: models[Path(path).name]))
    for name in models:
        write(tmp_path / name, "{}")
    cat = write(tmp_path / "gpus.yaml", "gpus:\n  - {type: T4, price_per_hour: 0.5, perf_model: slow.json}\n"
                                        "  - {type: A100, price_per_hour: 4.0, max_count: 2, perf_model: fast.json}\n")
    res = invoke(CliRunner(), tmp_path, WORKLOADS, "--gpus", str(cat), "--json")
    assert res.exit_code == 0, res.output
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert sum(1 for g in plan["gpus"] if g["type"] == "A100") <= 2
    assert plan["totals"]["cost"] == pytest.approx(sum(g["price_per_hour"] for g in plan["gpus"]))


def test_infeasible_slo_exit_2_nothing_written(fake_cli, tmp_path):
    text = WORKLOADS + "  - {name: tight, model: ssd, rate: 10, slo_ms: 1}\n"
    res = invoke(fake_cli, tmp_path, text)
    assert res.exit_code == 2
    line = res.output.strip().splitlines()[-1]
    assert "'tight'" in line and "best achievable p99" in line and "To fix:" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (ROOT / "examples" / "workloads-12.yaml").exists(), reason="examples missing")
def test_examples_parse(fake_cli, tmp_path):
    for name in ("workloads-12.yaml", "workloads-3.yaml"):
        res = fake_cli.invoke(provision_cli.provision, [
            "--workloads", str(ROOT / "examples" / name), "--perf-model", str(write(tmp_path / "m.json", "{}")),
            "--out", str(tmp_path / name), "--strategy", "igniter", "--latency-model", "half-slo"])
        assert res.exit_code == 0, res.output


# ---------------------------------------------------------------- share grid vs hardware


@pytest.mark.parametrize("cores, allowed", [(2, {50.0, 100.0}), (4, {50.0, 75.0, 100.0})])
def test_cpu_shares_are_whole_cores_within_profiled_range(tmp_path, cores, allowed):
    pm = FakePerfModel("cpu-host", kind="cpu", cores=cores, shares=(50.0, 100.0))
    problem = problem_of([("alexnet", 100, 60), ("resnet50", 30, 120), ("alexnet", 50, 80)], pm)
    assert {o.share for opts in problem.options for o in opts} <= allowed
    plan, _ = solve(problem, "ilp", 5)
    assert {s.option.share for g in plan.gpus for s in g.servers} <= allowed
    from igniter.provisioning.plan import build_plan, write_plan
    write_plan(build_plan(problem, plan, "ilp"), problem, tmp_path / "out", None, {})
    for launch in (tmp_path / "out" / "triton_repo").glob("*/launch.json"):
        data = json.loads(launch.read_text())
        assert len(data["cpus"]) * 100.0 / cores == pytest.approx(data["share"])


def test_gpu_shares_extrapolate_at_most_one_step_below_profiled():
    problem = problem_of([("alexnet", 50, 60), ("resnet50", 20, 150), ("vgg19", 10, 200)])
    assert min(o.share for opts in problem.options for o in opts) == pytest.approx(7.5)   # profiled from 10 %


def test_ilp_stops_when_greedy_meets_bound():
    problem = problem_of([("alexnet", 100, 60)])
    a, _ = solve(problem, "ilp", 5)
    assert a.status == "optimal" and a.details["mode"] == "greedy meets the bound"
    assert cost(problem, a.gpus) == pytest.approx(a.lower_bound)


def test_vectorised_placement_equals_one_gpu_at_a_time():
    problem = problem_of([("alexnet", 200, 30), ("resnet50", 100, 60), ("vgg19", 40, 120), ("ssd", 30, 150),
                          ("vgg19", 150, 80), ("vgg19", 150, 80), ("alexnet", 300, 40)])
    servers = greedy_igniter.servers_of(problem, [greedy_igniter.min_share_options(problem, wi)[0]
                                                 for wi in range(len(problem.workloads))])
    new, groups = servers[-1], [[], servers[:1], servers[1:3], servers[:4], servers[:6]]   # sizes differ: padding
    together = greedy_igniter.place(problem, groups, new)
    assert together == [greedy_igniter.place(problem, [g], new)[0] for g in groups]
    assert together[0] == [new] and together[1] is not None and together[-1] is None


def test_provision_json_stdout_is_one_json_document_in_a_real_process(tmp_path):
    """In a real process (not CliRunner, which only sees sys.stdout): a native solver writing to file descriptor 1
    (HiGHS prints a banner when its first solver object is made; the strong bound builds one on the 12-workload
    V100 set) must not break the --json output."""
    import subprocess

    from conftest import shared_data

    root = Path(__file__).resolve().parents[1]
    igniter = [sys.executable, "-m", "igniter"]
    for step in (["import-profiles", "--format", "igniter", str(shared_data("igniter-v100")), "--out", str(tmp_path / "p")],
                 ["fit", "--profiles", str(tmp_path / "p"), "--out", str(tmp_path / "m.json")]):
        done = subprocess.run(igniter + step, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    res = subprocess.run(igniter + ["provision", "--workloads", str(root / "examples" / "workloads-12.yaml"),
                                    "--perf-model", str(tmp_path / "m.json"), "--out", str(tmp_path / "plan"),
                                    "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)          # the whole stdout is one JSON document
    assert len(doc["workloads"]) == 12 and doc["gpus"] >= 1


def test_a_calibrated_host_adds_its_path_term_at_the_sets_total_rate():
    # hardware.json path_overhead: p99 3 ms at 20 req/s (p50 1), 9 ms at 300; the set's total rate is 160 req/s,
    # so every option carries 3 + 140/280 x 6 - 1 = 5 ms (hand-worked); uncalibrated hardware carries none
    specs = [("alexnet", 100, 20), ("resnet50", 60, 40)]
    pm = FakePerfModel()
    pm.hardware["path_overhead"] = [{"rate_rps": 20.0, "p50_ms": 1.0, "p99_ms": 3.0},
                                    {"rate_rps": 300.0, "p50_ms": 2.0, "p99_ms": 9.0}]
    calibrated, plain = problem_of(specs, pm), problem_of(specs)
    assert {round(o.extra_ms, 9) for opts in calibrated.options for o in opts} == {5.0}
    assert {o.extra_ms for opts in plain.options for o in opts} == {0.0}
    # the term leaves less batch latency under the same SLO
    by_key = lambda p: {(o.workload, o.batch, o.replicas): o.max_latency_ms for opts in p.options for o in opts}  # noqa: E731
    tight, loose = by_key(calibrated), by_key(plain)
    assert all(tight[k] < loose[k] for k in tight.keys() & loose.keys()) and tight.keys() & loose.keys()


def test_a_set_above_the_highest_calibrated_rate_takes_the_path_at_that_rate():
    # calibrated at 20 and 300 req/s (p99 3 and 9 ms, baseline 1 ms; 2.5 ms CPU per request on 2 cores); the set
    # asks 900 req/s in all, more than any one host was calibrated for: the path term is the 300 req/s one,
    # 9 - 1 = 8 ms, and the slowdown 1 / (1 - 300 x 2.5 / 2000) = 1.6 (hand-worked), not infinite (at 900 req/s
    # the path's CPU alone would need 1.125 of each core)
    specs = [("alexnet", 500, 60), ("resnet50", 400, 80)]
    pm = FakePerfModel()
    pm.hardware["cores"] = 2
    pm.hardware["path_overhead"] = [{"rate_rps": r, "p50_ms": 2.0, "p99_ms": p99, "baseline_p50_ms": 1.0,
                                     "cpu_ms_per_request": 2.5} for r, p99 in ((20.0, 3.0), (300.0, 9.0))]
    calibrated = problem_of(specs, pm)
    options = [o for opts in calibrated.options for o in opts]
    assert options and {round(o.extra_ms, 9) for o in options} == {8.0}
    assert {round(o.slowdown, 9) for o in options} == {1.6}


def test_a_calibrated_hosts_path_cpu_shrinks_every_options_latency_budget_by_its_slowdown():
    # hardware.json path_overhead with 2.5 ms of client + front-door CPU per request on 2 cores, the path's p99
    # equal to its p50 (no path term): at the set's 160 req/s that keeps 160 x 2.5 / 2000 = 0.2 of each core
    # busy, so a server runs 1 / 0.8 = 1.25x slower (hand-worked) and every option's largest batch latency is
    # the uncalibrated one / 1.25 (the p99 depends on the batch latency only through latency x slowdown)
    specs = [("alexnet", 100, 20), ("resnet50", 60, 40)]
    pm = FakePerfModel()
    pm.hardware["cores"] = 2
    pm.hardware["path_overhead"] = [{"rate_rps": r, "p50_ms": 1.0, "p99_ms": 1.0, "cpu_ms_per_request": 2.5}
                                    for r in (20.0, 300.0)]
    calibrated, plain = problem_of(specs, pm), problem_of(specs)
    assert {round(o.slowdown, 9) for opts in calibrated.options for o in opts} == {1.25}
    by_key = lambda p: {(o.workload, o.batch, o.share, o.replicas): o.max_latency_ms  # noqa: E731
                        for opts in p.options for o in opts}
    slow, fast = by_key(calibrated), by_key(plain)
    shared = slow.keys() & fast.keys()
    assert shared and all(slow[k] == pytest.approx(fast[k] / 1.25, rel=1e-6) for k in shared)
