"""Kernel metrics on the MPS path: one ncu pass per (model, batch), parsed from ncu's --csv output, into solo.csv.

tests/data/ncu_details.csv is written from Nsight Compute's documented ``--csv --page details`` layout (==PROF==
lines, then one quoted row per (kernel, metric) with "Metric Name"/"Metric Unit"/"Metric Value"; kernel names with
commas; a grid size and a value with a thousands separator; durations in ncu's auto-scaled units). There is no GPU here: NVML, the MPS control binary and ncu are
fakes; the integration test serves the model from a real (CPU) Triton.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from igniter.profiling.backends import loaded_server
from igniter.profiling.backends.mps import NCU_METRICS, MpsBackend, MpsDaemon, parse_ncu_csv
from igniter.profiling.runner import ProfileSpec, run_profile
from igniter.profiling.store import ProfileStore
from igniter.triton.config import new_model_config, set_instance_group, write_config

RECORDED = Path(__file__).parent / "data" / "ncu_details.csv"
# hand-worked from the recorded file: the three kernels' figures weighted by their durations (152.35 us, 8.22 us,
# 1,430 ns), and the plain means where no duration is given
US = (152.35, 8.22, 1.43)
L2 = (41.27 * US[0] + 63.05 * US[1] + 12.80 * US[2]) / sum(US)      # 42.12...
DRAM = (22.50 * US[0] + 71.35 * US[1] + 5.15 * US[2]) / sum(US)     # 24.83...


def test_parse_recorded_ncu_csv():
    assert parse_ncu_csv(RECORDED.read_text()) == pytest.approx({"l2_util_pct": L2, "dram_util_pct": DRAM})
    assert parse_ncu_csv("==PROF== ERR_NVGPUCTRPERM - no permission\n") == {}
    without_durations = "".join(line for line in RECORDED.read_text().splitlines(keepends=True)
                                if "gpu__time_duration" not in line)
    assert parse_ncu_csv(without_durations) == pytest.approx({"l2_util_pct": (41.27 + 63.05 + 12.80) / 3,
                                                              "dram_util_pct": (22.50 + 71.35 + 5.15) / 3})


class FakeNcu:
    """Stands in for ncu around a server: records the prefix, writes the recorded report to its --log-file."""

    def __init__(self, inner=None):
        self.passes: list[list[str]] = []
        self.inner = inner

    @contextlib.contextmanager
    def __call__(self, options, model, config):
        if options.command_prefix:
            prefix = options.command_prefix
            self.passes.append(prefix)
            shutil.copyfile(RECORDED, prefix[prefix.index("--log-file") + 1])
        if self.inner is None:
            yield SimpleNamespace(endpoints=None)
            return
        with self.inner(options, model, config) as server:
            yield server


def _which(present: set[str]):
    return lambda binary: f"/opt/nvidia/{binary}" if binary in present else None


def test_one_ncu_pass_reads_both_metrics(tmp_path):
    write_config(new_model_config("resnet50", max_batch_size=8), tmp_path / "resnet50" / "config.pbtxt")
    fake, sent = FakeNcu(), []
    backend = MpsBackend(nvml=object(), daemon=MpsDaemon(base_dir=tmp_path), server_factory=fake,
                         which=_which({"ncu"}), send=lambda server, model, batch, n: sent.append((model, batch, n)))
    assert backend.kernel_metrics(tmp_path, "resnet50", 8) == pytest.approx({"l2_util_pct": L2, "dram_util_pct": DRAM})
    (prefix,) = fake.passes
    assert prefix[0] == "/opt/nvidia/ncu" and "--csv" in prefix
    assert prefix[prefix.index("--metrics") + 1].split(",") == [*NCU_METRICS, "gpu__time_duration.sum"]
    assert sent and sent[0][:2] == ("resnet50", 8)


def test_without_ncu_no_pass_and_no_columns(tmp_path):
    fake = FakeNcu()
    backend = MpsBackend(nvml=object(), daemon=MpsDaemon(base_dir=tmp_path), server_factory=fake, which=_which(set()))
    assert backend.kernel_metrics(tmp_path, "resnet50", 8) == {} and not fake.passes


class FakeNvml:
    NVML_CLOCK_SM = 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1380

    def nvmlDeviceGetPowerUsage(self, h):
        return 150000

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=60, memory=20)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=16 * 2**30, used=3 * 2**30)


@contextlib.contextmanager
def cpu_triton(options, model, config):
    """The GPU edge faked: the same server and requests, on a real CPU Triton (no ncu prefix, KIND_CPU)."""
    options = dataclasses.replace(options, command_prefix=[], gpu=False, startup_timeout_s=120.0)
    with loaded_server(options, model, set_instance_group(config, 1, "KIND_CPU")) as server:
        yield server


@pytest.mark.integration
def test_mps_profile_writes_ncu_metrics_to_solo_csv(demo_repo, tmp_path):
    fake = FakeNcu(inner=cpu_triton)
    mps_control = lambda argv, **kw: subprocess.CompletedProcess(argv, 0, "", "")  # noqa: E731
    daemon = MpsDaemon(run=mps_control, which=_which({"nvidia-cuda-mps-control"}), base_dir=tmp_path)
    backend = MpsBackend(nvml=FakeNvml(), daemon=daemon, server_factory=fake, which=_which({"ncu"}))
    spec = ProfileSpec(repo=demo_repo, models=["tinynet"], batches=[1, 2], shares=[50.0, 100.0], pairs=0,
                       duration_s=0.3, warmup_s=0.0)
    store = ProfileStore(tmp_path / "store")
    with backend:
        backend.describe_hardware = lambda: {"kind": "gpu", "name": "fake", "backend": "mps"}
        summary = run_profile(spec, store, backend)
    solo = store.read_solo()
    assert len(solo) == 4 and summary["kernel_metric_passes"] == 2
    assert len(fake.passes) == 2, "one ncu pass per (model, batch), not per share"
    assert solo["l2_util_pct"].tolist() == pytest.approx([L2] * 4)
    assert solo["dram_util_pct"].tolist() == pytest.approx([DRAM] * 4)
    assert (solo["sm_clock_mhz"] == 1380).all(), "the NVML sampler ran during the measurements"


def test_group_members_reads_proc(tmp_path):
    for pid, comm, pgrp in ((10, "ncu", 10), (11, "tritonserver", 10), (12, "triton_python_backend_stub", 10),
                            (20, "tritonserver", 20)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({comm}) S 1 {pgrp} {pgrp} 0 -1 4194560")
    (tmp_path / "self").mkdir()
    from igniter.profiling.backends.mps import group_members

    assert group_members(10, "tritonserver", tmp_path) == [11]
