"""Provisioning over a real-world-style source repository (tests/fixtures/repos/zoo): every model keeps its
meaning, what cannot be planned is refused in one line, written repositories load on a real Triton, and
`provision --check` answers 0 / 1 / 2."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

sys.path.insert(0, str(Path(__file__).parent))
from fake_perf_model import FakePerfModel  # noqa: E402

from igniter.cli import provision as provision_cli  # noqa: E402
from igniter.errors import UserError  # noqa: E402
from igniter.provisioning.repository import Placement, check_rules  # noqa: E402
from igniter.triton.config import leading_comments  # noqa: E402

ZOO = Path(__file__).parent / "fixtures" / "repos" / "zoo"
LIGHT = (0.3, 0.2, 0.3, 0.5, 0.05, 100.0, 5.0)   # FakePerfModel parameters: a small, fast model
PLANNED = ("accumulate", "oldest_accumulate", "embed_nobatch", "tokenize", "score", "stream", "densenet_like",
           "pinned_gpu", "cpu_only", "router_bls", "self_placed")

GPU_WORKLOADS = """
workloads:
  - {name: seq, model: accumulate, rate: 400, slo_ms: 40}
  - {name: old, model: oldest_accumulate, rate: 400, slo_ms: 40}
  - {name: nob, model: embed_nobatch, rate: 50, slo_ms: 40}
  - {name: pipe, model: pipeline, rate: 300, slo_ms: 60}
  - {name: str, model: stream, rate: 50, slo_ms: 40}
  - {name: dn, model: densenet_like, rate: 50, slo_ms: 60}
  - {name: pin, model: pinned_gpu, rate: 800, slo_ms: 40}
"""

CPU_WORKLOADS = """
workloads:
  - {name: seq, model: accumulate, rate: 20, slo_ms: 200}
  - {name: old, model: oldest_accumulate, rate: 20, slo_ms: 200}
  - {name: nob, model: embed_nobatch, rate: 20, slo_ms: 200}
  - {name: pipe, model: pipeline, rate: 20, slo_ms: 200}
  - {name: str, model: stream, rate: 20, slo_ms: 200}
  - {name: cpu, model: cpu_only, rate: 20, slo_ms: 200}
"""


def gpu_model(**kw) -> FakePerfModel:
    return FakePerfModel(models={m: LIGHT for m in PLANNED}, **kw)


def cpu_model() -> FakePerfModel:
    return FakePerfModel("cpu-host", memory_mb=None, models={m: LIGHT for m in PLANNED}, kind="cpu", cores=2,
                         shares=(50.0, 100.0))


def provision(monkeypatch, tmp_path, workloads: str, perf_model, *extra, out: str = "out", repo: Path = ZOO):
    monkeypatch.setattr(provision_cli, "_loader", lambda: (lambda path: perf_model))
    (tmp_path / "w.yaml").write_text(workloads)
    (tmp_path / "m.json").write_text("{}")
    return CliRunner().invoke(provision_cli.provision, [
        "--workloads", str(tmp_path / "w.yaml"), "--perf-model", str(tmp_path / "m.json"),
        "--out", str(tmp_path / out), "--repo", str(repo), "--strategy", "igniter", *extra])


def servers(out: Path) -> dict[str, dict]:
    plan = json.loads((out / "plan.json").read_text())
    return {s["workload"]: s for g in plan["gpus"] for s in g["servers"]}


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def without_driven(cfg: mc.ModelConfig) -> mc.ModelConfig:
    """The source's meaning: everything but the fields the plan drives (instance group, batch sizes, delay)."""
    rest = mc.ModelConfig()
    rest.CopyFrom(cfg)
    rest.ClearField("instance_group")
    if rest.HasField("dynamic_batching"):
        rest.dynamic_batching.ClearField("preferred_batch_size")
        rest.dynamic_batching.ClearField("max_queue_delay_microseconds")
        if rest.dynamic_batching.ByteSize() == 0:
            rest.ClearField("dynamic_batching")
    seq = rest.sequence_batching
    for strategy in (seq.direct, seq.oldest):
        for name in ("preferred_batch_size", "max_queue_delay_microseconds", "max_candidate_sequences",
                     "minimum_slot_utilization"):
            if name in strategy.DESCRIPTOR.fields_by_name:
                strategy.ClearField(name)
    if rest.HasField("sequence_batching") and seq.HasField("direct") and seq.direct.ByteSize() == 0:
        seq.ClearField("direct")
    return rest


