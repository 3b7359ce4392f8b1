"""igniter/provisioning/workloads.py: the exact line every bad workloads file and GPU catalog gets (what, where, and
the fix the module docstring's format promises), the bounds at and just past each limit, and the default catalog.
Written to kill the sampled mutants of workloads.py (docs/mutation/provisioning.md)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from igniter.errors import UserError
from igniter.provisioning.workloads import (GpuType, default_catalog, known_models, load_catalog, load_perf_model,
                                            load_workloads, safe_type_name)

ROW = "{name: w1, model: m, rate: 1, slo_ms: 5"


def refusal(path: Path, text: str, load) -> str:
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load(path)
    return str(err.value)


@pytest.mark.parametrize("field, row, expected", [
    ("name", "{name: 'a b', model: m, rate: 1, slo_ms: 5}",
     "workloads[0] 'a b'.name = 'a b': must be letters, digits, '.', '_' or '-', starting with a letter or digit, at "
     "most 64 characters (w.yaml). To fix: give every workload a unique name such as w1 or resnet50-a"),
    ("model", "{name: w1, model: 'm m', rate: 1, slo_ms: 5}",
     "To fix: name the model to serve (a profiled model name)"),
    ("rate", "{name: w1, model: m, rate: 0.0009, slo_ms: 5}",
     "workloads[0] 'w1'.rate = 0.0009: input should be greater than or equal to 0.001 (w.yaml). To fix: set rate to "
     "the expected requests per second (a number >= 0.001)"),
    ("slo_ms", "{name: w1, model: m, rate: 1, slo_ms: 3600000.5}",
     "To fix: set slo_ms to the p99 latency budget in milliseconds (a number > 0, at most 3.6e+06)"),
    ("slo_ms", "{name: w1, model: m, rate: 1, slo_ms: 0}",
     "To fix: set slo_ms to the p99 latency budget in milliseconds (a number > 0, at most 3.6e+06)"),
    ("accuracy", ROW + ", accuracy: 1.5}", "To fix: give the model's accuracy as a fraction in [0, 1]"),
    ("input_bytes", ROW + ", input_bytes: -1}", "To fix: give the request size in bytes (>= 0) or leave it out"),
    ("input_bytes", ROW + ", input_bytes: 1099511627777}",
     "To fix: give the request size in bytes (>= 0) or leave it out"),
    ("variants", ROW + ", variants: 3}", "To fix: write `variants: [{model: m, accuracy: 0.7}]`"),
])
def test_each_workload_field_gets_its_own_fix(tmp_path, field, row, expected):
    line = refusal(tmp_path / "w.yaml", f"workloads:\n  - {row}\n", lambda p: load_workloads(p, {"m"}))
    assert (line == expected) if expected.startswith("workloads") else line.endswith(f"(w.yaml). {expected}")
    assert f".{field} = " in line


@pytest.mark.parametrize("text, expected", [
    ("accuracy_weight: -1\nworkloads:\n  - " + ROW + "}\n",
     "accuracy_weight = -1: input should be greater than or equal to 0 (w.yaml). To fix: set accuracy_weight to a "
     "number >= 0 or leave it out"),
    ("workloads: []\n",
     "workloads = []: list should have at least 1 item after validation, not 0 (w.yaml). To fix: write `workloads: "
     "[...]` with one `{name: w1, model: m, rate: 100, slo_ms: 50}` per workload"),
    ("- 1\n",
     "the file = [1]: must be a mapping of keys to values (w.yaml). To fix: see the workloads format at the top of "
     "igniter/provisioning/workloads.py"),
    ("workloads:\n  - " + ROW + "}\n  - " + ROW + "}\n",
     "workloads[1].name 'w1' is used twice (w.yaml). To fix: give every workload a unique name"),
    ("workloads:\n  - {name: w1, model: q, rate: 1, slo_ms: 5}\n",
     "workloads[0] 'w1'.model 'q' is not in the performance model (knows m, n) (w.yaml). To fix: use a profiled "
     "model name or profile the model and re-run `igniter fit`"),
    ("workloads:\n  - " + ROW + "}\n  - {name: w2, model: n, rate: 1, slo_ms: 5, variants: [{model: m, accuracy: 0.5},"
     " {model: z, accuracy: 0.5}]}\n",
     "workloads[1] 'w2'.variants[1].model 'z' is not in the performance model (knows m, n) (w.yaml). To fix: use a "
     "profiled model name or profile the model and re-run `igniter fit`"),
])
def test_workloads_file_refusals_are_these_lines(tmp_path, text, expected):
    assert refusal(tmp_path / "w.yaml", text, lambda p: load_workloads(p, {"m", "n"})) == expected


def test_workloads_at_their_limits_are_read_with_every_field(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("accuracy_weight: 0.5\nworkloads:\n"
                    "  - {name: w1, model: m, rate: 0.001, slo_ms: 3600000, accuracy: 1, input_bytes: 1099511627776}\n"
                    "  - {name: w2, model: n, rate: 2.5, slo_ms: 0.5, accuracy: 0, variants: [{model: m, accuracy: 0.25}]}\n")
    ws = load_workloads(path, {"m", "n"})
    assert ws.accuracy_weight == 0.5
    w1, w2 = ws.workloads
    assert (w1.name, w1.model, w1.rate, w1.slo_ms, w1.accuracy, w1.input_bytes, w1.variants) == (
        "w1", "m", 0.001, 3600000.0, 1.0, 2.0 ** 40, ())
    assert (w2.rate, w2.slo_ms, w2.accuracy, w2.input_bytes) == (2.5, 0.5, 0.0, 0.0)
    assert [(v.model, v.accuracy) for v in w2.models()] == [("n", 0.0), ("m", 0.25)]
    path.write_text("workloads:\n  - " + ROW + "}\n")
    only = load_workloads(path, {"m"})
    assert (only.accuracy_weight, only.workloads[0].accuracy, only.workloads[0].input_bytes) == (0.0, 1.0, 0.0)


def test_4096_workloads_are_read_and_4097_refused(tmp_path):
    rows = "".join(f"  - {{name: w{i}, model: m, rate: 1, slo_ms: 5}}\n" for i in range(4097))
    path = tmp_path / "w.yaml"
    path.write_text("workloads:\n" + rows[:rows.rindex("  - ")])
    assert len(load_workloads(path, {"m"}).workloads) == 4096
    line = refusal(path, "workloads:\n" + rows, lambda p: load_workloads(p, {"m"}))
    assert line.startswith("workloads = [") and "list should have at most 4096 items" in line


def catalog(tmp_path, rows: str) -> str:
    (tmp_path / "m.json").write_text("{}")
    return refusal(tmp_path / "c.yaml", "gpus:\n" + rows, lambda p: load_catalog(p, lambda path: path))


@pytest.mark.parametrize("row, expected", [
    ("{type: 'A B', price_per_hour: 1, perf_model: m.json}", "To fix: name the GPU type, e.g. V100"),
    ("{type: A, price_per_hour: -1, perf_model: m.json}",
     "gpus[0] 'A'.price_per_hour = -1: input should be greater than or equal to 0 (c.yaml). To fix: set "
     "price_per_hour to a number >= 0 (at most 1e+09)"),
    ("{type: A, price_per_hour: 1000000001, perf_model: m.json}",
     "To fix: set price_per_hour to a number >= 0 (at most 1e+09)"),
    ("{type: A, price_per_hour: 1, max_count: 0, perf_model: m.json}",
     "To fix: set max_count to how many such GPUs may be used (an integer >= 1) or leave it out: unbounded"),
    ("{type: A, price_per_hour: 1, memory_mb: 0, perf_model: m.json}", "To fix: set memory_mb (> 0) or leave it out"),
    ("{type: A, price_per_hour: 1, network_gbps: 0.0009, perf_model: m.json}",
     "To fix: set network_gbps (0.001 to 1e+06) or leave it out"),
    ("{type: A, price_per_hour: 1, network_gbps: 1000001, perf_model: m.json}",
     "To fix: set network_gbps (0.001 to 1e+06) or leave it out"),
    ("{type: A, price_per_hour: 1, perf_model: ''}",
     "To fix: give the perf model file of this GPU type (from `igniter fit`), relative to the catalog"),
    ("{type: A, price_per_hour: 1, perf_model: nope.json}",
     "gpus[0] 'A'.perf_model 'nope.json' does not exist (looked at {dir}/nope.json) (c.yaml). To fix: fit a model "
     "with `igniter fit` and give its path relative to the catalog"),
    ("{type: A, price_per_hour: 1, perf_model: m.json}\n  - {type: A, price_per_hour: 2, perf_model: m.json}",
     "gpus[1].type 'A' is used twice (c.yaml). To fix: list each GPU type once"),
])
def test_catalog_refusals_are_these_lines(tmp_path, row, expected):
    line = catalog(tmp_path, f"  - {row}\n")
    expected = expected.replace("{dir}", str(tmp_path))
    assert (line == expected) if expected.startswith("gpus") else line.endswith(f"(c.yaml). {expected}")


def test_catalog_top_level_refusals(tmp_path):
    (tmp_path / "m.json").write_text("{}")
    assert refusal(tmp_path / "c.yaml", "gpus: 3\n", lambda p: load_catalog(p, lambda path: path)) == (
        "gpus = 3: input should be a valid list (c.yaml). To fix: write `gpus: [...]` with one `{type: V100, "
        "price_per_hour: 3.06, perf_model: v100.json}` per type")
    assert refusal(tmp_path / "c.yaml", "- 1\n", lambda p: load_catalog(p, lambda path: path)).endswith(
        "(c.yaml). To fix: see the catalog format at the top of igniter/provisioning/workloads.py")
    rows = "".join(f"  - {{type: t{i}, price_per_hour: 1, perf_model: m.json}}\n" for i in range(1025))
    assert "list should have at most 1024 items" in refusal(tmp_path / "c.yaml", "gpus:\n" + rows,
                                                            lambda p: load_catalog(p, lambda path: path))


def test_catalog_entries_become_gpu_types_with_their_defaults(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.json").write_text("{}")
    path = tmp_path / "c.yaml"
    path.write_text("gpus:\n  - {type: A, price_per_hour: 0, perf_model: models/a.json}\n"
                    "  - {type: B, price_per_hour: 1000000000, max_count: 3, memory_mb: 512.5, network_gbps: 0.001, "
                    "perf_model: models/a.json}\n")
    loaded = []
    a, b = load_catalog(path, lambda p: loaded.append(p) or f"model at {p.name}")
    assert loaded == [tmp_path / "models" / "a.json"] * 2
    assert (a.type, a.price_per_hour, a.max_count, a.perf_model, a.memory_mb, a.network_gbps) == (
        "A", 0.0, None, "model at a.json", None, 10.0)
    assert (b.price_per_hour, b.max_count, b.memory_mb, b.network_gbps) == (1e9, 3, 512.5, 0.001)


def test_a_missing_perf_model_file_is_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        load_perf_model(tmp_path / "m.json")
    assert str(err.value) == (f"no performance model file at {tmp_path / 'm.json'}. To fix: run `igniter fit` first "
                              "or fix the --perf-model path")


def test_default_catalog_is_the_hardware_at_price_one_unbounded():
    pm = SimpleNamespace(hardware={"name": "AMD EPYC 7B13 (2 cores)", "memory_mb": 2048.0, "kind": "cpu"},
                         models=["b", "a"])
    [t] = default_catalog(pm)
    assert (t.type, t.price_per_hour, t.max_count, t.perf_model, t.memory_mb, t.network_gbps) == (
        "AMD-EPYC-7B13-2-cores", 1.0, None, pm, 2048.0, 10.0)
    assert (t.kind, t.path_calibration) == ("cpu", [])
    [unnamed] = default_catalog(SimpleNamespace(hardware=None, models=[]))
    assert (unnamed.type, unnamed.memory_mb) == ("gpu", None)
    assert default_catalog(SimpleNamespace(hardware={"name": ""}, models=[]))[0].type == "gpu"
    assert known_models([t, GpuType("x", 1.0, None, SimpleNamespace(models=["c"], hardware={}))]) == {"a", "b", "c"}


def test_gpu_type_kind_and_path_calibration():
    rows = [{"rate": 100.0, "ms": 1.0}]
    t = GpuType("g", 1.0, None, SimpleNamespace(hardware={"path_overhead": rows}))
    assert (t.kind, t.path_calibration) == ("gpu", rows)
    assert GpuType("g", 1.0, None, SimpleNamespace(hardware=None)).path_calibration == []


@pytest.mark.parametrize("name, expected", [
    ("AMD EPYC", "AMD-EPYC"), ("  H100 PCIe 80GB ", "H100-PCIe-80GB"), ("a.b_c-d", "a.b_c-d"), ("-._x._-", "x"),
    ("Ünïcode GPU", "n-code-GPU"), ("***", "gpu"), ("x" * 70, "x" * 64)])
def test_safe_type_name(name, expected):
    assert safe_type_name(name) == expected


def test_files_that_are_not_yaml_name_what_they_are(tmp_path):
    bad = "workloads: [\n"
    line = refusal(tmp_path / "w.yaml", bad, lambda p: load_workloads(p, {"m"}))
    assert line.startswith("workloads file is not valid YAML: ") and line.endswith(
        "(w.yaml line 2). To fix: fix the YAML at that line")
    line = refusal(tmp_path / "c.yaml", "gpus: [\n", lambda p: load_catalog(p, lambda path: path))
    assert line.startswith("GPU catalog is not valid YAML: ") and line.endswith(
        "(c.yaml line 2). To fix: fix the YAML at that line")
