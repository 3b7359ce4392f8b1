"""Bad input files and arguments through the real CLI (issue #19, the input half): each case must exit 2 with
exactly one stderr line that says what is wrong and "To fix", no traceback, and no file written or changed.

Every case runs in its own directory (also the working directory, so a stray relative write is caught): the
directory's files before and after must be byte-identical. The performance model is a real one, fitted once
from the CPU profiles shipped in profiles/cpu-2core.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from igniter.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
CPU_PROFILES = ROOT / "profiles" / "cpu-2core"


@pytest.fixture(scope="session")
def fitted(tmp_path_factory) -> dict:
    """A real perf model file of the CPU profiles (convnet, mlp, tinynet), and its JSON."""
    path = tmp_path_factory.mktemp("model") / "cpu.model.json"
    result = CliRunner().invoke(cli, ["fit", "--profiles", str(CPU_PROFILES), "--out", str(path)])
    assert result.exit_code == 0, result.output
    return {"path": path, "data": json.loads(path.read_text())}


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(root.rglob("*")) if not p.is_symlink()}


def assert_one_line_error(result, needle: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "To fix:" in lines[0] and "Traceback" not in result.output + result.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


def run_case(tmp_path: Path, monkeypatch, fitted: dict, files: dict, args: list[str], needle: str) -> str:
    """Write `files` (name -> text, bytes, a dict for JSON, or a callable of the model JSON), run `igniter ARGS`
    from inside the case directory and check the one-line error and that nothing changed."""
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content = content(json.loads(json.dumps(fitted["data"])))
        if isinstance(content, (dict, list)):
            content = json.dumps(content)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    shutil.copy(fitted["path"], tmp_path / "good.model.json")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, args)
    line = assert_one_line_error(result, needle)
    assert snapshot(tmp_path) == before, "a file was written or changed"
    return line


def workloads(*entries: str, head: str = "") -> str:
    return head + "workloads:\n" + "".join(f"  - {e}\n" for e in entries)


OK = "{name: w1, model: mlp, rate: 50, slo_ms: 40}"
PROVISION = ["provision", "--workloads", "w.yaml", "--perf-model", "good.model.json", "--out", "out"]
WITH_CATALOG = ["provision", "--workloads", "w.yaml", "--gpus", "gpus.yaml", "--out", "out"]
MANY = workloads(*(f"{{name: w{i}, model: mlp, rate: 50, slo_ms: 40}}" for i in range(1000)))


def catalog(entry: str) -> str:
    return f"gpus:\n  - {entry}\n"


# (id, files, args, what the line must name)
CASES = [
    # -- workloads file: types, ranges, keys, names, size
    ("rate-true", {"w.yaml": workloads("{name: w1, model: mlp, rate: true, slo_ms: 40}")}, PROVISION,
     "workloads[0] 'w1'.rate = True: input should be a valid number"),
    ("rate-negative", {"w.yaml": workloads("{name: w1, model: mlp, rate: -5, slo_ms: 40}")}, PROVISION,
     "workloads[0] 'w1'.rate = -5"),
    ("rate-zero", {"w.yaml": workloads("{name: w1, model: mlp, rate: 0, slo_ms: 40}")}, PROVISION, "rate = 0"),
    ("rate-nan", {"w.yaml": workloads("{name: w1, model: mlp, rate: .nan, slo_ms: 40}")}, PROVISION,
     "rate = nan: input should be a finite number"),
    ("rate-inf", {"w.yaml": workloads("{name: w1, model: mlp, rate: .inf, slo_ms: 40}")}, PROVISION,
     "rate = inf: input should be a finite number"),
    ("rate-string", {"w.yaml": workloads("{name: w1, model: mlp, rate: fast, slo_ms: 40}")}, PROVISION,
     "rate = 'fast': input should be a valid number"),
    ("slo-missing", {"w.yaml": workloads("{name: w1, model: mlp, rate: 50}")}, PROVISION,
     "workloads[0] 'w1'.slo_ms: field required"),
    ("slo-huge", {"w.yaml": workloads("{name: w1, model: mlp, rate: 50, slo_ms: 1e308}")}, PROVISION,
     "slo_ms = 1e+308: input should be less than or equal to 3600000"),
    ("accuracy-above-1", {"w.yaml": workloads("{name: w1, model: mlp, rate: 50, slo_ms: 40, accuracy: 1.5}")},
     PROVISION, "accuracy = 1.5: input should be less than or equal to 1"),
    ("unknown-key", {"w.yaml": workloads("{name: w1, model: mlp, rat: 50, slo_ms: 40}")}, PROVISION,
     "unknown key workloads[0] 'w1'.rat"),
    ("unknown-top-key", {"w.yaml": workloads(OK, head="workload_list: []\n")}, PROVISION,
     "unknown key workload_list"),
    ("duplicate-yaml-key", {"w.yaml": "workloads:\n  - {name: w1, model: mlp, rate: 50, rate: 60, slo_ms: 40}\n"},
     PROVISION, "key 'rate' is given twice"),
    ("duplicate-name", {"w.yaml": workloads(OK, OK)}, PROVISION, "workloads[1].name 'w1' is used twice"),
    ("name-escapes", {"w.yaml": workloads("{name: ../../evil, model: mlp, rate: 50, slo_ms: 40}")}, PROVISION,
     "name = '../../evil': must be letters, digits"),
    ("name-300-chars", {"w.yaml": workloads("{name: " + "a" * 300 + ", model: mlp, rate: 50, slo_ms: 40}")},
     PROVISION, "at most 64 characters"),
    ("model-unknown", {"w.yaml": workloads("{name: w1, model: bert, rate: 50, slo_ms: 40}")}, PROVISION,
     "'bert' is not in the performance model"),
    ("variant-unknown", {"w.yaml": workloads("{name: w1, model: mlp, rate: 50, slo_ms: 40, "
                                             "variants: [{model: bert, accuracy: 0.5}]}")}, PROVISION,
     "variants[0].model 'bert'"),
    ("workloads-empty", {"w.yaml": "workloads: []\n"}, PROVISION, "workloads = []"),
    ("workloads-list", {"w.yaml": "- 1\n- 2\n"}, PROVISION, "must be a mapping"),
    ("workloads-empty-file", {"w.yaml": ""}, PROVISION, "must be a mapping"),
    ("workloads-not-yaml", {"w.yaml": "workloads: [\n"}, PROVISION, "not valid YAML"),
    ("workloads-not-utf8", {"w.yaml": b"workloads: \xff\xfe\n"}, PROVISION, "not UTF-8"),
    ("workloads-too-large", {"w.yaml": "# " + "x" * (17 * 1024 * 1024) + "\n"}, PROVISION, "larger than 16 MiB"),
    ("workloads-dev-zero", {}, ["provision", "--workloads", "/dev/zero", "--perf-model", "good.model.json",
                                "--out", "out"], "is not a regular file"),
    ("workloads-missing", {}, PROVISION, "does not exist"),
    ("too-many-workloads", {"w.yaml": workloads(*(f"{{name: w{i}, model: mlp, rate: 1, slo_ms: 40}}"
                                                  for i in range(5000)))}, PROVISION, "at most 4096 items"),
    # -- numbers the search cannot take
    ("rate-1e9", {"w.yaml": workloads("{name: w1, model: mlp, rate: 1e9, slo_ms: 40}")}, PROVISION,
     "would need"),
    ("rate-1e308", {"w.yaml": workloads("{name: w1, model: mlp, rate: 1e308, slo_ms: 40}")}, PROVISION,
     "would need"),
    ("time-limit-nan", {"w.yaml": workloads(OK)}, [*PROVISION, "--time-limit", "nan"], "--time-limit nan"),
    ("time-limit-inf", {"w.yaml": workloads(OK)}, [*PROVISION, "--time-limit", "inf"], "--time-limit inf"),
    # -- GPU catalog
    ("max-count-float", {"w.yaml": workloads(OK), "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1, max_count: 1.5, perf_model: good.model.json}")}, WITH_CATALOG,
     "max_count = 1.5: input should be a valid integer"),
    ("max-count-zero", {"w.yaml": workloads(OK), "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1, max_count: 0, perf_model: good.model.json}")}, WITH_CATALOG,
     "max_count = 0: input should be greater than or equal to 1"),
    ("price-negative", {"w.yaml": workloads(OK), "gpus.yaml": catalog(
        "{type: host, price_per_hour: -1, perf_model: good.model.json}")}, WITH_CATALOG,
     "price_per_hour = -1: input should be greater than or equal to 0"),
    ("price-huge", {"w.yaml": workloads(OK), "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1e308, perf_model: good.model.json}")}, WITH_CATALOG,
     "price_per_hour = 1e+308: input should be less than or equal to 1000000000"),
    ("network-tiny", {"w.yaml": workloads("{name: w1, model: mlp, rate: 50, slo_ms: 40, input_bytes: 1000}"),
                      "gpus.yaml": catalog("{type: host, price_per_hour: 1, network_gbps: 1e-300, "
                                           "perf_model: good.model.json}")}, WITH_CATALOG, "network_gbps = 1e-300"),
    ("type-twice", {"w.yaml": workloads(OK), "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1, perf_model: good.model.json}\n"
        "  - {type: host, price_per_hour: 2, perf_model: good.model.json}")}, WITH_CATALOG,
     "gpus[1].type 'host' is used twice"),
    ("type-escapes", {"w.yaml": workloads(OK), "gpus.yaml": catalog(
        "{type: ../host, price_per_hour: 1, perf_model: good.model.json}")}, WITH_CATALOG, "must be letters"),
    ("catalog-unknown-key", {"w.yaml": workloads(OK), "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1, max_cnt: 2, perf_model: good.model.json}")}, WITH_CATALOG,
     "did you mean 'max_count'?"),
    ("catalog-model-missing", {"w.yaml": workloads(OK), "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1, perf_model: nowhere.json}")}, WITH_CATALOG, "'nowhere.json' does not exist"),
    ("max-count-hard-limit", {"w.yaml": MANY, "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1, max_count: 1, perf_model: good.model.json}")}, WITH_CATALOG,
     "max_count is 1"),
    ("max-count-hard-limit-igniter", {"w.yaml": MANY, "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1, max_count: 1, perf_model: good.model.json}")},
     [*WITH_CATALOG, "--strategy", "igniter"], "max_count is 1"),
    ("max-count-hard-limit-ffd", {"w.yaml": MANY, "gpus.yaml": catalog(
        "{type: host, price_per_hour: 1, max_count: 1, perf_model: good.model.json}")},
     [*WITH_CATALOG, "--strategy", "ffd"], "max_count is 1"),
    # -- performance model file
    ("model-kind-tpu", {"w.yaml": workloads(OK), "m.json": lambda d: {**d, "hardware": {**d["hardware"],
                                                                                     "kind": "tpu"}}},
     ["provision", "--workloads", "w.yaml", "--perf-model", "m.json", "--out", "out"], "hardware.kind = 'tpu'"),
    ("model-no-models", {"w.yaml": workloads(OK), "m.json": lambda d: {**d, "models": {}}},
     ["provision", "--workloads", "w.yaml", "--perf-model", "m.json", "--out", "out"], "models = {}"),
    ("model-wrong-shape", {"m.json": lambda d: {**d, "models": []}},
     ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"], "models = []: must be a mapping"),
    ("model-keys-missing", {"m.json": {"format": "igniter-perf-model", "version": 2}},
     ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"], "hardware: field required"),
    ("model-grid-ragged", {"m.json": lambda d: {**d, "models": {**d["models"], "mlp": {
        **d["models"]["mlp"], "latency": {"batches": [1, 2], "shares": [[50.0]], "values": [[0.0]]}}}}},
     ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"], "models.mlp.latency"),
    ("model-bad-booster", {"m.json": lambda d: {**d, "residual": {**d["residual"], "booster_json_b64": "!!!"}}},
     ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"], "booster_json_b64"),
    ("model-empty-booster", {"m.json": lambda d: {**d, "residual": {
        **d["residual"], "booster_json_b64": base64.b64encode(b"{}").decode()}}},
     ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"], "booster_json_b64"),
    ("model-nan", {"m.json": lambda d: json.dumps({**d, "interference": {**d["interference"],
                                                                         "base": float("nan")}})},
     ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"], "interference.base = nan"),
    ("model-list", {"m.json": "[1, 2]"}, ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"],
     "not an igniter-perf-model version 2 file"),
    ("model-not-json", {"m.json": "{"}, ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"],
     "not valid JSON"),
    ("model-old-version", {"m.json": lambda d: {**d, "version": 1}},
     ["predict", "--perf-model", "m.json", "--colocate", "mlp:1:50"], "re-run igniter fit"),
    # -- server map of igniter apply
    ("server-map-port", {"map.yaml": "gpu0-w1-r0: http://10.0.0.5:99999\n"},
     ["apply", "plan.json", "--server-map", "map.yaml"], "gpu0-w1-r0: server address 'http://10.0.0.5:99999'"),
    ("server-map-port-text", {"map.yaml": "gpu0-w1-r0: http://10.0.0.5:http\n"},
     ["apply", "plan.json", "--server-map", "map.yaml"], "is not http://HOST:PORT"),
    ("server-map-explicit", {"map.yaml": "gpu0-w1-r0: http=h:8000,grpc=h:x\n"},
     ["apply", "plan.json", "--server-map", "map.yaml"], "grpc='h:x' is not HOST:PORT"),
    ("server-map-name", {"map.yaml": "../gpu0: http://10.0.0.5:8000\n"},
     ["apply", "plan.json", "--server-map", "map.yaml"], "must be letters"),
    ("server-map-number", {"map.yaml": "gpu0-w1-r0: 8000\n"}, ["apply", "plan.json", "--server-map", "map.yaml"],
     "gpu0-w1-r0 = 8000: input should be a valid string"),
    ("server-map-twice", {"map.yaml": "a: http://h:8000\na: http://h:9000\n"},
     ["apply", "plan.json", "--server-map", "map.yaml"], "key 'a' is given twice"),
    ("infer-server-port", {}, ["infer", "--server", "http://127.0.0.1:99999"], "is not http://HOST:PORT"),
    ("profile-model-name", {}, ["profile", "--models", "my model", "--out", "out"], "model name 'my model'"),
    ("server-map-list", {"map.yaml": "- http://h:8000\n"}, ["apply", "plan.json", "--server-map", "map.yaml"],
     "must be a mapping"),
]


@pytest.mark.parametrize("case_id, files, args, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, fitted, case_id, files, args, needle):
    run_case(tmp_path, monkeypatch, fitted, files, args, needle)


# -- the profile store, at fit --------------------------------------------------------------------------------------

def store_with(solo_edit=None, pairs_edit=None, hardware=None) -> dict:
    """The shipped CPU store with one CSV cell (row index, column) -> text replaced, or hardware.json replaced."""
    files = {}
    for name, edit in (("solo.csv", solo_edit), ("pairs.csv", pairs_edit)):
        lines = (CPU_PROFILES / name).read_text().splitlines()
        if edit:
            edit_lines(lines, *edit)
        files[f"p/{name}"] = "\n".join(lines) + "\n"
    files["p/hardware.json"] = hardware if hardware is not None else (CPU_PROFILES / "hardware.json").read_text()
    return files


def edit_lines(lines: list[str], row: int, column: str, value: str) -> None:
    header = lines[0].split(",")
    if column not in header:
        header.append(column)
        lines[0] = ",".join(header)
        lines[1:] = [line + "," for line in lines[1:]]
    cells = lines[row + 1].split(",")
    cells[header.index(column)] = value
    lines[row + 1] = ",".join(cells)


FIT = ["fit", "--profiles", "p", "--out", "out.model.json"]
STORE_CASES = [
    ("latency-nan", store_with(solo_edit=(2, "latency_mean_ms", "nan")), "line 4 (model 'convnet'"),
    ("latency-zero", store_with(solo_edit=(2, "latency_p99_ms", "0")), "latency_p99_ms = 0.0 must be > 0"),
    ("latency-negative", store_with(pairs_edit=(5, "latency_mean_ms", "-3")), "pairs.csv"),
    ("throughput-inf", store_with(solo_edit=(0, "throughput_rps", "inf")), "must be a finite number"),
    ("latency-empty", store_with(solo_edit=(0, "latency_p50_ms", "")), "latency_p50_ms = nan is empty"),
    ("batch-fraction", store_with(solo_edit=(1, "batch", "1.5")), "must be a whole batch size"),
    ("share-150", store_with(pairs_edit=(0, "partner_share", "150")), "partner_share = 150 is outside (0, 100]"),
    ("model-name-escapes", store_with(solo_edit=(0, "model", "../x")), "must be letters"),
    ("optional-negative", store_with(solo_edit=(0, "l2_util_pct", "-1")), "l2_util_pct = -1.0 must be >= 0"),
    ("column-missing", {**store_with(), "p/solo.csv": "model,batch,share\nm,1,50\n"}, "lacks the required column"),
    ("column-twice", {**store_with(), "p/solo.csv": (CPU_PROFILES / "solo.csv").read_text().replace(
        "model,batch,", "model,batch,batch,", 1)}, "column 'batch' twice"),
    ("solo-empty", {**store_with(), "p/solo.csv": (CPU_PROFILES / "solo.csv").read_text().splitlines()[0] + "\n"},
     "solo.csv has no measurements"),
    ("hardware-tpu", store_with(hardware='{"kind": "tpu", "name": "x"}'), "kind = 'tpu'"),
    ("hardware-no-kind", store_with(hardware='{"name": "x"}'), "kind: field required"),
    ("hardware-cores-float", store_with(hardware='{"kind": "cpu", "name": "x", "cores": 1.5}'), "cores = 1.5"),
    ("hardware-not-json", store_with(hardware='{"kind": '), "not valid JSON"),
    ("hardware-key-twice", store_with(hardware='{"kind": "cpu", "kind": "gpu"}'), "given twice"),
    ("pairs-unknown-model", store_with(pairs_edit=(0, "partner", "ghost")), "'ghost' that solo.csv never profiled"),
]


@pytest.mark.parametrize("case_id, files, needle", STORE_CASES, ids=[c[0] for c in STORE_CASES])
def test_bad_profile_store_at_fit(tmp_path, monkeypatch, fitted, case_id, files, needle):
    run_case(tmp_path, monkeypatch, fitted, files, FIT, needle)


@pytest.mark.parametrize("out, needle", [("m" * 300 + ".json", "File name too long"),
                                         ("a-file/m.json", "cannot write the model file")])
def test_fit_to_an_unwritable_path(tmp_path, monkeypatch, fitted, out, needle):
    files = {**store_with(), "a-file": "not a directory\n"}
    run_case(tmp_path, monkeypatch, fitted, files, ["fit", "--profiles", "p", "--out", out], needle)


def test_profile_store_csv_through_dev_zero(tmp_path, monkeypatch, fitted):
    """A store whose solo.csv is /dev/zero is refused without reading it (no memory taken)."""
    files = store_with()
    del files["p/solo.csv"]
    (tmp_path / "p").mkdir()
    os.symlink("/dev/zero", tmp_path / "p" / "solo.csv")
    run_case(tmp_path, monkeypatch, fitted, files, FIT, "is not a regular file")


# -- import-profiles source files ---------------------------------------------------------------------------------

PAIR = ["alexnet", "resnet50", 2, 2, 20, 2.76, 3.57]
SOLO = {"alexnet": {"latency": {"1": {"50": 1.0, "100": 0.8}, "2": {"50": 1.5, "100": 1.1}}}}
RESNET = {"resnet50": {"latency": {"1": {"50": 2.0, "100": 1.6}, "2": {"50": 3.0, "100": 2.1}}}}


def source(*profile_lines, coefficients: str = '{"hardware": {"idlepower": 53.5}}\n') -> dict:
    return {"src/profiles.jsonl": "\n".join(line if isinstance(line, str) else json.dumps(line)
                                            for line in profile_lines) + "\n",
            "src/coefficients.jsonl": coefficients}


def pair_line(*entries) -> dict:
    return {"interference": {"latency": list(entries)}}


IMPORT = ["import-profiles", "--format", "igniter", "src", "--out", "store"]
IMPORT_CASES = [
    ("pair-arity", source(SOLO, RESNET, pair_line(PAIR, PAIR[:6])), "profiles.jsonl line 3"),
    ("pair-type", source(SOLO, RESNET, pair_line(PAIR[:5] + ["fast", 3.0])), "latency[0][5] = 'fast'"),
    ("pair-zero-latency", source(SOLO, RESNET, pair_line(PAIR[:5] + [0, 3.0])), "latency[0][5] = 0: input should be greater than 0"),
    ("pair-share-100", source(SOLO, RESNET, pair_line(PAIR[:4] + [100, 2.0, 3.0])), "latency[0][4] = 100"),
    ("pair-batch-float", source(SOLO, RESNET, pair_line(PAIR[:2] + [1.5] + PAIR[3:])), "latency[0][2] = 1.5"),
    ("solo-nan", source(json.dumps(SOLO).replace("0.8", "NaN"), RESNET), "NaN is not a number"),
    ("solo-infinity", source(json.dumps(SOLO).replace("0.8", "Infinity"), RESNET), "Infinity is not a number"),
    ("solo-negative", source(json.dumps(SOLO).replace("0.8", "-0.8"), RESNET), "latency.1.100 = -0.8"),
    ("solo-share-key", source({"alexnet": {"latency": {"1": {"150": 1.0}}}}), "share '150' is outside (0, 100]"),
    ("solo-batch-key", source({"alexnet": {"latency": {"one": {"50": 1.0}}}}), "latency.one (the key)"),
    ("solo-unknown-metric", source({"alexnet": {"latencies": {"1": {"50": 1.0}}}}), "did you mean 'latency'?"),
    ("model-name", source({"../alexnet": SOLO["alexnet"]}), "must be letters"),
    ("line-not-json", source(SOLO, "{oops"), "profiles.jsonl line 2"),
    ("line-not-object", source(SOLO, "[1, 2]"), "must be an object"),
    ("key-twice", source('{"alexnet": {"latency": {}}, "alexnet": {"latency": {}}}'), "given twice"),
    ("coefficient-type", source(SOLO, coefficients='{"alexnet": {"kernel": "many"}}\n'),
     "coefficients.jsonl line 1"),
    ("coefficient-power-shape", source(SOLO, coefficients='{"alexnet": {"power": [[1, 2]]}}\n'),
     "coefficients.jsonl line 1"),
    ("no-latency", source({"alexnet": {"throughput": {"1": {"50": 100.0}}}}), "no latency entries"),
    ("source-missing", {}, "profiles.jsonl is missing"),
]


@pytest.mark.parametrize("case_id, files, needle", IMPORT_CASES, ids=[c[0] for c in IMPORT_CASES])
def test_bad_import_source(tmp_path, monkeypatch, fitted, case_id, files, needle):
    run_case(tmp_path, monkeypatch, fitted, files, IMPORT, needle)


@pytest.mark.parametrize("out, needle", [("s" * 300, "File name too long"),
                                         ("a-file/store", "cannot write the profile store")])
def test_import_to_an_unwritable_path(tmp_path, monkeypatch, fitted, out, needle):
    files = {**source(SOLO, RESNET, pair_line(PAIR)), "a-file": "not a directory\n"}
    run_case(tmp_path, monkeypatch, fitted, files, ["import-profiles", "--format", "igniter", "src", "--out", out],
             needle)


def test_bad_import_leaves_an_existing_store_as_it_was(tmp_path, monkeypatch, fitted):
    """The issue's case: one bad value used to replace solo.csv and keep the old pairs.csv."""
    files = {**{f"store/{k[2:]}": v for k, v in store_with().items()},
             **source(SOLO, RESNET, pair_line(PAIR, PAIR[:5] + [-1.0, 2.0]))}
    run_case(tmp_path, monkeypatch, fitted, files, IMPORT, "latency[1][5] = -1.0")


# -- a real Triton: a batch above the model's maximum ---------------------------------------------------------------

@pytest.mark.integration
def test_infer_batch_above_max_batch_size(tmp_path, monkeypatch, fitted, demo_repo):
    from igniter.triton.config import read_config

    largest = read_config(demo_repo / "mlp" / "config.pbtxt").max_batch_size   # independent of the CLI's check
    line = run_case(tmp_path, monkeypatch, fitted, {}, ["infer", "--repo", str(demo_repo), "--model", "mlp",
                                                        "--batch", str(largest + 1)], f"batch {largest + 1}")
    assert f"({largest})" in line