def header_lines(path: Path) -> list[str]:
    """The file's top comment lines, read line by line (independent of igniter's header code)."""
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            lines.append(line)
        elif line.strip():
            break
    return lines


@pytest.fixture(scope="module")
def gpu_out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    with pytest.MonkeyPatch.context() as mp:
        res = provision(mp, tmp, GPU_WORKLOADS, gpu_model())
    assert res.exit_code == 0, res.output
    return tmp / "out"


def test_every_model_keeps_its_meaning_and_header(gpu_out):
    for workload, s in servers(gpu_out).items():
        repo = gpu_out / "triton_repo" / s["name"]
        launch = json.loads((repo / "launch.json").read_text())
        for model in launch["models"]:
            written, source = repo / model / "config.pbtxt", ZOO / model / "config.pbtxt"
            if parse(source).platform == "ensemble":
                continue
            assert without_driven(parse(written)) == without_driven(parse(source)), model
            assert header_lines(written) == header_lines(source), model
            [group] = parse(written).instance_group
            want = ((mc.ModelInstanceGroup.KIND_CPU, []) if model == "tokenize"      # a CPU step of an ensemble
                    else (mc.ModelInstanceGroup.KIND_GPU, [0]))
            assert (group.kind, list(group.gpus), group.count) == (*want, 1), model


def test_no_batch_dimension_planned_at_batch_1_without_batcher(gpu_out):
    for workload, model in (("dn", "densenet_like"), ("nob", "embed_nobatch")):
        s = servers(gpu_out)[workload]
        assert s["batch"] == 1
        cfg = parse(gpu_out / "triton_repo" / s["name"] / model / "config.pbtxt")
        assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    s = servers(gpu_out)["nob"]
    [group] = parse(gpu_out / "triton_repo" / s["name"] / "embed_nobatch" / "config.pbtxt").instance_group
    assert group.rate_limiter.priority == 2 and group.rate_limiter.resources[0].name == "scratch"
    dn = gpu_out / "triton_repo" / servers(gpu_out)["dn"]["name"] / "densenet_like"
    for rel in ("labels.txt", "1/model.onnx"):
        assert (dn / rel).read_bytes() == (ZOO / "densenet_like" / rel).read_bytes()


def test_sequence_models_batch_through_their_sequence_batcher(gpu_out):
    s = servers(gpu_out)["seq"]
    cfg = parse(gpu_out / "triton_repo" / s["name"] / "accumulate" / "config.pbtxt")
    assert not cfg.HasField("dynamic_batching")
    assert [c.name for c in cfg.sequence_batching.control_input] == ["START", "READY", "CORRID"]
    assert s["batch"] > 1, "the rate needs batching (else this test shows nothing)"
    # direct: wait up to the queue delay for `batch` of the 4 slots
    assert cfg.sequence_batching.direct.minimum_slot_utilization == pytest.approx(s["batch"] / 4, abs=1e-4)
    assert cfg.sequence_batching.direct.max_queue_delay_microseconds == s["max_queue_delay_us"]
    s = servers(gpu_out)["old"]
    assert s["batch"] > 1, "the rate needs batching (else this test shows nothing)"
    oldest = parse(gpu_out / "triton_repo" / s["name"] / "oldest_accumulate" / "config.pbtxt").sequence_batching.oldest
    assert list(oldest.preferred_batch_size) == [s["batch"]]
    assert oldest.max_candidate_sequences == max(2, s["batch"])
    assert oldest.max_queue_delay_microseconds == s["max_queue_delay_us"]


