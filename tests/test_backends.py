"""Resource backends, samplers, hardware detection and the pair design, with fakes at the edges (no GPU, no MPS)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from igniter.errors import UserError
from igniter.profiling import sysmetrics
from igniter.profiling.backends import WorkloadContext, get_backend
from igniter.backends import Launch
from igniter.backends.cpu import cores_for_share
from igniter.profiling.backends.cpu import CpuBackend
from igniter.profiling.backends.mps import MpsBackend, MpsDaemon
from igniter.profiling.design import pair_design, solo_grid
from igniter.backends.hardware import gpu_hardware
from igniter.triton.config import get_parameter
from igniter.triton.demo_zoo import demo_config, DEMO_MODELS
from igniter.triton.config import write_config
from igniter.triton.server import Endpoints


@pytest.fixture()
def repo(tmp_path):
    for model in DEMO_MODELS:
        write_config(demo_config(model), tmp_path / model.name / "config.pbtxt")
    return tmp_path


# -- CPU -------------------------------------------------------------------------------------------------------------

def test_cores_for_share():
    assert [cores_for_share(s, 2) for s in (10, 50, 75, 100)] == [1, 1, 2, 2]
    assert cores_for_share(30, 8) == 2
    with pytest.raises(UserError):
        cores_for_share(0, 2)
    with pytest.raises(UserError):
        cores_for_share(120, 2)


def test_cpu_allocation_wraps_so_shares_overlap(repo):
    backend = CpuBackend(cpus=[0, 1])
    assert backend.allocate(50).cpus == [0]
    backend._active = 1
    second = backend.allocate(50)
    assert second.cpus == [1]  # 50 + 50: one core each
    backend._active = 0
    assert backend.allocate(100).cpus == [0, 1]
    backend._active = 1
    assert backend.allocate(50).cpus == [0]  # 100 + 50: the second shares core 0
    opts = backend.options(repo, "convnet", 50, second)
    assert opts.cpus == [1] and opts.env["OMP_NUM_THREADS"] == "1" and opts.models == [] and not opts.gpu
    cfg = backend.model_config(repo, "mlp", Launch(env={}, cpus=[0, 1], threads=2))
    assert get_parameter(cfg, "threads") == "2"
    assert backend.describe_hardware()["kind"] == "cpu"


def _fake_proc(root: Path, busy: int, idle: int, groups: dict[int, list[tuple[int, int]]]) -> Path:
    root.mkdir(exist_ok=True)
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0\n")
    for pgid, members in groups.items():
        for pid, rss_kb in members:
            d = root / str(pid)
            d.mkdir(exist_ok=True)
            (d / "stat").write_text(f"{pid} (triton server) S 1 {pgid} {pgid} 0 -1")
            (d / "status").write_text(f"Name:\tx\nVmRSS:\t{rss_kb} kB\n")
    return root


def test_cpu_sampler_reads_proc(tmp_path):
    proc = _fake_proc(tmp_path / "proc", 100, 100, {500: [(500, 2048), (501, 1024)], 600: [(600, 4096)]})
    assert sysmetrics.group_rss_mb(500, proc) == pytest.approx(3.0)
    sampler = sysmetrics.CpuSampler([500, 600], proc=proc, period_s=0.01)
    sampler.start()
    _fake_proc(proc, 250, 150, {})  # 150 busy of 200 jiffies
    out = sampler.stop()
    assert out["cpu_util_pct"] == pytest.approx(75.0)
    assert out["memory_mb_by_pgid"] == {500: pytest.approx(3.0), 600: pytest.approx(4.0)}
    ctx = WorkloadContext("convnet", 50, Endpoints("h:1", "h:2"))
    ctx.server = SimpleNamespace(process=SimpleNamespace(pid=600))
    assert CpuBackend(cpus=[0]).per_workload(out, ctx) == {"cpu_util_pct": pytest.approx(75.0), "memory_mb": pytest.approx(4.0)}


def test_real_proc_stat_is_readable():
    busy, total = sysmetrics.read_cpu_times()
    assert 0 <= busy <= total


def test_auto_backend_is_cpu_without_a_driver():
    assert get_backend("auto").name == ("mps" if _has_gpu() else "cpu")
    with pytest.raises(UserError):
        get_backend("tpu")


def _has_gpu() -> bool:
    from igniter.profiling.backends import gpu_available

    return gpu_available()


# -- GPU / MPS with fakes ----------------------------------------------------------------------------------------------

class FakeNvml:
    NVML_CLOCK_SM = 1

    def __init__(self):
        self.clock = 1380

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"h{i}"

    def nvmlDeviceGetName(self, h):
        return b"Tesla V100-SXM2-16GB"

    def nvmlDeviceGetNumGpuCores(self, h):
        return 5120

    def nvmlDeviceGetArchitecture(self, h):
        return 7

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1530

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return 300000

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=16 * 2**30, used=3 * 2**30)

    def nvmlSystemGetDriverVersion(self):
        return "550.54"

    def nvmlDeviceGetClockInfo(self, h, kind):
        return self.clock

    def nvmlDeviceGetPowerUsage(self, h):
        return 150000

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=60, memory=20)


def test_gpu_hardware_from_nvml():
    hw = gpu_hardware(FakeNvml())
    assert hw["kind"] == "gpu" and hw["name"] == "Tesla V100-SXM2-16GB"
    assert hw["sm_count"] == 80 and hw["max_clock_mhz"] == 1530 and hw["tdp_w"] == 300.0 and hw["memory_mb"] == 16384


def test_nvml_sampler():
    nvml = FakeNvml()
    sampler = sysmetrics.NvmlSampler(nvml, period_s=0.01)
    sampler.start()
    nvml.clock = 1500
    import time

    time.sleep(0.05)
    out = sampler.stop()
    assert 1380 <= out["sm_clock_mhz"] <= 1500
    assert out["power_w"] == 150.0 and out["gpu_util_pct"] == 60.0 and out["memory_mb"] == 3072.0
    assert out["nvml_samples"] >= 3


class FakeRun:
    def __init__(self, code=0):
        self.calls, self.code = [], code

    def __call__(self, argv, **kwargs):
        assert "shell" not in kwargs
        self.calls.append((argv, kwargs))
        return SimpleNamespace(returncode=self.code, stdout="", stderr="mps failed")


def test_mps_daemon_start_stop(tmp_path):
    run = FakeRun()
    daemon = MpsDaemon(run=run, which=lambda b: f"/usr/bin/{b}", base_dir=tmp_path)
    daemon.start()
    argv, kwargs = run.calls[0]
    assert argv == ["/usr/bin/nvidia-cuda-mps-control", "-d"]
    [private] = tmp_path.glob("igniter-mps-*")   # the daemon's own directory under base_dir, pipe/ and log/ in it
    pipe = private / "pipe"
    assert kwargs["env"]["CUDA_MPS_PIPE_DIRECTORY"] == str(pipe) and pipe.is_dir()
    assert kwargs["env"]["CUDA_MPS_LOG_DIRECTORY"] == str(private / "log")
    daemon.stop()
    argv, kwargs = run.calls[1]
    assert argv == ["/usr/bin/nvidia-cuda-mps-control"] and kwargs["input"] == "quit\n"
    assert not pipe.exists() and not daemon.running


def test_mps_daemon_errors(tmp_path):
    with pytest.raises(UserError, match="not on PATH"):
        MpsDaemon(run=FakeRun(), which=lambda b: None).start()
    with pytest.raises(UserError, match="did not start"):
        MpsDaemon(run=FakeRun(code=1), which=lambda b: b, base_dir=tmp_path).start()
    assert not list(tmp_path.iterdir())  # temp dir cleaned


def test_mps_backend_workload(repo, tmp_path):
    started = []

    @contextlib.contextmanager
    def fake_server(options, model, config):
        started.append((options, model, config))
        yield SimpleNamespace(endpoints=Endpoints("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"),
                              process=SimpleNamespace(pid=42))

    run = FakeRun()
    backend = MpsBackend(nvml=FakeNvml(), daemon=MpsDaemon(run=run, which=lambda b: b, base_dir=tmp_path),
                         server_factory=fake_server)
    with backend:
        assert backend.describe_hardware()["sm_count"] == 80
        with backend.start_workload(repo, "convnet", 30, batch=4) as ctx:
            assert ctx.endpoints.grpc == "127.0.0.1:2" and ctx.batch == 4
        options, model, config = started[0]
        assert options.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "30" and options.gpu
        [private] = tmp_path.glob("igniter-mps-*")
        assert options.env["CUDA_MPS_PIPE_DIRECTORY"] == str(private / "pipe")
        assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU
        sampler = backend.sampler([ctx])
        sampler.start()
        figures = backend.per_workload(sampler.stop(), ctx)
        assert set(figures) == {"sm_clock_mhz", "power_w", "gpu_util_pct", "memory_mb"}
    assert [c[0][-1] for c in run.calls] == ["-d", "nvidia-cuda-mps-control"]


# -- design ----------------------------------------------------------------------------------------------------------

def test_solo_grid_grouped_by_model_and_share():
    grid = solo_grid(["a", "b"], [1, 2], [50, 100])
    assert len(grid) == 8 and [(m.model, m.share) for m in grid[:2]] == [("a", 50.0), ("a", 50.0)]


@pytest.mark.parametrize("gpu", [False, True])
def test_pair_design_covers_and_is_deterministic(gpu):
    models, batches, shares = ["m1", "m2", "m3", "m4", "m5"], [1, 2, 4, 8, 16], [20, 50, 80]
    runs = pair_design(models, batches, shares, 10, seed=7, gpu=gpu)
    assert runs == pair_design(models, batches, shares, 10, seed=7, gpu=gpu)
    assert runs != pair_design(models, batches, shares, 10, seed=8, gpu=gpu)
    assert len(runs) == 10 and len(set(runs)) == 10
    assert all(r.a.model != r.b.model for r in runs)
    assert {m.model for r in runs for m in r.members} == set(models)
    assert {m.batch for r in runs for m in r.members} == set(batches)
    if gpu:
        assert all(r.a.share + r.b.share <= 100 for r in runs)
    else:
        assert any(r.a.share + r.b.share > 100 for r in runs)  # CPU: overlapping shares create interference


def test_pair_design_small_cases():
    assert pair_design(["a"], [1], [100], 4) == []
    assert pair_design(["a", "b"], [1], [100], 0) == []
    two = pair_design(["a", "b"], [1], [100], 3)
    assert len(two) == 1  # only one distinct run exists
    assert pair_design(["a", "b"], [1], [100], 1, gpu=True)[0].a.share == 50.0
