"""igniter replay: rate traces, the emulated accelerator's tables and backend, and a plan replayed on real Triton."""

from __future__ import annotations

import importlib.util
import json
import mmap
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from igniter.cli.main import cli
from igniter.errors import UserError
from igniter.model import Member
from igniter.provisioning.plan import read_plan as read_typed_plan
from igniter.provisioning.traces import load_trace
from igniter.replay.emulator import PlannedServer, latency_tables, read_plan, write_emulated_plan
from igniter.replay.trace import rate_trace, trace_offsets
from tests.fake_perf_model import FakePerfModel

ROOT = Path(__file__).resolve().parents[1]


# -- rate traces ---------------------------------------------------------------------------------------------------

def _trace(tmp_path, text, planned):
    path = tmp_path / "t.csv"
    path.write_text(text)
    return rate_trace(load_trace(path), planned)


def test_trace_per_workload_columns_and_iso_timestamps(tmp_path):
    trace = _trace(tmp_path, "timestamp,a\n2026-12-01T00:00:00Z,10\n2026-12-01T00:00:30Z,20\n", {"a": 5.0, "b": 7.0})
    assert list(trace.times_s) == [0.0, 30.0]
    assert list(trace.rates["a"]) == [10.0, 20.0] and list(trace.rates["b"]) == [7.0, 7.0]  # no column: planned


def test_trace_scale_column_multiplies_planned_rates(tmp_path):
    trace = _trace(tmp_path, "timestamp,scale\n100,0.5\n160,2\n", {"a": 10.0, "b": 4.0})
    assert list(trace.times_s) == [0.0, 60.0]
    assert list(trace.rates["a"]) == [5.0, 20.0] and list(trace.rates["b"]) == [2.0, 8.0]


def test_trace_column_that_is_no_workload_is_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        _trace(tmp_path, "timestamp,zzz\n0,1\n", {"a": 1.0})
    assert "'zzz' is not a workload" in err.value.line() and "To fix" in err.value.line()


def test_trace_offsets_follow_the_piecewise_rate():
    # 100 req/s for 50 s, then 400 req/s for 50 s: expected 5,000 and 20,000 arrivals (Poisson: sd 71 and 141)
    offsets = trace_offsets(np.array([0.0, 50.0]), np.array([100.0, 400.0]), 100.0, seed=3)
    first, second = np.sum(offsets < 50.0), np.sum(offsets >= 50.0)
    assert abs(first - 5000) < 5 * 71 and abs(second - 20000) < 5 * 141
    assert np.all(np.diff(offsets) >= 0) and offsets.max() < 100.0


# -- the emulated accelerator ----------------------------------------------------------------------------------------

def _servers(specs: list[dict]) -> list[PlannedServer]:
    return [PlannedServer(instances=1, rate=50.0, slo_ms=100.0, predicted_latency_ms=1.0, predicted_p99_ms=2.0,
                          max_queue_delay_us=0, **spec) for spec in specs]


def test_latency_tables_are_the_perf_models_prediction_for_each_busy_subset(tmp_path):
    pm = FakePerfModel()
    servers = _servers([
        {"gpu": "g0", "name": "a", "model": "alexnet", "workload": "a", "batch": 2, "share": 30.0},
        {"gpu": "g0", "name": "r", "model": "resnet50", "workload": "r", "batch": 4, "share": 40.0},
        {"gpu": "g0", "name": "v", "model": "vgg19", "workload": "v", "batch": 1, "share": 30.0},
        {"gpu": "g1", "name": "s", "model": "ssd", "workload": "s", "batch": 1, "share": 50.0}])
    tables = latency_tables(pm, servers)
    a = tables["a"]
    assert a["partners"] == [1, 2] and a["slot"] == 0 and len(a["latency_ms"]) == 2
    for n in (1, 2):
        row = a["latency_ms"][n - 1]
        solo = pm.predict([Member("alexnet", n, 30.0)])[0].latency_ms
        with_r = pm.predict([Member("alexnet", n, 30.0), Member("resnet50", 4, 40.0)])[0].latency_ms
        with_v = pm.predict([Member("alexnet", n, 30.0), Member("vgg19", 1, 30.0)])[0].latency_ms
        both = pm.predict([Member("alexnet", n, 30.0), Member("resnet50", 4, 40.0), Member("vgg19", 1, 30.0)])[0].latency_ms
        assert row == pytest.approx([solo, with_r, with_v, both], abs=1e-5)
        assert solo < with_r < both
    assert tables["s"]["partners"] == [] and len(tables["s"]["latency_ms"][0]) == 1


