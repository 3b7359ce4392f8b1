"""Provisioning inputs: the workloads file and the GPU catalog (YAML), one pydantic schema each (igniter.schema).

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
from typing import Annotated, Any, Callable

from pydantic import Field, StringConstraints

from igniter.errors import UserError
from igniter.provisioning import queueing
from igniter.schema import NAME_MAX, Count, Fraction, NonNegativeFloat, PositiveFloat, SafeName, Strict, load_file


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

    @property
    def path_calibration(self) -> list[dict]:
        """hardware.json's path_overhead rows (queueing.path_overhead_ms); none for uncalibrated hardware."""
        return list((self.perf_model.hardware or {}).get("path_overhead", []))

    def path_terms(self, host_rate_rps: float) -> tuple[float, float]:
        """(queueing.path_overhead_ms, queueing.path_slowdown) on this hardware for a host asked to carry
        ``host_rate_rps``, taken at most at the highest calibrated rate: the calibration says nothing beyond it,
        and a set of 1000 workloads is not one host's traffic (at its total rate the path's CPU alone would fill
        every core and no option remain). (0, 1) for uncalibrated hardware."""
        rows = self.path_calibration
        rate = min(host_rate_rps, max((r["rate_rps"] for r in rows), default=math.inf))
        return (queueing.path_overhead_ms(rows, rate),
                queueing.path_slowdown(rows, rate, (self.perf_model.hardware or {}).get("cores")))


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


# Bounds of the search (candidates.py): a larger input would take the packers hours or all memory.
MAX_SERVERS = 4096          # servers (workload replicas) in one plan
MAX_WORKLOADS = MAX_SERVERS
# Beyond these the queueing model's arithmetic leaves float range (a batcher delay of centuries, an SLO of 1e308 ms)
MIN_RATE = 0.001            # req/s
MAX_SLO_MS = 3_600_000.0    # one hour
MAX_INPUT_BYTES = 2.0 ** 40
MAX_PRICE = 1e9             # per hour: sums of thousands stay far from float overflow
MIN_GBPS, MAX_GBPS = 0.001, 1e6

WORKLOAD_FIX = {
    "name": "give every workload a unique name such as w1 or resnet50-a",
    "model": "name the model to serve (a profiled model name)",
    "rate": f"set rate to the expected requests per second (a number >= {MIN_RATE:g})",
    "slo_ms": f"set slo_ms to the p99 latency budget in milliseconds (a number > 0, at most {MAX_SLO_MS:g})",
    "accuracy": "give the model's accuracy as a fraction in [0, 1]",
    "input_bytes": "give the request size in bytes (>= 0) or leave it out",
    "variants": "write `variants: [{model: m, accuracy: 0.7}]`",
    "accuracy_weight": "set accuracy_weight to a number >= 0 or leave it out",
    "workloads": "write `workloads: [...]` with one `{name: w1, model: m, rate: 100, slo_ms: 50}` per workload",
    "": "see the workloads format at the top of igniter/provisioning/workloads.py",
}
CATALOG_FIX = {
    "type": "name the GPU type, e.g. V100",
    "price_per_hour": f"set price_per_hour to a number >= 0 (at most {MAX_PRICE:g})",
    "max_count": "set max_count to how many such GPUs may be used (an integer >= 1) or leave it out: unbounded",
    "memory_mb": "set memory_mb (> 0) or leave it out",
    "network_gbps": f"set network_gbps ({MIN_GBPS:g} to {MAX_GBPS:g}) or leave it out",
    "perf_model": "give the perf model file of this GPU type (from `igniter fit`), relative to the catalog",
    "gpus": "write `gpus: [...]` with one `{type: V100, price_per_hour: 3.06, perf_model: v100.json}` per type",
    "": "see the catalog format at the top of igniter/provisioning/workloads.py",
}


class VariantEntry(Strict):
    model: SafeName
    accuracy: Fraction


class WorkloadEntry(Strict):
    name: SafeName
    model: SafeName
    rate: Annotated[float, Field(ge=MIN_RATE)]     # large rates are bounded by the search (MAX_REPLICAS)
    slo_ms: Annotated[float, Field(gt=0, le=MAX_SLO_MS)]
    accuracy: Fraction = 1.0
    input_bytes: Annotated[float, Field(ge=0, le=MAX_INPUT_BYTES)] = 0.0
    variants: list[VariantEntry] = []


