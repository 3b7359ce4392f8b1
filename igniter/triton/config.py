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
from igniter.schema import read_text

ModelConfig = mc.ModelConfig
KINDS = {"KIND_CPU": mc.ModelInstanceGroup.KIND_CPU, "KIND_GPU": mc.ModelInstanceGroup.KIND_GPU,
         "KIND_AUTO": mc.ModelInstanceGroup.KIND_AUTO}


def parse_config(text: str, where: str = "config") -> ModelConfig:
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as err:
        raise UserError(f"invalid Triton model config: {err}", "fix the config.pbtxt syntax", where) from err


def read_config(path: str | Path) -> ModelConfig:
    return read_config_with_header(path)[0]


def read_config_with_header(path: str | Path) -> tuple[ModelConfig, str]:
    """The config and its leading comment block (a license header, say), which protobuf would drop."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no model config at {path}", "create config.pbtxt or point at a model directory that has one")
    text = read_text(path, "model config")
    return parse_config(text, str(path)), leading_comments(text)


def leading_comments(text: str) -> str:
    """The comment lines (and blank lines between them) at the top of a config.pbtxt, with their newlines."""
    lines = text.splitlines(keepends=True)
    end = 0
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            end = i + 1
        elif line.strip():
            break
    block = "".join(lines[:end])
    return block if not block or block.endswith("\n") else block + "\n"


def config_text(cfg: ModelConfig, header: str = "") -> str:
    """protobuf text form (map entries sorted, so byte-deterministic), after the kept header with one blank line."""
    body = text_format.MessageToString(cfg)
    return f"{header}\n{body}" if header else body


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
        "sequence_batching": sequence_fields(cfg) if cfg.HasField("sequence_batching") else None,
        "parameters": {k: v.string_value for k, v in sorted(cfg.parameters.items())},
    }


def sequence_fields(cfg: ModelConfig) -> dict:
    """The sequence batcher's fields igniter drives: its strategy and how it forms batches."""
    seq = cfg.sequence_batching
    if seq.HasField("oldest"):
        return {"strategy": "oldest", "max_candidate_sequences": seq.oldest.max_candidate_sequences,
                "preferred_batch_size": list(seq.oldest.preferred_batch_size),
                "max_queue_delay_us": seq.oldest.max_queue_delay_microseconds}
    return {"strategy": "direct", "max_queue_delay_us": seq.direct.max_queue_delay_microseconds,
            "minimum_slot_utilization": seq.direct.minimum_slot_utilization}
