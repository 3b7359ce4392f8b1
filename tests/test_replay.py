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
from igniter.replay.emulator import (EmulatedDevices, PlannedServer, constant_tables, latency_tables, read_plan,
                                     write_emulated_plan)
from igniter.replay.trace import Step, constant_trace, parse_step, rate_trace, trace_offsets, with_load_steps
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


def test_load_steps_multiply_the_trace_from_their_time_on(tmp_path):
    # hand-worked: a 100 -> 50 req/s trace (change at 10 s), x2 from 5 s, x1.5 from 12 s (steps compound)
    trace = _trace(tmp_path, "timestamp,a\n0,100\n10,50\n", {"a": 1.0})
    stepped = with_load_steps(trace, [Step(2.0, 5.0), Step(1.5, 12.0)])
    assert list(stepped.times_s) == [0.0, 5.0, 10.0, 12.0]
    assert list(stepped.rates["a"]) == [100.0, 200.0, 100.0, 150.0]
    assert with_load_steps(trace, []) is trace


def test_load_step_on_the_planned_rates_gives_the_arrivals_of_each_segment():
    # 40 req/s planned, x2 from 30 s, over 60 s: 1,200 then 2,400 expected arrivals (Poisson sd 35 and 49)
    stepped = with_load_steps(constant_trace({"a": 40.0}), [Step(2.0, 30.0)])
    assert list(stepped.times_s) == [0.0, 30.0] and list(stepped.rates["a"]) == [40.0, 80.0]
    offsets = trace_offsets(stepped.times_s, stepped.rates["a"], 60.0, seed=1)
    assert abs(np.sum(offsets < 30.0) - 1200) < 5 * 35 and abs(np.sum(offsets >= 30.0) - 2400) < 5 * 49


def test_step_options_parse_and_refuse_in_one_line():
    assert parse_step("2@30", "--load-step", with_gpu=False) == Step(2.0, 30.0)
    assert parse_step("g-1=1.5@7.5", "--interference", with_gpu=True) == Step(1.5, 7.5, "g-1")
    for text, option, with_gpu in (("2", "--load-step", False), ("0@3", "--load-step", False),
                                   ("x@3", "--load-step", False), ("2@-1", "--load-step", False),
                                   ("1.5@3", "--interference", True), ("g0=nan@3", "--interference", True)):
        with pytest.raises(UserError) as err:
            parse_step(text, option, with_gpu)
        assert option in err.value.line() and "To fix" in err.value.line()


# -- the emulated accelerator ----------------------------------------------------------------------------------------