class WorkloadsFile(Strict):
    """The workloads YAML (see the module docstring)."""
    accuracy_weight: NonNegativeFloat = 0.0
    workloads: Annotated[list[WorkloadEntry], Field(min_length=1, max_length=MAX_WORKLOADS)]


class GpuEntry(Strict):
    type: SafeName
    price_per_hour: Annotated[float, Field(ge=0, le=MAX_PRICE)]
    max_count: Count | None = None
    memory_mb: PositiveFloat | None = None
    network_gbps: Annotated[float, Field(ge=MIN_GBPS, le=MAX_GBPS)] = 10.0
    perf_model: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class CatalogFile(Strict):
    """The GPU catalog YAML (see the module docstring)."""
    gpus: Annotated[list[GpuEntry], Field(min_length=1, max_length=1024)]


def load_workloads(path: str | Path, known_models: set[str]) -> WorkloadSet:
    """Parse and validate a workloads file against the models the perf model(s) know."""
    path = Path(path)
    parsed = load_file(WorkloadsFile, path, "workloads file", WORKLOAD_FIX)
    _refuse_duplicates([w.name for w in parsed.workloads], "workloads", "name", "give every workload a unique name",
                       path.name)
    workloads = []
    for i, w in enumerate(parsed.workloads):
        where = f"workloads[{i}] {w.name!r}"
        _known(w.model, f"{where}.model", known_models, path.name)
        for j, v in enumerate(w.variants):
            _known(v.model, f"{where}.variants[{j}].model", known_models, path.name)
        workloads.append(Workload(w.name, w.model, w.rate, w.slo_ms, w.accuracy, w.input_bytes,
                                  tuple(Variant(v.model, v.accuracy) for v in w.variants)))
    return WorkloadSet(tuple(workloads), parsed.accuracy_weight)


def _refuse_duplicates(names: list[str], top: str, key: str, fix: str, src: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise UserError(f"{top}[{i}].{key} {name!r} is used twice", fix, src)
        seen.add(name)


def _known(model: str, where: str, known_models: set[str], src: str) -> None:
    if model not in known_models:
        raise UserError(f"{where} {model!r} is not in the performance model (knows {', '.join(sorted(known_models))})",
                        "use a profiled model name or profile the model and re-run `igniter fit`", src)


def load_catalog(path: str | Path, loader: Callable[[Path], Any] = load_perf_model) -> list[GpuType]:
    """Parse the GPU catalog; each type's perf model is loaded from a path relative to the catalog."""
    path = Path(path)
    parsed = load_file(CatalogFile, path, "GPU catalog", CATALOG_FIX)
    _refuse_duplicates([g.type for g in parsed.gpus], "gpus", "type", "list each GPU type once", path.name)
    types: list[GpuType] = []
    for i, g in enumerate(parsed.gpus):
        model_path = path.parent / g.perf_model
        if not model_path.is_file():
            raise UserError(f"gpus[{i}] {g.type!r}.perf_model {g.perf_model!r} does not exist (looked at {model_path})",
                            "fit a model with `igniter fit` and give its path relative to the catalog", path.name)
        types.append(GpuType(g.type, g.price_per_hour, g.max_count, loader(model_path), g.memory_mb, g.network_gbps))
    return types


def default_catalog(perf_model: Any) -> list[GpuType]:
    """No catalog: one type, the perf model's hardware, price 1.0 per hour, as many as needed."""
    hw = perf_model.hardware or {}
    return [GpuType(safe_type_name(str(hw.get("name") or "gpu")), 1.0, None, perf_model, hw.get("memory_mb"))]


def safe_type_name(hardware_name: str) -> str:
    """hardware.json's free-text name ("AMD EPYC") as a type name within schema.SafeName ("AMD-EPYC")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", hardware_name).strip("-._")[:NAME_MAX] or "gpu"


def known_models(types: list[GpuType]) -> set[str]:
    return {m for t in types for m in t.perf_model.models}
