"""Provisioning inputs: the workloads file and the GPU catalog (YAML), validated field by field.

Workloads file::

    accuracy_weight: 0.0            # optional: cost units traded per unit of accuracy (variants)
    workloads:
      - {name: w1, model: resnet50, rate: 400, slo_ms: 40}
      - name: w2
        model: resnet50
        rate: 200                   # requests per second
        slo_ms: 60                  # p99 end-to-end latency budget
        accuracy: 0.761             # optional accuracy of `model` (only matters with variants)
        input_bytes: 602112         # optional request size, for the transfer term of the latency model
        variants: [{model: resnet18, accuracy: 0.698}]   # optional cheaper models that may serve it

GPU catalog (optional; default: one type = the perf model's hardware, price 1.0, unbounded count)::

    gpus:
      - {type: V100, price_per_hour: 3.06, max_count: 8, perf_model: v100.model.json, memory_mb: 16384}

``perf_model`` paths are relative to the catalog file. Every error names the field and file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from igniter.errors import UserError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Variant:
    model: str
    accuracy: float


@dataclass(frozen=True)
class Workload:
    name: str
    model: str
    rate: float
    slo_ms: float
    accuracy: float = 1.0
    input_bytes: float = 0.0
    variants: tuple[Variant, ...] = ()

    def models(self) -> list[Variant]:
        """The primary model first, then the variants that may serve this workload instead."""
        return [Variant(self.model, self.accuracy), *self.variants]


@dataclass(frozen=True)
class GpuType:
    type: str
    price_per_hour: float
    max_count: int | None          # None: unbounded
    perf_model: Any                 # igniter.model.PerfModel (or anything with its API)
    memory_mb: float | None = None
    network_gbps: float = 10.0      # client -> server link, for the request transfer term

    @property
    def kind(self) -> str:
        return str(self.perf_model.hardware.get("kind", "gpu"))


@dataclass(frozen=True)
class WorkloadSet:
    workloads: tuple[Workload, ...]
    accuracy_weight: float = 0.0


def load_perf_model(path: str | Path) -> Any:
    """Load a fitted performance model file (indirection so tests can substitute a fake)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no performance model file at {path}", "run `igniter fit` first or fix the --perf-model path")
    from igniter.model import PerfModel  # imported here: the model stage is heavy (xgboost)

    return PerfModel.load(path)


def _read_yaml(path: Path, top_key: str) -> dict:
    if not path.exists():
        raise UserError(f"file {path} does not exist", "fix the path")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path.name}: {err}", "give a readable UTF-8 YAML file", str(path)) from err
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else "syntax error"
        raise UserError(f"{path.name} is not valid YAML: {first}", "fix the YAML syntax", str(path)) from err
    if not isinstance(data, dict) or not isinstance(data.get(top_key), list) or not data[top_key]:
        raise UserError(f"{path.name} needs a non-empty `{top_key}:` list at the top level",
                        f"write `{top_key}: [...]` with one entry per item", str(path))
    return data


def _field(item: dict, key: str, where: str, src: str, convert: Callable[[Any], Any], check: Callable[[Any], bool],
           rule: str, fix: str, default: Any = ...) -> Any:
    if not isinstance(item, dict):
        raise UserError(f"{where} must be a mapping", "write each entry as `{key: value, ...}`", src)
    if key not in item or item[key] is None:
        if default is not ...:
            return default
        raise UserError(f"{where}.{key} is missing", fix, src)
    try:
        value = convert(item[key])
    except (TypeError, ValueError):
        raise UserError(f"{where}.{key} = {item[key]!r} {rule}", fix, src) from None
    if isinstance(value, float) and not math.isfinite(value) or not check(value):
        raise UserError(f"{where}.{key} = {item[key]!r} {rule}", fix, src)
    return value


def _positive(item: dict, key: str, where: str, src: str, fix: str, default: Any = ...) -> float:
    return _field(item, key, where, src, float, lambda v: v > 0, "must be > 0", fix, default)


def _name(item: dict, key: str, where: str, src: str, fix: str) -> str:
    return _field(item, key, where, src, str, lambda v: bool(v.strip()), "must be a non-empty string", fix)