def test_ensemble_is_one_server_with_its_steps_and_config_unchanged(gpu_out):
    s = servers(gpu_out)["pipe"]
    assert s["model"] == "pipeline"
    repo = gpu_out / "triton_repo" / s["name"]
    assert json.loads((repo / "launch.json").read_text())["models"] == ["pipeline", "tokenize", "score"]
    assert (repo / "pipeline" / "config.pbtxt").read_bytes() == (ZOO / "pipeline" / "config.pbtxt").read_bytes()
    for step, delay in (("tokenize", s["max_queue_delay_us"]), ("score", 0)):   # the batch forms at the first step
        cfg = parse(repo / step / "config.pbtxt")
        assert list(cfg.dynamic_batching.preferred_batch_size) == [s["batch"]]
        assert cfg.dynamic_batching.max_queue_delay_microseconds == delay
    assert parse(repo / "tokenize" / "config.pbtxt").dynamic_batching.preserve_ordering


def test_ensemble_latency_is_its_steps_in_series():
    """Hand-worked: both steps LIGHT at batch 2, share 50 % together: each 0.7 * 2^0.7 + 0.1 ms solo,
    times (1 + 0.5 * 0.15) for the other step's pressure, plus 0.05 ms scheduling."""
    from igniter.provisioning.repository import RepositoryPerfModel, source_models
    pm = RepositoryPerfModel(gpu_model(), source_models(ZOO, {"pipeline"}))
    solo = 0.7 * 2 ** 0.7 + 0.1
    step = solo * (1 + 0.5 * 0.15) + 0.05
    terms = pm.linear_terms_many(["pipeline"], [2], [50.0])
    assert terms.solo_latency_ms[0] == pytest.approx(2 * step)
    assert terms.solo_throughput_rps[0] == pytest.approx(1000 * 2 / step)
    [[pred]] = pm.predict_sets([[type("M", (), {"model": "pipeline", "batch": 2, "share": 50.0})()]])
    assert pred.latency_ms == pytest.approx(2 * step)
    assert pm.linear_terms("pipeline", 2, 50.0).solo_latency_ms == pytest.approx(2 * step)
    assert pm.linear_terms("score", 2, 50.0).solo_latency_ms == pytest.approx(solo)    # a plain model: unchanged
    assert pm.batches("pipeline") == [1, 2, 4, 8]    # ensemble and steps take at most 8


def test_decoupled_and_pinned_gpu_models(gpu_out):
    s = servers(gpu_out)["str"]
    assert parse(gpu_out / "triton_repo" / s["name"] / "stream" / "config.pbtxt").model_transaction_policy.decoupled
    s = servers(gpu_out)["pin"]
    cfg = parse(gpu_out / "triton_repo" / s["name"] / "pinned_gpu" / "config.pbtxt")
    assert len(cfg.instance_group) == 1 and list(cfg.instance_group[0].gpus) == [0]
    assert cfg.dynamic_batching.default_queue_policy.default_timeout_microseconds == 50000


class _NoBatchOne(FakePerfModel):
    def batches(self, model):
        return [2, 4, 8]


