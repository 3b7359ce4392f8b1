"""Property-based fuzzing of igniter's input files through the real CLI (issue #19): generated workloads files,
GPU catalogs, perf-model files, server maps, profile stores and import sources, bad and good. Whatever the input:
no traceback, exit code 0, 1 or 2, an exit-2 error is one stderr line with "To fix", and no file outside --out
is created or changed.

Examples per property: IGNITER_FUZZ_EXAMPLES (default 40, about a minute in all on a 2-core VM); the generation
is derandomised, so CI runs the same inputs every time. docs/testing.md ("Bad-input fuzzing") has the counts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igniter.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
CPU_PROFILES = ROOT / "profiles" / "cpu-2core"
EXAMPLES = int(os.environ.get("IGNITER_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A real perf model of the shipped CPU profiles (no residual: quicker to load, the same file format)."""
    path = tmp_path_factory.mktemp("fuzz-model") / "cpu.model.json"
    result = CliRunner().invoke(cli, ["fit", "--profiles", str(CPU_PROFILES), "--out", str(path), "--no-residual"])
    assert result.exit_code == 0, result.output
    return path


# -- values a hostile but realistic user writes --------------------------------------------------------------------

NASTY = st.sampled_from([0, -1, 1, 1.5, 1e9, 1e308, -1e308, 0.001, 1e-300, 64, 65, 4097, 2**63, 3.6e6, True, False,
                         None, "", "mlp", "convnet", "tinynet", "../x", "a" * 300, "x y", "1e9", ".nan", "tpu",
                         "http://127.0.0.1:8000", "http://h:99999", [], {}, [1], {"a": 1}])
SCALARS = st.one_of(NASTY, st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(0.001, 1e5), st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=5)


def mutated(base: dict, keys: list[str]):
    """`base` with a few keys replaced, removed or added (typos and unknown keys included)."""
    def apply(edits):
        out = dict(base)
        for key, value, drop in edits:
            if drop:
                out.pop(key, None)
            else:
                out[key] = value
        return out
    key = st.sampled_from(keys + ["rat", "Name", "slo", "extra", ""])
    return st.lists(st.tuples(key, VALUES, st.booleans()), max_size=3).map(apply)


def garbled(text: str):
    """Text with a few characters inserted, deleted or replaced (syntax errors, odd bytes)."""
    def apply(edits):
        out = text
        for position, piece in edits:
            at = position % (len(out) + 1)
            out = out[:at] + piece + out[at + 1:]
        return out
    return st.lists(st.tuples(st.integers(0, 10**6), st.text(max_size=3)), min_size=1, max_size=4).map(apply)


# -- running one example -------------------------------------------------------------------------------------------

def snapshot(root: Path, out: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(root.rglob("*")) if out not in p.parents and p != out and not p.is_symlink()}


@contextmanager
def case_dir():
    directory = Path(tempfile.mkdtemp(prefix="igniter-fuzz-"))
    cwd = os.getcwd()
    os.chdir(directory)          # relative default paths (.igniter/...) land here, where the snapshot sees them
    try:
        yield directory
    finally:
        os.chdir(cwd)
        shutil.rmtree(directory, ignore_errors=True)


def check(directory: Path, files: dict[str, str | bytes], args: list[str]) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    out = directory / "out"
    before = snapshot(directory, out)
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.exit_code
    assert "Traceback" not in result.output + result.stderr
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "To fix:" in lines[0], result.stderr
    assert snapshot(directory, out) == before, "a file outside --out was written or changed"