def load_workloads(path: str | Path, known_models: set[str]) -> WorkloadSet:
    """Parse and validate a workloads file against the models the perf model(s) know."""
    path = Path(path)
    src = path.name
    data = _read_yaml(path, "workloads")
    weight = _field(data, "accuracy_weight", "accuracy_weight", src, float, lambda v: v >= 0, "must be >= 0",
                    "set accuracy_weight to a non-negative number", 0.0)
    workloads: list[Workload] = []
    seen: set[str] = set()
    for i, item in enumerate(data["workloads"]):
        where = f"workloads[{i}]"
        name = _field(item, "name", where, src, str, lambda v: bool(_SAFE_NAME.match(v)),
                      "must be letters, digits, '.', '_' or '-' (it names server directories)",
                      "give every workload a unique name such as w1 or resnet50-a")
        if name in seen:
            raise UserError(f"{where}.name {name!r} is used twice", "give every workload a unique name", src)
        seen.add(name)
        model = _model(item, "model", where, src, known_models)
        rate = _positive(item, "rate", where, src, "set rate to the expected requests per second (> 0)")
        slo = _positive(item, "slo_ms", where, src, "set slo_ms to the p99 latency budget in milliseconds (> 0)")
        accuracy = _field(item, "accuracy", where, src, float, lambda v: 0 <= v <= 1, "must be in [0, 1]",
                          "give the model's accuracy as a fraction", 1.0)
        input_bytes = _field(item, "input_bytes", where, src, float, lambda v: v >= 0, "must be >= 0",
                             "give the request size in bytes (or leave it out)", 0.0)
        variants = _variants(item, where, src, known_models)
        workloads.append(Workload(name, model, rate, slo, accuracy, input_bytes, variants))
    return WorkloadSet(tuple(workloads), weight)


def _model(item: dict, key: str, where: str, src: str, known_models: set[str]) -> str:
    model = _name(item, key, where, src, "name the model to serve")
    if model not in known_models:
        raise UserError(f"{where}.{key} {model!r} is not in the performance model (knows {', '.join(sorted(known_models))})",
                        "use a profiled model name or profile the model and re-run `igniter fit`", src)
    return model


def _variants(item: dict, where: str, src: str, known_models: set[str]) -> tuple[Variant, ...]:
    raw = item.get("variants") or []
    if not isinstance(raw, list):
        raise UserError(f"{where}.variants must be a list", "write `variants: [{model: m, accuracy: 0.7}]`", src)
    out = []
    for j, v in enumerate(raw):
        vwhere = f"{where}.variants[{j}]"
        model = _model(v, "model", vwhere, src, known_models)
        acc = _field(v, "accuracy", vwhere, src, float, lambda a: 0 <= a <= 1, "must be in [0, 1]",
                     "give the variant's accuracy as a fraction")
        out.append(Variant(model, acc))
    return tuple(out)


def load_catalog(path: str | Path, loader: Callable[[Path], Any] = load_perf_model) -> list[GpuType]:
    """Parse the GPU catalog; each type's perf model is loaded from a path relative to the catalog."""
    path = Path(path)
    src = path.name
    data = _read_yaml(path, "gpus")
    types: list[GpuType] = []
    for i, item in enumerate(data["gpus"]):
        where = f"gpus[{i}]"
        name = _name(item, "type", where, src, "name the GPU type, e.g. V100")
        if any(t.type == name for t in types):
            raise UserError(f"{where}.type {name!r} is listed twice", "list each GPU type once", src)
        price = _positive(item, "price_per_hour", where, src, "set price_per_hour (> 0)")
        count = _field(item, "max_count", where, src, int, lambda v: v >= 1, "must be an integer >= 1",
                       "set max_count to how many such GPUs may be used (or leave it out: unbounded)", None)
        memory = _positive(item, "memory_mb", where, src, "set memory_mb (> 0) or leave it out", None)
        gbps = _positive(item, "network_gbps", where, src, "set network_gbps (> 0) or leave it out", 10.0)
        model_rel = _name(item, "perf_model", where, src, "give the perf model file of this GPU type (from `igniter fit`)")
        model_path = (path.parent / model_rel)
        if not model_path.exists():
            raise UserError(f"{where}.perf_model {model_rel!r} does not exist (looked at {model_path})",
                            "fit a model with `igniter fit` and give its path relative to the catalog", src)
        types.append(GpuType(name, price, count, loader(model_path), memory, gbps))
    return types


def default_catalog(perf_model: Any) -> list[GpuType]:
    """No catalog: one type, the perf model's hardware, price 1.0 per hour, as many as needed."""
    hw = perf_model.hardware or {}
    return [GpuType(str(hw.get("name", "gpu")), 1.0, None, perf_model, hw.get("memory_mb"))]


def known_models(types: list[GpuType]) -> set[str]:
    return {m for t in types for m in t.perf_model.models}