@pytest.mark.parametrize("workload, perf_model, needle", [
    ("{name: b, model: router_bls, rate: 10, slo_ms: 50}", "gpu", "BLS model"),
    ("{name: k, model: self_placed, rate: 10, slo_ms: 50}", "gpu", "KIND_MODEL"),
    ("{name: c, model: cpu_only, rate: 10, slo_ms: 50}", "gpu", "asks for KIND_CPU"),
    ("{name: p, model: pinned_gpu, rate: 10, slo_ms: 200}", "cpu", "asks for KIND_GPU"),
    ("{name: s, model: accumulate, rate: 20000, slo_ms: 40}", "gpu", "stateful"),
    ("{name: e, model: pipeline, rate: 10, slo_ms: 50}", "no-score", "the performance model lacks 'score'"),
    ("{name: n, model: embed_nobatch, rate: 10, slo_ms: 50}", "no-batch-1", "profiled at batches [2, 4, 8] only"),
    ("{name: s, model: score, rate: 10, slo_ms: 50}", "no-score", "in the repository but not in the performance"),
])
def test_unplannable_models_refused_in_one_line_nothing_written(monkeypatch, tmp_path, workload, perf_model, needle):
    pm = {"gpu": gpu_model(), "cpu": cpu_model(),
          "no-score": FakePerfModel(models={m: LIGHT for m in PLANNED if m != "score"}),
          "no-batch-1": _NoBatchOne(models={m: LIGHT for m in PLANNED})}[perf_model]
    res = provision(monkeypatch, tmp_path, f"workloads:\n  - {workload}\n", pm)
    assert res.exit_code == 2, res.output
    [line] = res.output.strip().splitlines()
    assert needle in line and "To fix:" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit, needle", [
    (("pipeline", 'model_name: "score"', 'model_name: "../score"'), "not a model directory name"),
    (("pipeline", 'model_name: "score"', 'model_name: "missing"'), "which the repository does not have"),
    (("pipeline", 'model_name: "score"', 'model_name: "pipeline"'), "contains the ensemble(s) pipeline"),
    (("tokenize", 'name: "tokenize"', 'name: "tokenizer"'), "differs from its directory 'tokenize'"),
    (("tokenize", "max_batch_size: 8", "max_batch_size: 8 ;;"), "invalid Triton model config"),
])
def test_broken_source_repositories_refused(monkeypatch, tmp_path, edit, needle):
    repo = tmp_path / "zoo"
    shutil.copytree(ZOO, repo)
    model, old, new = edit
    config = repo / model / "config.pbtxt"
    config.write_text(config.read_text().replace(old, new, 1))
    res = provision(monkeypatch, tmp_path, "workloads:\n  - {name: p, model: pipeline, rate: 10, slo_ms: 50}\n",
                    gpu_model(), repo=repo)
    assert res.exit_code == 2, res.output
    [line] = res.output.strip().splitlines()
    assert needle in line and "To fix:" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source, on_gpu, expected", [
    # a stateful model without a batch dimension: one sequence slot per instance, nothing to drive but the group
    ('name: "m" max_batch_size: 0 sequence_batching { max_sequence_idle_microseconds: 9 }',
     False, 'name: "m" instance_group { count: 1 kind: KIND_CPU } '
            'sequence_batching { max_sequence_idle_microseconds: 9 }'),
    # KIND_AUTO with GPUs listed, planned on a CPU host: the plan's kind, no GPUs; the group's name is kept
    ('name: "m" max_batch_size: 4 instance_group { name: "g" kind: KIND_AUTO gpus: [1, 2] count: 3 }',
     False, 'name: "m" max_batch_size: 4 instance_group { name: "g" count: 1 kind: KIND_CPU } '
            'dynamic_batching { preferred_batch_size: 2 max_queue_delay_microseconds: 100 }'),
    # the same on a GPU: the plan's GPU, seen by the server as device 0
    ('name: "m" max_batch_size: 4 instance_group { name: "g" kind: KIND_AUTO gpus: [1, 2] count: 3 }',
     True, 'name: "m" max_batch_size: 4 instance_group { name: "g" count: 1 kind: KIND_GPU gpus: 0 } '
           'dynamic_batching { preferred_batch_size: 2 max_queue_delay_microseconds: 100 }'),
])
def test_derive_config_hand_worked(source, on_gpu, expected):
    from igniter.provisioning.repository import derive_config
    cfg = text_format.Parse(source, mc.ModelConfig())
    derive_config(cfg, None, Placement("srv", "w", 2 if cfg.max_batch_size else 1, 100, 1, on_gpu, None))
    assert cfg == text_format.Parse(expected, mc.ModelConfig())


@pytest.mark.parametrize("replace_with, needle", [("/dev/zero", "is not a regular file"),
                                                   (b"name: \"tokenize\" \xff\xfe", "is not UTF-8 text")])
def test_unreadable_source_config_refused(monkeypatch, tmp_path, replace_with, needle):
    repo = tmp_path / "zoo"
    shutil.copytree(ZOO, repo)
    config = repo / "tokenize" / "config.pbtxt"
    config.unlink()
    if isinstance(replace_with, bytes):
        config.write_bytes(replace_with)
    else:
        config.symlink_to(replace_with)
    res = provision(monkeypatch, tmp_path, "workloads:\n  - {name: p, model: pipeline, rate: 10, slo_ms: 50}\n",
                    gpu_model(), repo=repo)
    assert res.exit_code == 2, res.output
    [line] = res.output.strip().splitlines()
    assert needle in line and "To fix:" in line
    assert not (tmp_path / "out").exists()


