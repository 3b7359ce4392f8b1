"""ModelConfig protobuf helpers: exact round trip, driven fields, validation."""

import pytest

from igniter.errors import UserError
from igniter.triton.config import (config_digest, config_from_json, config_json, config_text, driven_fields,
                                   get_parameter, new_model_config, parse_config,
                                   read_config, set_dynamic_batching, set_instance_group, set_parameter, write_config)


def test_round_trip_is_exact(demo_repo, tmp_path):
    text = (demo_repo / "convnet" / "config.pbtxt").read_text()
    cfg = parse_config(text)
    assert config_text(cfg) == text
    write_config(cfg, tmp_path / "config.pbtxt")
    assert (tmp_path / "config.pbtxt").read_text() == text
    assert config_from_json(config_json(cfg)) == cfg


def test_driven_fields(demo_repo):
    cfg = read_config(demo_repo / "mlp" / "config.pbtxt")
    set_instance_group(cfg, 2, "KIND_CPU")
    set_dynamic_batching(cfg, [4, 8], 500)
    set_parameter(cfg, "threads", 2)
    fields = driven_fields(cfg)
    assert fields["instances"] == 2 and fields["kinds"] == ["KIND_CPU"]
    assert fields["preferred_batch_size"] == [4, 8] and fields["max_queue_delay_us"] == 500
    assert fields["parameters"]["threads"] == "2"


def test_bad_values_are_user_errors(demo_repo):
    cfg = read_config(demo_repo / "mlp" / "config.pbtxt")
    with pytest.raises(UserError, match="To fix"):
        set_dynamic_batching(cfg, [64], 100)
    with pytest.raises(UserError, match="To fix"):
        set_instance_group(cfg, 0)
    with pytest.raises(UserError, match="To fix"):
        parse_config("max_batch_size: banana")


def test_demo_zoo_is_deterministic(tmp_path):
    from igniter.triton.demo_zoo import write_demo_repo

    assert write_demo_repo(tmp_path / "a") == write_demo_repo(tmp_path / "b")


def test_setters_hand_worked_against_protobuf_text():
    cfg = new_model_config("m", backend="onnxruntime", max_batch_size=8)
    set_instance_group(cfg, 2, "KIND_GPU", gpus=[0, 1])
    set_dynamic_batching(cfg, [8, 4, 4], 250)          # sorted, duplicates dropped
    set_parameter(cfg, "threads", 3)
    # protobuf's text form, fields in their ModelConfig field-number order
    assert config_text(cfg) == ('name: "m"\nmax_batch_size: 8\ninstance_group {\n  count: 2\n  gpus: 0\n  gpus: 1\n'
                                '  kind: KIND_GPU\n}\ndynamic_batching {\n  preferred_batch_size: 4\n'
                                '  preferred_batch_size: 8\n  max_queue_delay_microseconds: 250\n}\nparameters {\n'
                                '  key: "threads"\n  value {\n    string_value: "3"\n  }\n}\nbackend: "onnxruntime"\n')
    assert driven_fields(cfg) == {"max_batch_size": 8, "instances": 2, "kinds": ["KIND_GPU"],
                                  "preferred_batch_size": [4, 8], "max_queue_delay_us": 250,
                                  "dynamic_batching": True, "sequence_batching": None,
                                  "parameters": {"threads": "3"}}
    set_instance_group(cfg, 1)                           # replaces the group (CPU, no GPU list)
    set_dynamic_batching(cfg, [2], 0)
    assert driven_fields(cfg)["instances"] == 1 and driven_fields(cfg)["kinds"] == ["KIND_CPU"]
    assert list(cfg.instance_group[0].gpus) == [] and driven_fields(cfg)["preferred_batch_size"] == [2]
    assert get_parameter(cfg, "threads") == "3" and get_parameter(cfg, "absent", "dflt") == "dflt"
    assert get_parameter(cfg, "absent") is None


def test_config_text_puts_the_kept_header_before_the_body_with_one_blank_line():
    cfg = new_model_config("m", max_batch_size=2)
    assert config_text(cfg, "# licence\n") == '# licence\n\nname: "m"\nmax_batch_size: 2\nbackend: "python"\n'
    assert config_text(cfg, "") == config_text(cfg) == 'name: "m"\nmax_batch_size: 2\nbackend: "python"\n'