def _servers(specs: list[dict]) -> list[PlannedServer]:
    return [PlannedServer(rate=50.0, slo_ms=100.0, predicted_latency_ms=1.0, predicted_p99_ms=2.0,
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
    assert a["partners"] == [1, 2] and len(a["latency_ms"]) == 2
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


def _backend_model(backend, tmp_path, devices, spec: dict):
    """The backend initialised as Triton would: its spec in the config's ``emulation`` parameter."""
    spec = {"time_scale": 1, "busy_file": str(devices.root / "busy"), "slowdown_file": str(devices.root / "slowdown"),
            "gpu_slot": 0, **spec}
    config = {"parameters": {"emulation": {"string_value": json.dumps(spec)}}}
    model = backend.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    return model


def test_backend_reads_the_busy_partners_of_its_emulated_gpu(tmp_path, monkeypatch):
    backend = _load_backend(monkeypatch)
    devices = EmulatedDevices(tmp_path / "devices")
    model = _backend_model(backend, tmp_path, devices, {"slot": 1, "partners": [0, 2], "latency_ms": [[0, 0, 0, 0]]})
    with open(devices.root / "busy", "r+b") as fh, mmap.mmap(fh.fileno(), 0) as shared:
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
    devices = EmulatedDevices(tmp_path / "devices")
    overhead = devices.overhead_file
    overhead.write_bytes(struct.pack("d", 7.0))
    model = _backend_model(backend, tmp_path, devices, {
        "time_scale": 3, "slot": 0, "partners": [], "slice_ms": 4.0, "latency_ms": [[5.0], [10.0]],
        "overhead_file": str(overhead)})
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


def test_backend_reads_its_gpus_slowdown_factor(tmp_path, monkeypatch):
    backend = _load_backend(monkeypatch)
    devices = EmulatedDevices(tmp_path / "devices")
    assert devices.gpu_slot("g0") == 0 and devices.gpu_slot("g1") == 1 and devices.gpu_slot("g0") == 0
    on_g1 = _backend_model(backend, tmp_path, devices, {"slot": 0, "partners": [], "latency_ms": [[0]], "gpu_slot": 1})
    on_g0 = _backend_model(backend, tmp_path, devices, {"slot": 1, "partners": [], "latency_ms": [[0]], "gpu_slot": 0})
    assert on_g1._factor() == 1.0 and on_g0._factor() == 1.0    # no neighbour until one is injected
    devices.set_slowdown("g1", 1.5)
    assert on_g1._factor() == 1.5 and on_g0._factor() == 1.0    # only the slowed GPU's servers see it
    devices.set_slowdown("g1", 1.0)
    assert on_g1._factor() == 1.0
    on_g0.finalize()
    on_g1.finalize()


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
    spec = json.loads(fields["parameters"]["emulation"])     # travels in the config: a live reload brings it
    assert spec["time_scale"] == 10.0 and len(spec["latency_ms"]) == 4


def _compute_ms_per_batch(entry, model: str, requests: int, warmup: int = 2) -> float:
    """Triton's own compute time per executed batch over ``requests`` sequential single-sample requests, after
    ``warmup`` untimed ones (a python model's first request is slow)."""
    import tritonclient.grpc as grpcclient

    from igniter.triton.metrics import interval, scrape

    client = grpcclient.InferenceServerClient(entry.grpc)
    request = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
    request.set_data_from_numpy(np.zeros((1, 1), dtype=np.float32))
    for _ in range(warmup):
        client.infer(model, [request], client_timeout=60)
    before = scrape(entry.metrics).models.get(model)
    for _ in range(requests):
        client.infer(model, [request], client_timeout=60)
    client.close()
    figures = interval(before, scrape(entry.metrics).models[model])
    return figures["compute_ms"] * figures["requests"] / figures["executions"]


@pytest.mark.integration
def test_interference_slows_only_the_servers_on_its_gpu_on_triton(tmp_path, deployer):
    """Two emulated GPUs, one server each (a batch holds 40 ms); with a 2x neighbour on g0, g0's server takes
    (2 - 1) x 40 ms longer per batch (Triton's own compute time), g1's the same. Oracle: the injected factor."""
    from igniter.deployment.state import load_state

    servers = _servers([{"gpu": "g0", "name": "a", "model": "alexnet", "workload": "a", "batch": 1, "share": 50.0},
                        {"gpu": "g1", "name": "b", "model": "vgg19", "workload": "b", "batch": 1, "share": 50.0}])
    devices = EmulatedDevices(tmp_path / "devices")
    plan = write_emulated_plan(servers, constant_tables(servers, lambda s, n: 40.0), tmp_path / "emu", lambda s: 1.0,
                               devices)
    deployer.apply(plan)
    state = load_state(deployer.state_path)
    measured = {}
    for factor in (1.0, 2.0):
        devices.set_slowdown("g0", factor)
        for s in servers:
            measured[s.name, factor] = _compute_ms_per_batch(state.servers[s.name], s.model, 8)
    assert measured["a", 1.0] >= 40.0 * 0.98 and measured["b", 1.0] >= 40.0 * 0.98   # the table's hold, at least
    # (FACTOR - 1) x 40 ms more per batch on g0, generously (a loaded host adds the same overhead to both)
    assert 0.75 * 40.0 <= measured["a", 2.0] - measured["a", 1.0] <= 1.35 * 40.0
    assert abs(measured["b", 2.0] - measured["b", 1.0]) <= 0.25 * 40.0                # the other GPU: not slowed


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
    kept = np.load(tmp_path / "replay" / "requests.npz")   # every measured request, so no figure needs a rerun
    for name, row in rows.items():
        latency, sent = kept[f"{name}.latency_ms"], kept[f"{name}.sent_s"]
        assert len(latency) == len(sent) == row["requests"] and np.sum(np.isnan(latency)) == row["failed"]
        assert np.percentile(latency[np.isfinite(latency)], 99) == pytest.approx(row["measured_p99_ms"])
        assert 0.0 <= sent.min() and sent.max() < 4.0 / 5.0        # within the window, unscaled (4 real s / K)
    assert len(kept["calibration.latency_ms"]) == result["overhead"]["requests"]
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
        assert row["cpu_ms_per_request"] > 0   # the client and the front door spend CPU on every request
        # the profiler's path (direct, one outstanding request) lacks the front door's hop: shorter than any p50
        assert 0 < row["baseline_p50_ms"] < row["p50_ms"]
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


@pytest.mark.slow
def test_replay_watch_json_on_a_tiny_plan(tmp_path):
    """igniter replay --watch on the 3-workload plan (one V100): the clients go through the front doors, a 2.5x load
    step is detected and re-provisioned live; --json has the keys the benchmark reads, with figures checked
    against what the run must have done (hand-worked request counts, GPU-hours bounded by the plans' GPUs)."""
    from tests.conftest import shared_data

    v100 = shared_data("igniter-v100")
    igniter = [sys.executable, "-m", "igniter"]
    import subprocess

    subprocess.run(igniter + ["import-profiles", "--format", "igniter", str(v100), "--out", str(tmp_path / "prof")],
                   check=True, capture_output=True)
    subprocess.run(igniter + ["fit", "--profiles", str(tmp_path / "prof"), "--out", str(tmp_path / "v100.json")],
                   check=True, capture_output=True)
    workloads = ROOT / "examples" / "workloads-3.yaml"
    subprocess.run(igniter + ["provision", "--workloads", str(workloads), "--perf-model", str(tmp_path / "v100.json"),
                              "--out", str(tmp_path / "plan")], check=True, capture_output=True)
    k, duration, warmup, step_at = 10.0, 40.0, 2.0, 1.0   # 4 unscaled s measured; the step 1 s after traffic starts
    result = CliRunner().invoke(cli, [
        "replay", str(tmp_path / "plan" / "plan.json"), "--perf-model", str(tmp_path / "v100.json"), "--watch",
        "--workloads", str(workloads), "--time-scale", str(k), "--duration", str(duration), "--warmup", str(warmup),
        "--watch-interval", "0.5", "--load-step", f"2.5@{step_at}", "--interference", "gpu0=1.5@3",
        "--workdir", str(tmp_path / "replay"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["mode"] == "watch" and out["gpus"] == 1
    rates = {"alexnet": 500.0, "resnet50": 400.0, "vgg19": 200.0}
    for row in out["workloads"]:
        # scheduled in the measured window (unscaled 0.2-4.2 s): 0.8 s at the rate, 3.2 s at 2.5 x, / K real
        expected = rates[row["name"]] * (0.8 + 3.2 * 2.5)
        assert abs(row["requests"] - expected) < 5 * expected ** 0.5 + 5
    load_up = [d for d in out["detections"] if d["kind"] == "load_up"]
    assert load_up and load_up[0]["time_s"] >= step_at     # no load drift seen before the step
    assert out["reconfigurations"] >= 1 and len(out["applies"]) >= 1
    most = max(row["gpus"] for row in out["series"])
    assert most >= 2                                          # 2.5 x the load does not fit the one V100
    hours = duration / k / 3600.0
    assert hours * 1 <= out["gpu_hours"] <= hours * most + 1e-12
    assert {"t_s", "rate_rps", "gpus", "p99_ms", "slo_ms"} <= set(out["series"][0])
    assert 0.0 <= out["attainment"] <= 1.0 and out["failed_during_reconfiguration"] <= out["failed"]
    assert Path(out["plot"]).read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in Path(out["report"]).read_text()
    assert json.loads((tmp_path / "replay" / "state.json").read_text())["servers"] == {}   # nothing left running
    retires = [line for line in result.output.splitlines() if line.startswith("apply: retire")]
    assert len(retires) == len(set(retires))        # one Deployer across applies retires each old server once


@pytest.mark.integration
def test_live_replay_leaves_the_measured_path_time_out_of_every_hold(tmp_path, monkeypatch):
    """The front-door replay (observe only) runs the zero-latency probe beside the plan, in its own deployment: its
    per-batch path time is measured (a real hand-over to the python stub takes some time, far less than a second)
    and written into the very file every emulated server of the plan reads and subtracts from its hold, as the
    plain replay does; nothing of either deployment is left running."""
    import struct

    import igniter.provisioning.workloads as workloads_module
    from igniter.provisioning import run as provision
    from igniter.provisioning.plan import write_plan
    from igniter.replay.live import PROBE_DIR, WatchOptions, run_live_replay
    from igniter.replay.run import ReplayOptions
    from igniter.triton.config import read_config

    pm = FakePerfModel()
    monkeypatch.setattr(workloads_module, "load_perf_model", lambda path: pm)
    problem, _, plan, _ = provision(ROOT / "examples" / "workloads-3.yaml", "fake", None, loader=lambda p: pm)
    write_plan(plan, problem, tmp_path / "plan", None, {})
    opts = ReplayOptions(plan=tmp_path / "plan" / "plan.json", perf_model=Path("fake"), workdir=tmp_path / "replay",
                         time_scale=5.0, duration_s=8.0, warmup_s=1.0)
    result = run_live_replay(opts, WatchOptions(ROOT / "examples" / "workloads-3.yaml", enabled=False))
    per_batch = result["overhead"]["per_batch_real_ms"]
    assert 0.0 < per_batch < 1000.0 and result["overhead"]["requests"] > 0
    written = struct.unpack("d", (tmp_path / "replay" / "devices" / "path_overhead.f64").read_bytes())[0]
    assert 0.0 < written < 1000.0
    configs = list((tmp_path / "replay" / "emulated-0" / "triton_repo").glob("*/*/config.pbtxt"))
    assert len(configs) == len(read_plan(tmp_path / "plan" / "plan.json"))
    for config in configs:
        spec = json.loads(read_config(config).parameters["emulation"].string_value)
        assert Path(spec["overhead_file"]) == (tmp_path / "replay" / "devices" / "path_overhead.f64").resolve()
    assert {r["name"] for r in result["workloads"]} == {"alexnet", "resnet50", "vgg19"}   # the probe is no workload
    for state in (tmp_path / "replay" / "state.json", tmp_path / "replay" / PROBE_DIR / "state.json"):
        assert json.loads(state.read_text())["servers"] == {}


def test_replay_cli_bad_steps_and_watch_without_workloads_are_one_line(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    for extra, expected in ((["--load-step", "2"], "--load-step"), (["--interference", "1.5@3"], "--interference"),
                            (["--watch"], "--workloads")):
        result = CliRunner().invoke(cli, ["replay", str(plan), "--perf-model", "x", *extra])
        assert result.exit_code == 2 and expected in result.output and "To fix" in result.output
        assert result.output.count("\n") == 1


def test_interference_on_a_gpu_the_plan_does_not_use_is_one_line():
    from igniter.replay.run import check_interference

    servers = _servers([{"gpu": "g0", "name": "a", "model": "alexnet", "workload": "a", "batch": 1, "share": 50.0}])
    check_interference([Step(1.5, 1.0, "g0")], servers)
    with pytest.raises(UserError) as err:
        check_interference([Step(1.5, 1.0, "g7")], servers)
    assert "'g7'" in err.value.line() and "g0" in err.value.line()


def test_gpu_hours_integrate_each_plans_gpus_over_the_window():
    from igniter.replay.live import gpu_hours

    # hand-worked: window 4-40 real s at K = 10; 3 GPUs to 10 s, 5 to 30 s, 2 after: 3 x 6 + 5 x 20 + 2 x 10 = 138
    assert gpu_hours([(0.0, 3), (10.0, 5), (30.0, 2)], 4.0, 40.0, 10.0) == pytest.approx(138 / 10 / 3600)
    assert gpu_hours([(0.0, 3), (50.0, 9)], 4.0, 40.0, 10.0) == pytest.approx(3 * 36 / 10 / 3600)  # after the end
    assert gpu_hours([(0.0, 2)], 4.0, 40.0, 1.0) == pytest.approx(2 * 36 / 3600)


def test_observed_arrivals_count_the_queues_growth():
    """An overloaded server completes fewer requests than arrive: arrivals = completions + failures + the queue's
    growth (hand-worked: 50 completed, 2 failed, queue 10 -> 40, over 2 real s at K = 4: 82 / 0.5 = 164 req/s)."""
    from igniter.deployment.state import DeploymentState, ServerState
    from igniter.triton.metrics import ModelMetrics, ServerMetrics
    from igniter.watch.observe import Scrape, observe

    server = ServerState(name="s", gpu="g0", share=50.0, repo="r", http="h", grpc="g", metrics="m", pid=7,
                         launch_digest="d", models={"alexnet": "x"}, workloads=["a"])
    state = DeploymentState(servers={"s": server})
    metrics = lambda ok, failed, pending: ServerMetrics(models={"alexnet": ModelMetrics(  # noqa: E731
        "alexnet", "1", request_success=ok, request_failure=failed, exec_count=ok, inference_count=ok,
        pending=pending)})
    before = Scrape(10.0, {"s": metrics(100, 1, 10)}, {"s": 7})
    after = Scrape(12.0, {"s": metrics(150, 3, 40)}, {"s": 7})
    (o,) = observe(state, before, after, time_scale=4.0)
    assert o.rate_rps == pytest.approx(164.0)


def test_replay_never_replaces_a_directory_igniter_did_not_make(tmp_path):
    # a user's own directories where the replay would put its emulated plan and devices: refused in one line,
    # every file left as it was; a directory the replay made itself is replaced on the next run
    servers = _servers([{"gpu": "g0", "name": "a", "model": "alexnet", "workload": "a", "batch": 1, "share": 50.0}])
    tables = latency_tables(FakePerfModel(), servers)
    for name in ("emu", "devices"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an igniter output"):
        write_emulated_plan(servers, tables, tmp_path / "emu", lambda s: 10.0)
    with pytest.raises(UserError, match="not an igniter output"):
        EmulatedDevices(tmp_path / "devices")
    assert [p.name for p in (tmp_path / "emu").iterdir()] == ["notes.txt"]
    assert [p.name for p in (tmp_path / "devices").iterdir()] == ["notes.txt"]
    ours = tmp_path / "ours"
    write_emulated_plan(servers, tables, ours, lambda s: 10.0)
    (ours / "stale").write_text("from the last run")
    write_emulated_plan(servers, tables, ours, lambda s: 10.0)
    assert not (ours / "stale").exists() and (ours / "plan.json").is_file()