def _load_backend(monkeypatch):
    fake = types.ModuleType("triton_python_backend_utils")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    spec = importlib.util.spec_from_file_location("emulated_backend", ROOT / "igniter" / "triton" / "emulated_backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backend_reads_the_busy_partners_of_its_emulated_gpu(tmp_path, monkeypatch):
    backend = _load_backend(monkeypatch)
    busy = tmp_path / "busy"
    busy.write_bytes(bytes(3))
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (version / "emulation.json").write_text(json.dumps({"time_scale": 1, "busy_file": str(busy), "slot": 1,
                                                        "partners": [0, 2], "latency_ms": [[0, 0, 0, 0]]}))
    model = backend.TritonPythonModel()
    model.initialize({"model_repository": str(tmp_path / "m"), "model_version": "1"})
    with open(busy, "r+b") as fh, mmap.mmap(fh.fileno(), 0) as shared:
        assert model._mask() == 0
        shared[2] = 1
        assert model._mask() == 0b10       # partner slot 2 is mask bit 1
        shared[0] = 1
        assert model._mask() == 0b11
        model._hold(1)                     # a zero-latency table holds nothing (and must return)
    model.finalize()


def test_backend_leaves_the_measured_path_time_out_of_its_hold(tmp_path, monkeypatch):
    # a fake clock (sleep advances it exactly): a batch of 2 with a 10 ms table row at K = 3 is 30 ms of work,
    # in slices of 4 ms; with the probe's 7 ms per batch written to the overhead file, it sleeps 30 - 7 = 23 ms
    # (4+4+4+4+4+3), and a path time longer than the batch leaves nothing to sleep
    import struct

    backend = _load_backend(monkeypatch)
    clock = {"now": 0.0, "sleeps": []}
    monkeypatch.setattr(backend.time, "perf_counter", lambda: clock["now"])

    def sleep(seconds):
        clock["sleeps"].append(round(seconds * 1000, 9))
        clock["now"] += seconds
    monkeypatch.setattr(backend.time, "sleep", sleep)
    (tmp_path / "busy").write_bytes(bytes(1))
    overhead = tmp_path / "overhead"
    overhead.write_bytes(struct.pack("d", 7.0))
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (version / "emulation.json").write_text(json.dumps({
        "time_scale": 3, "busy_file": str(tmp_path / "busy"), "slot": 0, "partners": [], "slice_ms": 4.0,
        "latency_ms": [[5.0], [10.0]], "overhead_file": str(overhead)}))
    model = backend.TritonPythonModel()
    model.initialize({"model_repository": str(tmp_path / "m"), "model_version": "1"})
    model._hold(2)
    assert clock["sleeps"] == pytest.approx([4.0, 4.0, 4.0, 4.0, 4.0, 3.0])
    clock["sleeps"].clear()
    overhead.write_bytes(struct.pack("d", 40.0))     # read per batch: the live measurement
    model._hold(2)
    assert clock["sleeps"] == []
    model.finalize()


def test_path_tracker_writes_the_probes_time_per_batch_over_its_window(tmp_path):
    # cumulative (compute us, executions) scrapes of the probe: a window with fewer than 20 new batches keeps the
    # file as it was; then 60 ms over 30 batches = 2 ms per batch; the window slides (OVERHEAD_WINDOW scrapes)
    import struct

    from igniter.replay.run import OVERHEAD_WINDOW, PathTracker

    path = tmp_path / "overhead"
    path.write_bytes(struct.pack("d", 0.0))
    tracker = PathTracker("127.0.0.1:1", path)
    read = lambda: struct.unpack("d", path.read_bytes())[0]  # noqa: E731
    tracker.update((0.0, 0.0))
    tracker.update((10_000.0, 10.0))
    assert read() == 0.0 and tracker.measured == []
    tracker.update((60_000.0, 30.0))
    assert read() == 2.0
    for i in range(OVERHEAD_WINDOW - 1):              # 5 ms per batch from now on: the first scrapes drop out
        tracker.update((60_000.0 + 5_000.0 * 40 * (i + 1), 30.0 + 40 * (i + 1)))
    assert read() == 5.0 and tracker.mean_ms() == pytest.approx(sum(tracker.measured) / len(tracker.measured))


def test_emulated_repository_keeps_the_planned_batcher(tmp_path):
    from igniter.triton.config import driven_fields, read_config

    servers = _servers([{"gpu": "g0", "name": "a", "model": "alexnet", "workload": "a", "batch": 4, "share": 30.0}])
    servers = [PlannedServer(**{**servers[0].__dict__, "max_queue_delay_us": 2500})]
    out = write_emulated_plan(servers, latency_tables(FakePerfModel(), servers), tmp_path / "emu", lambda s: 10.0)
    assert [s.name for _, s in read_typed_plan(out).servers()] == ["a"]      # a plan apply reads
    fields = driven_fields(read_config(out.parent / "triton_repo" / "a" / "alexnet" / "config.pbtxt"))
    assert fields["max_batch_size"] == 4 and fields["preferred_batch_size"] == [4]
    assert fields["max_queue_delay_us"] == 25000          # x K: the replay sends at rate / K
    assert fields["kinds"] == ["KIND_CPU"]
    spec = json.loads((out.parent / "triton_repo" / "a" / "alexnet" / "1" / "emulation.json").read_text())
    assert spec["time_scale"] == 10.0 and len(spec["latency_ms"]) == 4


# -- a provisioned plan replayed on real Triton servers ----------------------------------------------------------------

def test_replay_a_provisioned_plan_on_triton(tmp_path):
    from igniter.provisioning import run as provision
    from igniter.provisioning.plan import write_plan
    from igniter.replay.run import ReplayOptions, run_replay

    pm = FakePerfModel()
    problem, _, plan, _ = provision(ROOT / "examples" / "workloads-3.yaml", "fake", None, loader=lambda p: pm)
    write_plan(plan, problem, tmp_path / "plan", None, {})
    servers = read_plan(tmp_path / "plan" / "plan.json")
    messages = []
    trace = tmp_path / "trace.csv"    # emulated seconds: planned rates for 0.5 s, then half of them
    trace.write_text("timestamp,scale\n0,1\n0.5,0.5\n")
    result = run_replay(ReplayOptions(plan=tmp_path / "plan" / "plan.json", perf_model=Path("unused"),
                                      workdir=tmp_path / "replay", time_scale=5.0, duration_s=4.0, warmup_s=1.0,
                                      trace=trace, tables=latency_tables(pm, servers)), messages.append)
    assert result["gpus"] == plan.totals.gpus and result["trace"] == str(trace)
    rows = {r["name"]: r for r in result["workloads"]}
    assert sorted(rows) == ["alexnet", "resnet50", "vgg19"]
    solo = {s.workload: pm.predict([Member(s.model, 1, s.share)])[0].latency_ms for s in servers}
    for name, row in rows.items():
        # scheduled in the measured window (real 1-5 s): 1.5 s at rate / K, then 2.5 s at half that
        expected = sum(s.rate for s in servers if s.workload == name) / 5.0 * (1.5 + 2.5 * 0.5)
        assert abs(row["requests"] - expected) < 5 * expected ** 0.5 + 2
        assert row["failed"] == 0
        # physics: no request can finish faster than its emulated batch of one sample, solo
        assert row["measured_p50_ms"] >= solo[name] * 0.999
        assert 0.0 <= row["attainment"] <= 1.0
    assert result["overhead"]["requests"] > 0 and result["overhead"]["real_p50_ms"] > 0
    assert Path(result["report"]).read_text().count('id="point-') == 3
    assert any("ETA" in m for m in messages)
    assert json.loads((tmp_path / "replay" / "state.json").read_text())["servers"] == {}   # nothing left running


def test_replay_cli_bad_plan_is_one_line(tmp_path):
    (tmp_path / "plan.json").write_text("{}")
    result = CliRunner().invoke(cli, ["replay", str(tmp_path / "plan.json"), "--perf-model", "x", "--json"])
    assert result.exit_code == 2 and "igniter-plan" in result.output and "To fix" in result.output
    result = CliRunner().invoke(cli, ["replay", str(tmp_path / "plan.json"), "--perf-model", "x", "--time-scale", "0"])
    assert result.exit_code == 2 and "--time-scale" in result.output



@pytest.mark.integration
def test_path_calibration_measures_the_front_door_path_and_records_it(tmp_path):
    # a zero-latency model behind a real Caddy front door on a real Triton: the rows are real measurements (every
    # request answered, p99 >= p50 > 0: no request takes no time), written into hardware.json beside what it had
    # (the rest kept), read back through the store's schema, and nothing is left running
    from igniter.profiling.store import ProfileStore
    from igniter.replay.calibrate import calibrate_store

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "hardware.json").write_text(json.dumps({"kind": "cpu", "name": "host", "cores": 2}))
    rows = calibrate_store(tmp_path / "p", [40.0, 10.0], 1.5, tmp_path / "work")
    assert [r["rate_rps"] for r in rows] == [10.0, 40.0]
    for row in rows:
        assert row["requests"] > 0 and row["failed"] == 0
        assert row["p99_ms"] >= row["p50_ms"] > 0
    hardware = ProfileStore(tmp_path / "p").read_hardware()
    assert hardware["path_overhead"] == rows and (hardware["name"], hardware["cores"]) == ("host", 2)
    assert json.loads((tmp_path / "work" / "state.json").read_text())["servers"] == {}


def test_report_plot_has_one_point_per_measured_workload():
    # matplotlib's SVG, inline: one id="point-N" group per workload with both p99s, none for a workload that
    # measured nothing (NaN) or has no finite prediction; a name is text, not markup
    from igniter.deployment.report import predicted_vs_measured_plot

    svg = predicted_vs_measured_plot([
        {"name": "a<b>", "predicted_p99_ms": 3.0, "measured_p99_ms": 4.0},
        {"name": "idle", "predicted_p99_ms": 5.0, "measured_p99_ms": float("nan")},
        {"name": "c", "predicted_p99_ms": float("inf"), "measured_p99_ms": 2.0},
        {"name": "d", "predicted_p99_ms": 8.0, "measured_p99_ms": 7.0}])
    assert svg.startswith("<svg") and svg.count('id="point-') == 2 and "a<b>" not in svg
    assert predicted_vs_measured_plot([]) == "<p>(no points)</p>"