def test_limits_of_the_setters():
    cfg = new_model_config("m", max_batch_size=8)
    set_dynamic_batching(cfg, [8], 10)                   # equal to max_batch_size is allowed
    with pytest.raises(UserError, match=r"\[16\] exceed max_batch_size 8"):
        set_dynamic_batching(cfg, [4, 16], 10)
    unbounded = new_model_config("u")                      # max_batch_size 0: no batching limit to check
    set_dynamic_batching(unbounded, [64], 10)
    set_instance_group(cfg, 1)
    with pytest.raises(UserError, match="KIND_TPU"):
        set_instance_group(cfg, 1, "KIND_TPU")
    assert driven_fields(new_model_config("x"))["instances"] == 1      # no group: Triton runs one
    assert driven_fields(new_model_config("x"))["dynamic_batching"] is False


def test_digest_and_json_forms(tmp_path):
    a = set_dynamic_batching(new_model_config("m", max_batch_size=4), [4], 100)
    b = set_dynamic_batching(new_model_config("m", max_batch_size=4), [4], 100)
    assert config_digest(a) == config_digest(b) and len(config_digest(a)) == 16
    assert config_digest(set_dynamic_batching(b, [4], 101)) != config_digest(a)
    text = config_json(a)
    assert '"max_queue_delay_microseconds": "100"' in text and '"max_batch_size": 4' in text   # proto field names
    assert config_from_json(text) == a and config_from_json({"name": "m", "unknown_field": 1}).name == "m"
    with pytest.raises(UserError, match="no model config"):
        read_config(tmp_path / "missing" / "config.pbtxt")
    write_config(a, tmp_path / "m" / "config.pbtxt")
    assert read_config(tmp_path / "m" / "config.pbtxt") == a


def test_config_error_lines_and_defaults(tmp_path):
    from igniter.triton.config import instance_count

    with pytest.raises(UserError) as err:
        parse_config("max_batch_size: banana")
    assert str(err.value).startswith("invalid Triton model config: ") and \
        str(err.value).endswith(" (config). To fix: fix the config.pbtxt syntax")
    bad = tmp_path / "config.pbtxt"
    bad.write_text("nonsense {")
    with pytest.raises(UserError) as err:
        read_config(bad)
    assert f"({bad}). To fix: fix the config.pbtxt syntax" in str(err.value)
    with pytest.raises(UserError) as err:
        read_config(tmp_path / "none.pbtxt")
    assert str(err.value) == (f"no model config at {tmp_path / 'none.pbtxt'}. To fix: create config.pbtxt or point "
                              "at a model directory that has one")
    cfg = new_model_config("m", max_batch_size=2)
    with pytest.raises(UserError) as err:
        set_instance_group(cfg, 0)
    assert str(err.value) == "instance count 0 for 'm' is below 1. To fix: use at least one instance"
    with pytest.raises(UserError) as err:
        set_instance_group(cfg, 1, "KIND_TPU")
    assert str(err.value) == "unknown instance kind 'KIND_TPU'. To fix: use one of KIND_CPU, KIND_GPU, KIND_AUTO"
    with pytest.raises(UserError) as err:
        set_dynamic_batching(cfg, [4], 1)
    assert str(err.value) == ("preferred batch sizes [4] exceed max_batch_size 2 of 'm'. To fix: raise "
                              "max_batch_size or lower the preferred batch size")
    assert new_model_config("m").backend == "python" and new_model_config("m").max_batch_size == 0
    # a group without a count is one instance in Triton (two groups without counts: two)
    assert instance_count(parse_config("instance_group { kind: KIND_CPU }\ninstance_group { kind: KIND_CPU }")) == 2
    assert instance_count(parse_config("instance_group { count: 3 }")) == 3


def test_json_form_exact_and_unknown_fields_ignored():
    cfg = set_dynamic_batching(new_model_config("m", max_batch_size=4), [4], 100)
    assert config_json(cfg) == ('{"backend": "python", "dynamic_batching": {"max_queue_delay_microseconds": "100", '
                                '"preferred_batch_size": [4]}, "max_batch_size": 4, "name": "m"}')
    assert config_from_json('{"name": "m", "not_a_field": 1}').name == "m"   # Triton's JSON carries extra keys