def dump(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# -- the properties ------------------------------------------------------------------------------------------------

GOOD_WORKLOAD = {"name": "w1", "model": "mlp", "rate": 50, "slo_ms": 40}
WORKLOAD_KEYS = ["name", "model", "rate", "slo_ms", "accuracy", "input_bytes", "variants"]
WORKLOADS = st.one_of(
    st.lists(mutated(GOOD_WORKLOAD, WORKLOAD_KEYS), min_size=1, max_size=4).map(lambda ws: dump({"workloads": ws})),
    st.lists(st.fixed_dictionaries({"name": st.sampled_from(["a", "b", "c"]),
                                    "model": st.sampled_from(["mlp", "convnet", "tinynet"]),
                                    "rate": st.floats(0.001, 1e12), "slo_ms": st.floats(0.01, 3.6e6)}),
             min_size=1, max_size=3).map(lambda ws: dump({"workloads": ws})),
    mutated({"workloads": [GOOD_WORKLOAD]}, ["workloads", "accuracy_weight"]).map(dump),
    VALUES.map(dump),
    garbled(dump({"workloads": [GOOD_WORKLOAD]})),
)
STRATEGY = st.sampled_from(["ilp", "igniter", "ffd"])


@FUZZ
@given(text=WORKLOADS, strategy=STRATEGY)
def test_fuzz_workloads(model_file, text, strategy):
    with case_dir() as d:
        shutil.copy(model_file, d / "m.json")
        check(d, {"w.yaml": text}, ["provision", "--workloads", "w.yaml", "--perf-model", "m.json", "--out", "out",
                                    "--strategy", strategy, "--time-limit", "1"])


GOOD_GPU = {"type": "host", "price_per_hour": 1.0, "max_count": 2, "perf_model": "m.json"}
GPU_KEYS = ["type", "price_per_hour", "max_count", "memory_mb", "network_gbps", "perf_model"]
CATALOGS = st.one_of(
    st.lists(mutated(GOOD_GPU, GPU_KEYS), min_size=1, max_size=3).map(lambda gs: dump({"gpus": gs})),
    VALUES.map(dump),
    garbled(dump({"gpus": [GOOD_GPU]})),
)


@FUZZ
@given(catalog=CATALOGS, count=st.integers(1, 40), strategy=STRATEGY)
def test_fuzz_catalog(model_file, catalog, count, strategy):
    workloads = dump({"workloads": [{**GOOD_WORKLOAD, "name": f"w{i}"} for i in range(count)]})
    with case_dir() as d:
        shutil.copy(model_file, d / "m.json")
        check(d, {"w.yaml": workloads, "gpus.yaml": catalog},
              ["provision", "--workloads", "w.yaml", "--gpus", "gpus.yaml", "--out", "out", "--strategy", strategy,
               "--time-limit", "1"])


def _paths(node, prefix=()):
    """Every (path, value) in a JSON document."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@FUZZ
@given(data=st.data())
def test_fuzz_perf_model_file(model_file, data):
    document = json.loads(model_file.read_text())
    paths = [p for p, _ in _paths(document) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = document
        for key in path[:-1]:
            node = node[key] if isinstance(node, (dict, list)) and (isinstance(node, dict) and key in node or
                                                                    isinstance(node, list) and key < len(node)) \
                else None
        if isinstance(node, dict) and path[-1] in node or isinstance(node, list) and path[-1] < len(node):
            old = node[path[-1]]
            numeric = isinstance(old, float) and data.draw(st.booleans())   # a valid file with odd numbers
            node[path[-1]] = data.draw(st.floats(allow_nan=False, allow_infinity=False) if numeric else VALUES)
    text = json.dumps(document, allow_nan=True)
    colocate = data.draw(st.sampled_from(["mlp:1:50", "mlp:4:100,convnet:2:50", "tinynet:8:100"]))
    workloads = dump({"workloads": [GOOD_WORKLOAD, {"name": "w2", "model": "convnet", "rate": 80, "slo_ms": 30}]})
    command = data.draw(st.sampled_from([
        ["predict", "--perf-model", "m.json", "--colocate", colocate],
        ["provision", "--workloads", "w.yaml", "--perf-model", "m.json", "--out", "out", "--time-limit", "1"]]))
    with case_dir() as d:
        check(d, {"m.json": text, "w.yaml": workloads}, command)


SERVER_MAPS = st.one_of(
    st.dictionaries(st.sampled_from(["gpu0-w1-r0", "../x", "a b", "", "x" * 70]),
                    st.one_of(st.sampled_from(["http://127.0.0.1:8000", "http://h:0", "http://h:65535", "h:8000",
                                               "http=h:1,grpc=h:2", "http=h:1", "ftp://h:1", "http://:80",
                                               "http://h:8000/path", "http://u@h:1"]), SCALARS),
                    max_size=3).map(dump),
    VALUES.map(dump),
)


@FUZZ
@given(server_map=SERVER_MAPS)
def test_fuzz_server_map(server_map):
    # the plan does not exist: a map that parses gets "no plan" (exit 2); nothing may start or be written
    with case_dir() as d:
        check(d, {"map.yaml": server_map}, ["apply", "plan.json", "--server-map", "map.yaml"])


CSV_VALUES = st.one_of(st.sampled_from(["nan", "inf", "-inf", "-1", "0", "", "x", "1e308", "1.5", "../x", "1e-300",
                                        "100.5", "NA", '"', "1,2"]), st.text(max_size=5))


@settings(FUZZ, max_examples=max(EXAMPLES // 2, 10))
@given(data=st.data())
def test_fuzz_profile_store_at_fit(data):
    files = {}
    for name in ("solo.csv", "pairs.csv"):
        lines = (CPU_PROFILES / name).read_text().splitlines()
        for _ in range(data.draw(st.integers(0, 2))):
            row = data.draw(st.integers(0, len(lines) - 1))
            cells = lines[row].split(",")
            cells[data.draw(st.integers(0, len(cells) - 1))] = data.draw(CSV_VALUES)
            lines[row] = ",".join(cells)
        files[f"p/{name}"] = "\n".join(lines) + "\n"
    hardware = json.loads((CPU_PROFILES / "hardware.json").read_text())
    if data.draw(st.booleans()):
        hardware[data.draw(st.sampled_from(["kind", "cores", "memory_mb", "name", "extra"]))] = data.draw(VALUES)
    files["p/hardware.json"] = json.dumps(hardware, allow_nan=True)
    with case_dir() as d:
        check(d, files, ["fit", "--profiles", "p", "--out", "out", "--no-residual"])


GOOD_SOLO = {"alexnet": {"latency": {"1": {"50": 1.0, "100": 0.8}, "2": {"50": 1.5, "100": 1.1}}}}
GOOD_PAIRS = {"interference": {"latency": [["alexnet", "alexnet", 1, 2, 40, 1.2, 2.0]]}}


@FUZZ
@given(data=st.data())
def test_fuzz_import_source(data):
    solo = json.loads(json.dumps(GOOD_SOLO))
    pairs = json.loads(json.dumps(GOOD_PAIRS))
    if data.draw(st.booleans()):
        solo["alexnet"]["latency"][data.draw(st.sampled_from(["1", "2", "0", "x"]))] = data.draw(VALUES)
    if data.draw(st.booleans()):
        entry = pairs["interference"]["latency"][0]
        if data.draw(st.booleans()):
            entry[data.draw(st.integers(0, 6))] = data.draw(VALUES)
        else:
            pairs["interference"]["latency"][0] = data.draw(st.lists(SCALARS, max_size=9))
    lines = [json.dumps(solo, allow_nan=True), json.dumps(pairs, allow_nan=True)]
    if data.draw(st.booleans()):
        lines.append(data.draw(st.one_of(VALUES.map(json.dumps), st.text(max_size=20))))
    coefficients = data.draw(st.one_of(st.just('{"hardware": {"idlepower": 50}}'),
                                       VALUES.map(lambda v: json.dumps({"alexnet": {"power": v}}))))
    with case_dir() as d:
        check(d, {"src/profiles.jsonl": "\n".join(lines) + "\n", "src/coefficients.jsonl": coefficients + "\n"},
              ["import-profiles", "--format", "igniter", "src", "--out", "out"])

