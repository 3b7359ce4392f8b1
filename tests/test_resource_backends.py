"""igniter.backends: one launch for profiled, planned and deployed servers; the stages go through it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402

from igniter import backends  # noqa: E402
from igniter.profiling.backends.cpu import CpuBackend  # noqa: E402
from igniter.profiling.backends.mps import MpsBackend, MpsDaemon  # noqa: E402
from igniter.provisioning import solve  # noqa: E402
from igniter.provisioning.candidates import build_problem  # noqa: E402
from igniter.provisioning.plan import build_plan, read_launch, read_plan, write_plan  # noqa: E402
from igniter.provisioning.workloads import Workload, WorkloadSet, default_catalog  # noqa: E402
from igniter.triton.config import (get_parameter, new_model_config, read_config, set_parameter,  # noqa: E402
                                   write_config)

PACKAGE = Path(__file__).resolve().parents[1] / "igniter"


def _cpu_plan(tmp_path: Path, cores: int) -> Path:
    """A CPU-host plan over a source repository whose models declare the ``threads`` parameter (as the demo's do)."""
    src = tmp_path / "src"
    for model in ("alexnet", "resnet50"):
        cfg = new_model_config(model, max_batch_size=32)
        set_parameter(cfg, "threads", 1)
        write_config(cfg, src / model / "config.pbtxt")
    pm = FakePerfModel("cpu-host", kind="cpu", cores=cores, shares=(25.0, 50.0, 75.0, 100.0))
    ws = WorkloadSet((Workload("a", "alexnet", 100, 60), Workload("r", "resnet50", 30, 120),
                      Workload("b", "alexnet", 50, 80)))
    problem = build_problem(ws, default_catalog(pm))
    assignment, _ = solve(problem, "ilp", 5)
    write_plan(build_plan(problem, assignment, "ilp"), problem, tmp_path / "out", src, {})
    return tmp_path / "out"


@pytest.mark.parametrize("cores", [2, 4])
def test_cpu_server_launches_as_it_was_profiled(tmp_path, cores):
    out = _cpu_plan(tmp_path, cores)
    profiler = CpuBackend(cpus=list(range(cores)))
    plan = read_plan(out)
    assert plan.gpus and all(g.backend == "cpu" for g in plan.gpus)
    for _, server in plan.servers():
        repo = out / "triton_repo" / server.name
        launch = read_launch(repo / "launch.json")
        profiled = profiler.options(repo, server.model, server.share, profiler.allocate(server.share))
        assert launch.env == profiled.env
        k = round(server.share / 100 * cores)          # hand-worked: share% of the cores, whole cores
        assert launch.env == {"OMP_NUM_THREADS": str(k), "OPENBLAS_NUM_THREADS": str(k), "MKL_NUM_THREADS": str(k)}
        assert len(launch.cpus) == len(profiled.cpus) == launch.threads == k
        assert get_parameter(read_config(repo / server.model / "config.pbtxt"), "threads") == str(k)


def test_mps_server_launches_as_it_was_profiled(tmp_path):
    profiler = MpsBackend(nvml=object(), daemon=MpsDaemon(base_dir=tmp_path))
    planned = backends.get("mps").launch(37.5)
    assert planned.env == {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "37.5"} and planned.cpus is None
    profiled = profiler.options(tmp_path, "m", 37.5).env
    assert {k: profiled[k] for k in planned.env} == planned.env


def test_backend_for_hardware():
    assert backends.for_hardware({"kind": "cpu"}).name == "cpu"
    assert backends.for_hardware({"kind": "gpu"}).name == "mps"   # imported V100 profiles name no backend
    assert backends.for_hardware({"kind": "gpu", "backend": "cpu"}).name == "cpu"
    with pytest.raises(Exception, match="To fix"):
        backends.get("mig")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_backends_sit_left_of_every_stage():
    for path in (PACKAGE / "backends").glob("*.py"):
        stages = {m for m in _imports(path) if m.split(".")[1:2] and m.split(".")[1] in
                  ("profiling", "model", "provisioning", "deployment", "cli")}
        assert not stages, f"{path.name} imports {stages}"


@pytest.mark.parametrize("module", ["profiling/runner.py", "provisioning/candidates.py", "provisioning/plan.py",
                                    "deployment/apply.py"])
def test_profiler_provisioner_and_apply_do_not_branch_on_the_hardware(module):
    """Everything that differs between CPU and MPS servers comes from igniter.backends."""
    source = (PACKAGE / module).read_text()
    for needle in ('kind != "cpu"', 'kind == "cpu"', 'kind == "gpu"', "KIND_GPU", "KIND_CPU", "CUDA_MPS",
                   "OMP_NUM_THREADS"):
        assert needle not in source, f"{module} mentions {needle}"
    if not module.startswith("profiling"):
        assert "igniter.profiling.backends" not in source, f"{module} reaches into the profiler's backends"


def test_cli_choices_come_from_the_registries():
    from igniter.cli.demo import demo
    from igniter.cli.profile import profile
    from igniter.cli.provision import provision
    from igniter.provisioning import STRATEGIES

    choices = [(p.name, list(p.type.choices)) for cmd in (profile, provision, demo) for p in cmd.params
               if p.name in ("backend", "strategy")]
    assert choices == [("backend", ["auto", *sorted(backends.BACKENDS)]), ("strategy", sorted(STRATEGIES)),
                       ("strategy", sorted(STRATEGIES))]