def test_rule_check_uses_tritons_wording():
    place = Placement("srv", "w", 2, 100, 1, False, None)
    cfg = text_format.Parse('name: "m" max_batch_size: 4 sequence_batching { oldest { preferred_batch_size: 8 } }'
                            ' instance_group { kind: KIND_CPU }', mc.ModelConfig())
    with pytest.raises(UserError, match="sequence batching preferred batch size must be <= max batch size for m"):
        check_rules(cfg, place, "m")
    cfg = text_format.Parse('name: "m" max_batch_size: 4 instance_group { kind: KIND_CPU gpus: 0 }', mc.ModelConfig())
    with pytest.raises(UserError, match="has kind KIND_CPU but specifies one or more GPUs"):
        check_rules(cfg, place, "m")
    cfg = text_format.Parse('name: "m" max_batch_size: 1 instance_group { kind: KIND_CPU }', mc.ModelConfig())
    with pytest.raises(UserError, match="planned batch 2 exceeds max_batch_size 1"):
        check_rules(cfg, place, "m")


def test_leading_comments():
    assert leading_comments("# a\n#\n\n# b\n\nname: \"x\"\n# later\n") == "# a\n#\n\n# b\n"
    assert leading_comments("name: \"x\"\n# later\n") == ""
    assert leading_comments("# only") == "# only\n"


# ---------------------------------------------------------------- --check (CI mode)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_check_0_when_up_to_date_1_with_diff_2_on_bad_input(monkeypatch, tmp_path):
    assert provision(monkeypatch, tmp_path, GPU_WORKLOADS, gpu_model()).exit_code == 0
    out = tmp_path / "out"
    before = _snapshot(out)
    res = provision(monkeypatch, tmp_path, GPU_WORKLOADS, gpu_model(), "--check")
    assert res.exit_code == 0, res.output
    assert "up to date" in res.output
    assert _snapshot(out) == before, "--check wrote into --out"

    s = servers(out)["nob"]
    config = out / "triton_repo" / s["name"] / "embed_nobatch" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "1.0"', 'string_value: "2.0"'))
    (out / "stray.txt").write_text("left over\n")
    launch = out / "triton_repo" / servers(out)["pipe"]["name"] / "launch.json"
    launch.unlink()
    edited = _snapshot(out)
    res = provision(monkeypatch, tmp_path, GPU_WORKLOADS, gpu_model(), "--check")
    assert res.exit_code == 1
    rel = config.relative_to(out).as_posix()
    assert f"--- out/{rel}" in res.output and f"+++ expected/{rel}" in res.output
    assert '-    string_value: "2.0"' in res.output and '+    string_value: "1.0"' in res.output
    assert "Only in" in res.output and "stray.txt" in res.output
    assert launch.relative_to(out).as_posix() in res.output
    res = provision(monkeypatch, tmp_path, GPU_WORKLOADS, gpu_model(), "--check", "--json")
    assert res.exit_code == 1
    assert json.loads(res.output)["differing"] == sorted([rel, "stray.txt", launch.relative_to(out).as_posix()])
    assert _snapshot(out) == edited, "--check wrote into --out"

    res = provision(monkeypatch, tmp_path, "workloads: []\n", gpu_model(), "--check")
    assert res.exit_code == 2 and "To fix:" in res.output


def test_check_against_missing_out_writes_nothing(monkeypatch, tmp_path):
    res = provision(monkeypatch, tmp_path, GPU_WORKLOADS, gpu_model(), "--check", "--json")
    assert res.exit_code == 1
    assert json.loads(res.output)["up_to_date"] is False
    assert not (tmp_path / "out").exists()


