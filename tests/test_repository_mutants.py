"""igniter/provisioning/repository.py on source repositories written by hand in tmp_path: the exact refusal lines,
the sequence batcher at batch 1, BLS detection in files that are not UTF-8, and the folded ensemble prediction.
Written to kill the sampled mutants of repository.py (docs/mutation/provisioning.md)."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from igniter.errors import UserError
from igniter.provisioning.repository import (Placement, RepositoryPerfModel, _Prediction, _sends_requests,
                                             derive_config, source_models)
from igniter.provisioning.strategy import Member
from tests.simple_perf_model import Model, SimplePerfModel

PLAIN = 'backend: "python" max_batch_size: 8'


def model_dir(repo, name: str, config: str, code: bytes | None = None):
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(f'name: "{name}" {config}\n')
    if code is not None:
        (repo / name / "1" / "model.py").write_bytes(code)
    return repo / name


def ensemble(*steps: str) -> str:
    return 'platform: "ensemble" max_batch_size: 8 ensemble_scheduling { ' + " ".join(
        f'step {{ model_name: "{s}" model_version: -1 }}' for s in steps) + " }"


def refusal(repo, names) -> str:
    with pytest.raises(UserError) as err:
        source_models(repo, set(names))
    return str(err.value)


def test_a_nested_ensemble_is_refused_naming_the_outer_config(tmp_path):
    model_dir(tmp_path, "a", PLAIN)
    model_dir(tmp_path, "inner", ensemble("a"))
    model_dir(tmp_path, "outer", ensemble("inner", "a"))
    assert refusal(tmp_path, ["outer"]) == (f"ensemble 'outer' contains the ensemble(s) inner "
                                            f"({tmp_path / 'outer' / 'config.pbtxt'}). To fix: flatten nested "
                                            "ensembles into one ensemble of plain models")


def test_ensemble_step_refusals_are_these_lines(tmp_path):
    model_dir(tmp_path, "a", PLAIN)
    model_dir(tmp_path, "bad", ensemble("a", "../x"))
    model_dir(tmp_path, "gap", ensemble("a", "missing", "gone"))
    assert refusal(tmp_path, ["bad"]) == (
        f"ensemble 'bad' names the composing model '../x', not a model directory name "
        f"({tmp_path / 'bad' / 'config.pbtxt'}). To fix: name composing models with letters, digits, '.', '_' or '-', "
        "starting with a letter or digit, at most 64 characters")
    assert refusal(tmp_path, ["gap"]) == (
        f"ensemble 'gap' uses missing, gone, which the repository does not have ({tmp_path / 'gap' / 'config.pbtxt'})."
        " To fix: add the composing models to the repository")


@pytest.mark.parametrize("config, expected", [
    ('max_batch_size: 8 instance_group { kind: KIND_MODEL }',
     "model 'm' has an instance group of kind KIND_MODEL (it places its own instances) ({where}). To fix: use "
     "KIND_GPU, KIND_CPU or KIND_AUTO so igniter can place it, or leave it out of the plan"),
    ('max_batch_size: 8 instance_group { kind: KIND_GPU passive: true }',
     "model 'm' has a passive instance group (instances no scheduler uses) ({where}). To fix: drop `passive: true` "
     "or leave the model out of the plan"),
    ('max_batch_size: 8 instance_group { kind: KIND_GPU count: 1 } instance_group { kind: KIND_CPU count: 2 }',
     "model 'm' has 2 instance groups that differ in more than count and GPUs ({where}). To fix: merge them into one "
     "instance_group (igniter plans one group per server)"),
])
def test_unplannable_instance_groups_are_these_lines(tmp_path, config, expected):
    model_dir(tmp_path, "m", config)
    assert refusal(tmp_path, ["m"]) == expected.format(where=tmp_path / "m" / "config.pbtxt")


def test_groups_that_differ_in_count_gpus_and_name_only_are_one(tmp_path):
    model_dir(tmp_path, "m", 'max_batch_size: 8 instance_group { name: "x" kind: KIND_GPU count: 1 gpus: 0 } '
                             'instance_group { name: "y" kind: KIND_GPU count: 3 gpus: 1 }')
    assert list(source_models(tmp_path, {"m"})) == ["m"]


def test_a_bls_model_is_found_in_a_file_that_is_not_utf8(tmp_path):
    # bytes that are not UTF-8 around the call: read with replacement characters, the call is still found
    bls = model_dir(tmp_path, "bls", PLAIN, b"\xff\xfe import x\nr = pb_utils.InferenceRequest (model_name='a')\n")
    assert _sends_requests(bls)
    quiet = model_dir(tmp_path, "quiet", PLAIN, b"\xff\xfe def execute(self, requests):\n    return []\n")
    assert not _sends_requests(quiet)
    assert refusal(tmp_path, ["bls"]) == (
        f"model 'bls' is a BLS model (its python code sends inference requests to other models, which igniter cannot "
        f"see) ({tmp_path / 'bls' / 'config.pbtxt'}). To fix: serve the pipeline as an ensemble, or plan the models "
        "it calls and leave it out")


def test_the_sequence_batcher_is_left_alone_at_batch_1():
    # batch 1: one sequence per batch, nothing to form; the source's oldest-first settings stay as they are
    source = ('name: "m" max_batch_size: 4 sequence_batching { oldest { max_candidate_sequences: 3 '
              'preferred_batch_size: 2 max_queue_delay_microseconds: 7 } }')
    cfg = text_format.Parse(source, mc.ModelConfig())
    derive_config(cfg, None, Placement("srv", "w", 1, 100, 1, False, None))
    expected = text_format.Parse(source + " instance_group { count: 1 kind: KIND_CPU }", mc.ModelConfig())
    assert cfg == expected
    cfg = text_format.Parse(source, mc.ModelConfig())
    derive_config(cfg, None, Placement("srv", "w", 2, 100, 1, False, None))   # batch 2: driven
    assert (list(cfg.sequence_batching.oldest.preferred_batch_size),
            cfg.sequence_batching.oldest.max_queue_delay_microseconds,
            cfg.sequence_batching.oldest.max_candidate_sequences) == ([2], 100, 3)


def test_an_ensemble_prediction_is_folded_at_the_members_batch_and_share(tmp_path):
    # steps a (1 ms base) and b (3 ms base) alone at 50 % of 4 cores: 2 ms and 6 ms, no interference between them
    model_dir(tmp_path, "a", PLAIN)
    model_dir(tmp_path, "b", PLAIN)
    model_dir(tmp_path, "ens", ensemble("a", "b"))
    pm = RepositoryPerfModel(SimplePerfModel({"a": Model(1.0, 0.0, 0.0), "b": Model(3.0, 0.0, 0.0)}, cores=4),
                             source_models(tmp_path, {"ens"}))
    [[ens, plain]] = pm.predict_sets([[Member("ens", 1, 50.0), Member("a", 1, 25.0)]])
    assert ens == _Prediction("ens", 1, 50.0, pytest.approx(8.0), pytest.approx(1000.0 / 6.0))
    assert (plain.model, plain.share, plain.latency_ms) == ("a", 25.0, pytest.approx(4.0))


def test_a_stateful_model_split_over_servers_is_refused_in_one_line():
    cfg = text_format.Parse('name: "m" max_batch_size: 4 sequence_batching { direct { } }', mc.ModelConfig())
    with pytest.raises(UserError) as err:
        derive_config(cfg, None, Placement("srv", "w", 2, 100, 3, False, None))
    assert str(err.value) == ("model 'm' is stateful (sequence_batching) and workload 'w' was split over 3 servers, "
                              "but every request of a sequence must reach the server that holds its state. To fix: "
                              "raise the workload's slo_ms or use a faster GPU type so one server carries it")


def test_an_ensembles_batch_forms_at_its_first_step_only(tmp_path):
    from igniter.provisioning.repository import write_server_models

    src = tmp_path / "src"
    model_dir(src, "a", PLAIN)
    model_dir(src, "b", PLAIN)
    model_dir(src, "ens", ensemble("a", "b"))
    out = tmp_path / "out"
    out.mkdir()
    assert write_server_models(out, "ens", Placement("srv", "w", 4, 500, 1, False, None), src) == ["ens", "a", "b"]
    configs = {m: text_format.Parse((out / m / "config.pbtxt").read_text(), mc.ModelConfig()) for m in ("a", "b")}
    assert [(list(c.dynamic_batching.preferred_batch_size), c.dynamic_batching.max_queue_delay_microseconds)
            for c in configs.values()] == [([4], 500), ([4], 0)]
    assert (out / "ens" / "config.pbtxt").read_text() == (src / "ens" / "config.pbtxt").read_text()


def test_a_stateful_workload_that_needs_several_servers_is_refused_in_one_line(tmp_path):
    from types import SimpleNamespace

    from igniter.provisioning.repository import keep_stateful_on_one_server
    from igniter.provisioning.workloads import Workload

    model_dir(tmp_path, "seq", 'max_batch_size: 4 sequence_batching { direct { } }')
    pm = RepositoryPerfModel(SimplePerfModel({"seq": Model(1.0, 0.0)}), source_models(tmp_path, {"seq"}))
    problem = SimpleNamespace(types=[SimpleNamespace(perf_model=pm)], workloads=[Workload("w", "seq", 900.0, 10.0)],
                              options=[[SimpleNamespace(model="seq", replicas=3), SimpleNamespace(model="seq",
                                                                                                   replicas=2)]])
    with pytest.raises(UserError) as err:
        keep_stateful_on_one_server(problem)
    assert str(err.value) == ("workload 'w' needs 2 servers at 900 req/s, but its model 'seq' is stateful "
                              "(sequence_batching): every request of a sequence must reach the one server that holds "
                              "its state (workloads). To fix: split its sequences over several workloads with a lower "
                              "rate each, or use a faster GPU type")
