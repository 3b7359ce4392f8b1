"""Triton model configuration through tritonclient's ModelConfig protobuf (never string templates).

Text form is protobuf text_format, so read -> write round-trips exactly; JSON form (for the repository API's
config override) is protobuf json_format.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from igniter.atomic import atomic_write
from igniter.errors import UserError

ModelConfig = mc.ModelConfig
KINDS = {"KIND_CPU": mc.ModelInstanceGroup.KIND_CPU, "KIND_GPU": mc.ModelInstanceGroup.KIND_GPU,
         "KIND_AUTO": mc.ModelInstanceGroup.KIND_AUTO}


def parse_config(text: str, where: str = "config") -> ModelConfig:
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as err:
        raise UserError(f"invalid Triton model config: {err}", "fix the config.pbtxt syntax", where) from err


def read_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    if not path.exists():
        raise UserError(f"no model config at {path}", "create config.pbtxt or point at a model directory that has one")
    return parse_config(path.read_text(), str(path))


def config_text(cfg: ModelConfig) -> str:
    return text_format.MessageToString(cfg)


def write_config(cfg: ModelConfig, path: str | Path) -> None:
    """Write config.pbtxt atomically (temp file in the same directory, then rename)."""
    atomic_write(path, config_text(cfg))


def config_json(cfg: ModelConfig) -> str:
    """The JSON the repository API's load(config=...) override expects."""
    return json_format.MessageToJson(cfg, preserving_proto_field_name=True, indent=None, sort_keys=True)


def config_from_json(text: str | dict) -> ModelConfig:
    if isinstance(text, dict):
        return json_format.ParseDict(text, mc.ModelConfig(), ignore_unknown_fields=True)
    return json_format.Parse(text, mc.ModelConfig(), ignore_unknown_fields=True)


def config_digest(cfg: ModelConfig) -> str:
    return hashlib.sha256(config_text(cfg).encode()).hexdigest()[:16]


def new_model_config(name: str, backend: str = "python", max_batch_size: int = 0) -> ModelConfig:
    return mc.ModelConfig(name=name, backend=backend, max_batch_size=max_batch_size)


def set_instance_group(cfg: ModelConfig, count: int, kind: str = "KIND_CPU", gpus: list[int] | None = None) -> ModelConfig:
    if count < 1:
        raise UserError(f"instance count {count} for {cfg.name!r} is below 1", "use at least one instance")
    if kind not in KINDS:
        raise UserError(f"unknown instance kind {kind!r}", f"use one of {', '.join(KINDS)}")
    del cfg.instance_group[:]
    group = cfg.instance_group.add(count=count, kind=KINDS[kind])
    group.gpus.extend(gpus or [])
    return cfg


def set_dynamic_batching(cfg: ModelConfig, preferred_batch_sizes: list[int], max_queue_delay_us: int) -> ModelConfig:
    over = [b for b in preferred_batch_sizes if cfg.max_batch_size and b > cfg.max_batch_size]
    if over:
        raise UserError(f"preferred batch sizes {over} exceed max_batch_size {cfg.max_batch_size} of {cfg.name!r}",
                        "raise max_batch_size or lower the preferred batch size")
    cfg.dynamic_batching.Clear()
    cfg.dynamic_batching.preferred_batch_size.extend(sorted(set(preferred_batch_sizes)))
    cfg.dynamic_batching.max_queue_delay_microseconds = int(max_queue_delay_us)
    return cfg


def set_parameter(cfg: ModelConfig, key: str, value: str | int | float) -> ModelConfig:
    cfg.parameters[key].string_value = str(value)
    return cfg


def get_parameter(cfg: ModelConfig, key: str, default: str | None = None) -> str | None:
    return cfg.parameters[key].string_value if key in cfg.parameters else default


def instance_count(cfg: ModelConfig) -> int:
    return sum(g.count or 1 for g in cfg.instance_group) or 1


def driven_fields(cfg: ModelConfig) -> dict:
    """The fields igniter drives, as plain data (for verification and diffs)."""
    return {
        "max_batch_size": cfg.max_batch_size,
        "instances": instance_count(cfg),
        "kinds": sorted(mc.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group),
        "preferred_batch_size": list(cfg.dynamic_batching.preferred_batch_size),
        "max_queue_delay_us": cfg.dynamic_batching.max_queue_delay_microseconds,
        "dynamic_batching": cfg.HasField("dynamic_batching"),
        "parameters": {k: v.string_value for k, v in sorted(cfg.parameters.items())},
    }