def test_output_is_byte_deterministic(monkeypatch, tmp_path):
    """Two runs write the same bytes, also when the source repository was served in between (the python
    backend leaves __pycache__ in it, which is not the model's and is not copied)."""
    repo = tmp_path / "zoo"
    shutil.copytree(ZOO, repo)
    assert provision(monkeypatch, tmp_path, GPU_WORKLOADS, gpu_model(), out="a", repo=repo).exit_code == 0
    (repo / "stream" / "1" / "__pycache__").mkdir()
    (repo / "stream" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    assert provision(monkeypatch, tmp_path, GPU_WORKLOADS, gpu_model(), out="b", repo=repo).exit_code == 0
    a, b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    a.pop("solve.json"), b.pop("solve.json")
    assert a == b


# ---------------------------------------------------------------- the written repositories on a real Triton


@pytest.mark.integration
def test_written_repositories_apply_and_keep_semantics_on_triton(monkeypatch, tmp_path):
    """`igniter apply` of the CPU plan (it starts every server and verifies the driven fields Triton runs), then
    each model behaves as its source says: sequences accumulate, the ensemble chains its steps, the decoupled
    model streams, the model without a batch dimension takes one unbatched matrix."""
    import tritonclient.grpc as grpcclient

    from igniter.deployment.apply import Deployer, status
    from igniter.deployment.state import load_state
    from igniter.triton.client import TritonClient
    from igniter.triton.server import Endpoints

    res = provision(monkeypatch, tmp_path, CPU_WORKLOADS, cpu_model())
    assert res.exit_code == 0, res.output
    deployer = Deployer(tmp_path / "state" / "state.json", detached=False)
    try:
        deployer.apply(tmp_path / "out" / "plan.json")
        assert status(deployer.state_path)["healthy"]
        running = load_state(deployer.state_path).servers
        for workload, s in sorted(servers(tmp_path / "out").items()):
            endpoints = Endpoints(http=running[s["name"]].http, grpc=running[s["name"]].grpc)
            with TritonClient(endpoints) as client:
                if workload in ("seq", "old"):
                    got = [_sequence_step(client.grpc, s["model"], v, i, 3) for i, v in enumerate([3, 4, 5])]
                    assert got == [3, 7, 12]
                elif workload == "pipe":
                    text = grpcclient.InferInput("TEXT", [1, 6], "INT32")
                    text.set_data_from_numpy(np.arange(1, 7, dtype=np.int32).reshape(1, 6))
                    score = client.grpc.infer("pipeline", [text]).as_numpy("SCORE")
                    assert score.reshape(-1)[0] == pytest.approx(2.1)     # (1 + ... + 6) / 10
                elif workload == "str":
                    assert _stream(client.grpc, 3) == [0, 1, 2], "decoupled: one request, three responses"
                elif workload == "nob":
                    matrix = grpcclient.InferInput("MATRIX", [4, 8], "FP32")
                    matrix.set_data_from_numpy(np.ones((4, 8), dtype=np.float32))
                    assert client.grpc.infer("embed_nobatch", [matrix]).as_numpy("ROWSUM").tolist() == [8.0] * 4
    finally:
        deployer.stop_all()


def _sequence_step(grpc, model: str, value: int, index: int, length: int) -> int:
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("INPUT", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
    result = grpc.infer(model, [tensor], sequence_id=7, sequence_start=index == 0, sequence_end=index == length - 1)
    return int(result.as_numpy("OUTPUT").reshape(-1)[0])


def test_ci_docs_and_hook_run_the_real_check():
    """The workflow and hook in docs/ci.md and .pre-commit-hooks.yaml parse and use options provision has."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    options = {o for p in provision_cli.provision.params for o in p.opts}
    [hook] = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())
    assert hook["entry"] == "igniter provision --check" and hook["pass_filenames"] is False
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", (root / "docs" / "ci.md").read_text(), re.S)]
    workflow, precommit = blocks
    [command] = [s["run"] for s in workflow["jobs"]["plan-up-to-date"]["steps"] if "provision" in s.get("run", "")]
    [used] = [h for r in precommit["repos"] for h in r["hooks"]]
    assert used["id"] == hook["id"]
    for flag in re.findall(r"--[a-z-]+", command) + [a for a in used["args"] if a.startswith("--")]:
        assert flag in options, flag


def _stream(grpc, count: int) -> list[int]:
    """Responses of the decoupled model to one request (gRPC stream; the final flag ends it)."""
    import queue

    import tritonclient.grpc as grpcclient

    got: queue.Queue = queue.Queue()
    grpc.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        tensor = grpcclient.InferInput("COUNT", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[count]], dtype=np.int32))
        grpc.async_stream_infer("stream", [tensor], enable_empty_final_response=True)
        indices = []
        while True:
            result, error = got.get(timeout=60)
            assert error is None, error
            if result.get_response().parameters["triton_final_response"].bool_param:
                return indices
            indices.append(int(result.as_numpy("INDEX").reshape(-1)[0]))
    finally:
        grpc.stop_stream()


def test_ensemble_of_demo_models_with_the_fitted_cpu_model(demo_repo, tmp_path):
    """The real PerfModel (fitted on profiles/cpu-2core): a workload on an ensemble of two demo models is one
    server whose predicted latency is the two steps' latencies predicted together (the fitted model's own
    prediction for that co-located pair), both steps at the server's batch and thread count."""
    from igniter.model import Member, PerfModel

    root = Path(__file__).resolve().parents[1]
    repo = tmp_path / "repo"
    for model in ("convnet", "tinynet"):
        shutil.copytree(demo_repo / model, repo / model, ignore=shutil.ignore_patterns("*.onnx"))
    (repo / "chain").mkdir()
    (repo / "chain" / "config.pbtxt").write_text(
        'name: "chain"\nplatform: "ensemble"\nmax_batch_size: 8\nensemble_scheduling {\n'
        '  step { model_name: "convnet" model_version: -1 }\n  step { model_name: "tinynet" model_version: -1 }\n}\n')
    pm = PerfModel.fit(root / "profiles" / "cpu-2core")
    pm.save(tmp_path / "cpu.model.json")
    (tmp_path / "w.yaml").write_text("workloads:\n  - {name: c, model: chain, rate: 20, slo_ms: 400}\n")
    res = CliRunner().invoke(provision_cli.provision, [
        "--workloads", str(tmp_path / "w.yaml"), "--perf-model", str(tmp_path / "cpu.model.json"),
        "--repo", str(repo), "--out", str(tmp_path / "out"), "--strategy", "igniter"])
    assert res.exit_code == 0, res.output
    [s] = servers(tmp_path / "out").values()
    server = tmp_path / "out" / "triton_repo" / s["name"]
    launch = json.loads((server / "launch.json").read_text())
    assert launch["models"] == ["chain", "convnet", "tinynet"] and s["batch"] <= 8
    together = pm.predict([Member("convnet", s["batch"], s["share"]), Member("tinynet", s["batch"], s["share"])])
    assert s["predicted_latency_ms"] == pytest.approx(sum(p.latency_ms for p in together), abs=1e-3)
    for step in ("convnet", "tinynet"):
        cfg = parse(server / step / "config.pbtxt")
        assert cfg.parameters["threads"].string_value == str(launch["threads"])
        assert list(cfg.dynamic_batching.preferred_batch_size) == [s["batch"]]


def test_stateful_workloads_get_one_server_candidates_only(tmp_path):
    """Without the repository's view the same rate has 1- to 3-server candidates (REPLICA_CHOICES); a stateful
    model keeps the one-server ones, a stateless one keeps them all."""
    from igniter.provisioning import load_problem

    (tmp_path / "w.yaml").write_text("workloads:\n  - {name: s, model: accumulate, rate: 400, slo_ms: 40}\n"
                                     "  - {name: t, model: tokenize, rate: 400, slo_ms: 40}\n")
    (tmp_path / "m.json").write_text("{}")
    problem = load_problem(tmp_path / "w.yaml", tmp_path / "m.json", None, loader=lambda path: gpu_model(),
                           src_repo=ZOO)
    assert {o.replicas for o in problem.options[0]} == {1}
    assert {o.replicas for o in problem.options[1]} == {1, 2, 3}
