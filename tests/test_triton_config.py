"""ModelConfig protobuf helpers: exact round trip, driven fields, validation."""

import pytest

from igniter.errors import UserError
from igniter.triton.config import (config_from_json, config_json, config_text, driven_fields, parse_config,
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
