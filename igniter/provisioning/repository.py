"""A server's model configs derived from a source Triton model repository, keeping each model's semantics.

The plan drives only: the instance group (count 1: one instance per server, what the profiles measure; kind;
GPU); how batches form (dynamic_batching on a stateless batching model, the sequence batcher's own fields on a
stateful one); the ``threads`` parameter on a CPU host. Everything else in a source config (inputs, outputs,
reshape, labels, parameters, optimization, warmup, version policy, response cache, transaction policy, rate
limiter, backend/platform) and its leading comment block is kept. What cannot be planned without changing a
model's meaning is refused with one line naming the model and why, before anything is written:

- max_batch_size 0 (no batch dimension): planned at batch 1 (``RepositoryPerfModel.batches``), no batcher added;
- sequence_batching: kept; batch b is expressed through its strategy (oldest: preferred size b, at least b
  candidate sequences, the queue delay; direct: the queue delay and a minimum slot utilisation of b/max batch);
  a stateful workload is planned on one server (keep_stateful_on_one_server: a sequence's requests must all
  reach the server holding its state), refused when one server cannot carry it;
- an ensemble has no instances: it is served by one server holding it (config copied byte for byte) and its
  composing models, each planned at the workload's rate (``RepositoryPerfModel``: the steps' latencies add up,
  so the SLO is split between them, and the slowest step's throughput is the pipeline's); the batch forms at
  the first step (it gets the queue delay, later steps none);
- decoupled and python models keep their transaction policy and backend; a BLS model (python code that sends
  inference requests to models igniter cannot see) is refused;
- instance groups: KIND_AUTO (or none) takes the plan's kind, and so does KIND_CPU/KIND_GPU where it is that
  kind already; a KIND_CPU step of an ensemble stays on the CPU; KIND_CPU on a GPU plan, KIND_GPU on a CPU plan,
  KIND_MODEL, passive groups and groups that differ in more than count and GPUs are refused; an explicit
  ``gpus`` list is replaced by the plan's GPU (the server sees only that one, as device 0).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from igniter.errors import UserError
from igniter.ownership import child_of
from igniter.schema import NAME_MAX, NAME_PATTERN, NAME_RULE
from igniter.triton.config import ModelConfig, config_text, mc, new_model_config, read_config_with_header, set_parameter

ENSEMBLE_PLATFORM = "ensemble"
_BLS_CALL = re.compile(r"\bInferenceRequest\s*\(")


@dataclass(frozen=True)
class SourceModel:
    """One model of the source repository: its directory, config and the config's leading comment block."""
    name: str
    path: Path
    config: ModelConfig
    header: str

    @property
    def is_ensemble(self) -> bool:
        return self.config.platform == ENSEMBLE_PLATFORM or self.config.HasField("ensemble_scheduling")

    @property
    def steps(self) -> list[str]:
        """Composing models of an ensemble, each once, in step order."""
        return list(dict.fromkeys(s.model_name for s in self.config.ensemble_scheduling.step))

    @property
    def batch_limit(self) -> int:
        """Largest batch the model accepts: 1 without a batch dimension (max_batch_size 0)."""
        return max(1, int(self.config.max_batch_size))

    @property
    def where(self) -> str:
        return str(self.path / "config.pbtxt")


def source_model(repo: str | Path | None, name: str) -> SourceModel | None:
    """The source repository's model `name`, or None when there is no repository or no config for it."""
    if repo is None:
        return None
    path = child_of(Path(repo), name, "model name", f"name models with {NAME_RULE}")
    if not (path / "config.pbtxt").exists():
        return None
    cfg, header = read_config_with_header(path / "config.pbtxt")
    if cfg.name and cfg.name != name:
        raise UserError(f"config name {cfg.name!r} differs from its directory {name!r}",
                        f"set name: \"{name}\" (Triton requires the directory name)", str(path / "config.pbtxt"))
    return SourceModel(name, path, cfg, header)


def source_models(repo: str | Path | None, names: set[str]) -> dict[str, SourceModel]:
    """The named models of the source repository and, for ensembles, their composing models; each checked."""
    found: dict[str, SourceModel] = {}
    todo = sorted(names)
    while todo:
        name = todo.pop(0)
        src = source_model(repo, name)
        if src is None or name in found:
            continue
        found[name] = src
        unsafe = [s for s in src.steps if not re.match(NAME_PATTERN, s) or len(s) > NAME_MAX]
        if unsafe:
            raise UserError(f"ensemble {name!r} names the composing model {unsafe[0]!r}, not a model directory name",
                            f"name composing models with {NAME_RULE}", src.where)
        if src.is_ensemble:
            missing = [s for s in src.steps if source_model(repo, s) is None]
            if missing:
                raise UserError(f"ensemble {name!r} uses {', '.join(missing)}, which the repository does not have",
                                "add the composing models to the repository", src.where)
            todo += src.steps
    for src in found.values():
        refuse_unplannable(src, found)
    return found


def refuse_unplannable(src: SourceModel, others: dict[str, SourceModel]) -> None:
    """UserError for a model igniter cannot plan without changing what it means."""
    if src.is_ensemble:
        nested = [s for s in src.steps if others[s].is_ensemble]
        if nested:
            raise UserError(f"ensemble {src.name!r} contains the ensemble(s) {', '.join(nested)}",
                            "flatten nested ensembles into one ensemble of plain models", src.where)
        return
    groups = list(src.config.instance_group)
    kinds = {mc.ModelInstanceGroup.Kind.Name(g.kind) for g in groups}
    if "KIND_MODEL" in kinds:
        raise UserError(f"model {src.name!r} has an instance group of kind KIND_MODEL (it places its own instances)",
                        "use KIND_GPU, KIND_CPU or KIND_AUTO so igniter can place it, or leave it out of the plan",
                        src.where)
    if any(g.passive for g in groups):
        raise UserError(f"model {src.name!r} has a passive instance group (instances no scheduler uses)",
                        "drop `passive: true` or leave the model out of the plan", src.where)
    if len({_group_key(g) for g in groups}) > 1:
        raise UserError(f"model {src.name!r} has {len(groups)} instance groups that differ in more than count and GPUs",
                        "merge them into one instance_group (igniter plans one group per server)", src.where)
    if src.config.backend == "python" and _sends_requests(src.path):
        raise UserError(f"model {src.name!r} is a BLS model (its python code sends inference requests to other "
                        f"models, which igniter cannot see)",
                        "serve the pipeline as an ensemble, or plan the models it calls and leave it out", src.where)


def _group_key(group) -> bytes:
    """An instance group without its count, GPUs and name: groups equal in this may merge into one."""
    rest = mc.ModelInstanceGroup()
    rest.CopyFrom(group)
    rest.ClearField("count")
    rest.ClearField("gpus")
    rest.ClearField("name")
    return rest.SerializeToString(deterministic=True)


def _sends_requests(model_dir: Path) -> bool:
    for py in sorted(model_dir.glob("*/*.py")):
        try:
            if _BLS_CALL.search(py.read_text(encoding="utf-8", errors="replace")):
                return True
        except OSError:
            continue
    return False


# ---- planning view: the perf model as the repository constrains it ----------------------------------------

class _Terms(NamedTuple):
    solo_latency_ms: Any
    solo_throughput_rps: Any
    sensitivity: Any
    pressure: Any
    sched_ms: Any


class _Prediction(NamedTuple):
    model: str
    batch: int
    share: float
    latency_ms: float
    throughput_rps: float


class RepositoryPerfModel:
    """A GPU type's perf model seen through the source repository: batches capped at each model's batch limit,
    and every ensemble a model of its own whose steps run at the same batch and share in one server (latency:
    the sum of the steps' latencies with each other's interference; throughput: the slowest step's)."""

    def __init__(self, inner: Any, sources: dict[str, SourceModel]):
        self.inner = inner
        self.sources = sources
        self.hardware = inner.hardware
        self.pipelines = {n: s.steps for n, s in sources.items()
                          if s.is_ensemble and all(step in inner.models for step in s.steps)}

    @property
    def models(self) -> list[str]:
        return sorted(set(self.inner.models) | set(self.pipelines))

    def batches(self, model: str) -> list[int]:
        """Profiled batches (of every step, for an ensemble) up to the smallest max_batch_size involved."""
        involved = [model, *self.pipelines.get(model, [])]
        profiled = sorted(set.intersection(*(set(int(b) for b in self.inner.batches(m))
                                             for m in self.pipelines.get(model, [model]))))
        limiting = min((self.sources[m] for m in involved if m in self.sources), key=lambda s: s.batch_limit,
                       default=None)
        if limiting is None:
            return profiled
        allowed = [b for b in profiled if b <= limiting.batch_limit]
        if not allowed:
            raise UserError(f"model {model!r} takes batches up to {limiting.batch_limit} (max_batch_size "
                            f"{limiting.config.max_batch_size} of {limiting.name!r}), but it was profiled at batches "
                            f"{profiled} only", f"profile it at batch sizes up to {limiting.batch_limit} and re-run "
                            "`igniter fit`", limiting.where)
        return allowed

    def shares(self, model: str) -> list[float]:
        """Shares from the highest of the steps' smallest profiled shares up (no step extrapolated below its range)."""
        profiled = [[float(x) for x in self.inner.shares(s)] for s in self.pipelines.get(model, [model])]
        lowest = max((min(p) for p in profiled if p), default=0.0)
        return sorted({x for p in profiled for x in p if x >= lowest})

    def memory_mb(self, model: str, batch: int) -> float | None:
        known = [self.inner.memory_mb(s, batch) for s in self.pipelines.get(model, [model])]
        return sum(m for m in known if m is not None) if any(m is not None for m in known) else None

    def linear_terms_many(self, models, batches, shares) -> _Terms:
        """Plain models from the inner model; ensemble points from all their steps' terms in two vectorised calls."""
        points = list(zip(models, batches, shares))
        out = np.zeros((5, len(points)))
        plain = [i for i, (m, _, _) in enumerate(points) if m not in self.pipelines]
        piped = [i for i, (m, _, _) in enumerate(points) if m in self.pipelines]
        if plain:
            terms = self.inner.linear_terms_many(*zip(*[points[i] for i in plain]))
            out[:, plain] = np.array([np.asarray(t, float) for t in terms])
        if piped:
            sets = [[_member(step, b, s) for step in self.pipelines[m]] for m, b, s in (points[i] for i in piped)]
            flat = [x for members in sets for x in members]
            together = [p for preds in self.inner.predict_sets(sets) for p in preds]
            terms = self.inner.linear_terms_many([x.model for x in flat], [x.batch for x in flat],
                                                 [x.share for x in flat])
            sens, pressure, sched = (np.asarray(t, float) for t in terms[2:])
            k = 0
            for i, members in zip(piped, sets):
                part = slice(k, k + len(members))
                k += len(members)
                latency = np.array([p.latency_ms for p in together[part]])
                out[:, i] = [latency.sum(), min(p.throughput_rps for p in together[part]),
                             float(np.dot(latency, sens[part]) / latency.sum()), pressure[part].sum(),
                             sched[part].sum()]
        return _Terms(*out)

    def linear_terms(self, model: str, batch: int, share: float) -> _Terms:
        return _Terms(*(float(t[0]) for t in self.linear_terms_many([model], [batch], [share])))

    def predict(self, members) -> list:
        return self.predict_sets([members])[0]

    def predict_sets(self, sets) -> list[list]:
        """Ensembles expanded into their steps for the inner model, then folded back into one prediction each."""
        expanded = [[_member(step, m.batch, m.share) for m in members
                     for step in self.pipelines.get(m.model, [m.model])] for members in sets]
        out = []
        for members, preds in zip(sets, self.inner.predict_sets(expanded)):
            folded, k = [], 0
            for m in members:
                n = len(self.pipelines.get(m.model, [m.model]))
                part = preds[k:k + n]
                k += n
                folded.append(part[0] if m.model not in self.pipelines else _Prediction(
                    m.model, m.batch, m.share, float(sum(p.latency_ms for p in part)),
                    float(min(p.throughput_rps for p in part))))
            out.append(folded)
        return out


def _member(model: str, batch: int, share: float):
    from igniter.provisioning.strategy import Member  # noqa: PLC0415 - the perf models' own member type

    return Member(model, batch, share)


def repository_models(repo: str | Path | None) -> set[str]:
    """Models of the source repository (a workload may name an ensemble the perf model does not know)."""
    return {p.parent.name for p in Path(repo).glob("*/config.pbtxt")} if repo is not None else set()


def repository_types(types: list, src_repo: str | Path | None, models: set[str]) -> list:
    """GPU types whose perf models see the source repository (unchanged without one); UserError for a
    workload's model that no type can plan."""
    sources = source_models(src_repo, models)
    if not sources:
        return types
    wrapped = [replace(t, perf_model=RepositoryPerfModel(t.perf_model, sources)) for t in types]
    for name in sorted(models):
        if any(name in t.perf_model.models for t in wrapped):
            continue
        if name in sources and sources[name].is_ensemble:
            missing = sorted({s for s in sources[name].steps for t in types if s not in t.perf_model.models})
            raise UserError(f"ensemble {name!r} is planned as its composing models, and the performance model "
                            f"lacks {', '.join(map(repr, missing))}",
                            "profile the composing models and re-run `igniter fit`", sources[name].where)
        raise UserError(f"model {name!r} is in the repository but not in the performance model",
                        "profile the model and re-run `igniter fit` (or name a profiled model)", "workloads")
    return wrapped


def keep_stateful_on_one_server(problem) -> None:
    """A stateful model's workload may only take one server: every request of a sequence must reach the server
    that holds its state, and nothing routes sequences between servers. Drops its multi-replica candidates."""
    sources = next((t.perf_model.sources for t in problem.types if isinstance(t.perf_model, RepositoryPerfModel)), {})
    for wi, w in enumerate(problem.workloads):
        stateful = {o.model for o in problem.options[wi] if _stateful(sources, o.model)}
        if not stateful:
            continue
        kept = [o for o in problem.options[wi] if o.model not in stateful or o.replicas == 1]
        if not kept:
            fewest = min(o.replicas for o in problem.options[wi])
            raise UserError(f"workload {w.name!r} needs {fewest} servers at {w.rate:g} req/s, but its model "
                            f"{sorted(stateful)[0]!r} is stateful (sequence_batching): every request of a sequence "
                            "must reach the one server that holds its state",
                            "split its sequences over several workloads with a lower rate each, or use a faster "
                            "GPU type", "workloads")
        problem.options[wi] = kept


def _stateful(sources: dict[str, SourceModel], model: str) -> bool:
    src = sources.get(model)
    if src is None:
        return False
    steps = [sources[s] for s in src.steps if s in sources] if src.is_ensemble else [src]
    return any(s.config.HasField("sequence_batching") for s in steps)


# ---- writing: one server's models --------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    """What the plan decided for one server, as the config writer needs it."""
    server: str
    workload: str
    batch: int
    max_queue_delay_us: int
    replicas: int
    on_gpu: bool
    threads: int | None        # CPU host: intra-op threads for models that read the `threads` parameter


def write_server_models(repo: Path, model: str, place: Placement, src_repo: str | Path | None) -> list[str]:
    """Write the server's model directories (configs and copied files) under repo; returns the models to load."""
    src = source_model(src_repo, model)
    if src is not None and src.is_ensemble:
        steps = source_models(src_repo, {model})
        _copy_model_files(src.path, repo / model, keep_config=True)   # the ensemble's config, byte for byte
        for i, step in enumerate(src.steps):
            # the batch forms once, at the first step (queueing model); later steps take what arrives together
            _write_model(repo, step, steps[step], place if i == 0 else replace(place, max_queue_delay_us=0),
                         in_ensemble=True)
        return [model, *src.steps]
    if src is not None:
        refuse_unplannable(src, {model: src})
    _write_model(repo, model, src, place)
    return [model]


def _write_model(repo: Path, name: str, src: SourceModel | None, place: Placement, in_ensemble: bool = False) -> None:
    if src is None:
        cfg, header = new_model_config(name), ""
        cfg.max_batch_size = max(int(cfg.max_batch_size), place.batch)
    else:
        cfg, header = ModelConfig(), src.header
        cfg.CopyFrom(src.config)
        _copy_model_files(src.path, repo / name, keep_config=False)
    derive_config(cfg, src, place, in_ensemble)
    check_rules(cfg, place, src.where if src else name)
    (repo / name).mkdir(exist_ok=True)
    # a plain write: the whole OUT_DIR is built in a temporary directory and swapped in (atomic as a whole)
    (repo / name / "config.pbtxt").write_text(config_text(cfg, header))


def derive_config(cfg: ModelConfig, src: SourceModel | None, place: Placement,
                  in_ensemble: bool = False) -> ModelConfig:
    """Set the fields the plan drives on a copy of the source config, where they keep the model's meaning."""
    cfg.name = cfg.name or (src.name if src else cfg.name)
    _set_batching(cfg, src, place)
    _set_instances(cfg, src, place, in_ensemble)
    if place.threads is not None and "threads" in cfg.parameters:
        set_parameter(cfg, "threads", place.threads)
    return cfg


def _set_batching(cfg: ModelConfig, src: SourceModel | None, place: Placement) -> None:
    if cfg.HasField("sequence_batching"):
        if place.replicas > 1:
            raise UserError(f"model {cfg.name!r} is stateful (sequence_batching) and workload {place.workload!r} was "
                            f"split over {place.replicas} servers, but every request of a sequence must reach the "
                            "server that holds its state",
                            "raise the workload's slo_ms or use a faster GPU type so one server carries it",
                            src.where if src else None)
        _set_sequence_batching(cfg.sequence_batching, place, int(cfg.max_batch_size))
    elif cfg.max_batch_size > 0:
        # only the sizes and the delay: queue policies, priorities and preserve_ordering keep their meaning
        del cfg.dynamic_batching.preferred_batch_size[:]
        cfg.dynamic_batching.preferred_batch_size.append(place.batch)
        cfg.dynamic_batching.max_queue_delay_microseconds = place.max_queue_delay_us
    # max_batch_size 0: no batch dimension, nothing to batch (the planner chose batch 1)


def _set_sequence_batching(seq, place: Placement, max_batch: int) -> None:
    """Batch b through the sequence batcher: Oldest prefers b and keeps at least b candidate sequences; Direct
    waits up to the queue delay for b of its max_batch_size slots to be ready."""
    if max_batch == 0 or place.batch <= 1:
        return                                  # one sequence slot per instance: nothing to form
    if seq.HasField("oldest"):
        seq.oldest.max_candidate_sequences = max(int(seq.oldest.max_candidate_sequences), place.batch)
        del seq.oldest.preferred_batch_size[:]
        seq.oldest.preferred_batch_size.append(place.batch)
        seq.oldest.max_queue_delay_microseconds = place.max_queue_delay_us
    else:
        seq.direct.max_queue_delay_microseconds = place.max_queue_delay_us
        seq.direct.minimum_slot_utilization = round(place.batch / max_batch, 4)


def _set_instances(cfg: ModelConfig, src: SourceModel | None, place: Placement, in_ensemble: bool) -> None:
    """One instance; kind and GPU from the plan, except a KIND_CPU step of an ensemble on a GPU (a host-side
    pre/post-processing step, by design: it stays on the CPU)."""
    want = mc.ModelInstanceGroup.KIND_GPU if place.on_gpu else mc.ModelInstanceGroup.KIND_CPU
    groups = list(cfg.instance_group)
    group = mc.ModelInstanceGroup()
    if groups:
        group.CopyFrom(groups[0])
        fixed = group.kind
        if in_ensemble and fixed == mc.ModelInstanceGroup.KIND_CPU:
            want = fixed
        elif fixed in (mc.ModelInstanceGroup.KIND_CPU, mc.ModelInstanceGroup.KIND_GPU) and fixed != want:
            asked = mc.ModelInstanceGroup.Kind.Name(fixed)
            raise UserError(f"model {cfg.name!r} asks for {asked} instances but the plan puts it on a "
                            f"{'GPU' if place.on_gpu else 'CPU host'}",
                            f"plan it on a {'CPU host' if asked == 'KIND_CPU' else 'GPU'} type (the --gpus catalog), "
                            "or set its instance_group kind to KIND_AUTO", src.where if src else None)
    # one instance, whatever the source asked: the profiles measure one instance per server and the queueing
    # model has one server per batch queue, so that is what the plan's predictions (and its share) are for
    group.count = 1
    group.kind = want
    del group.gpus[:]
    if want == mc.ModelInstanceGroup.KIND_GPU:
        group.gpus.append(0)                    # the server sees only its planned GPU
    del cfg.instance_group[:]
    cfg.instance_group.add().CopyFrom(group)


def check_rules(cfg: ModelConfig, place: Placement, where: str) -> None:
    """Triton's own load-time rules on the fields igniter drives (its wording), before anything is written."""
    name = cfg.name
    problems = []
    if cfg.HasField("dynamic_batching"):
        if cfg.max_batch_size == 0:
            problems.append(f"dynamic batching requires max_batch_size > 0 for {name}")
        for size in cfg.dynamic_batching.preferred_batch_size:
            if size <= 0:
                problems.append(f"dynamic batching preferred size must be positive for {name}")
            elif size > cfg.max_batch_size:
                problems.append(f"dynamic batching preferred size must be <= max batch size for {name}")
    if cfg.HasField("sequence_batching"):
        oldest = cfg.sequence_batching.oldest
        if any(s > cfg.max_batch_size for s in oldest.preferred_batch_size):
            problems.append(f"sequence batching preferred batch size must be <= max batch size for {name}")
        utilization = cfg.sequence_batching.direct.minimum_slot_utilization
        if not 0.0 <= utilization <= 1.0:
            problems.append(f"sequence batching minimum slot utilization must be in range (0.0, 1.0] for {name}")
    if place.batch > max(1, cfg.max_batch_size):
        problems.append(f"planned batch {place.batch} exceeds max_batch_size {cfg.max_batch_size} of {name}")
    for g in cfg.instance_group:
        kind = mc.ModelInstanceGroup.Kind.Name(g.kind)
        if kind == "KIND_CPU" and g.gpus:
            problems.append(f"instance group of model {name} has kind KIND_CPU but specifies one or more GPUs")
        if kind == "KIND_GPU" and not g.gpus:
            problems.append(f"instance group of model {name} has kind KIND_GPU but specifies no GPUs")
        if kind not in ("KIND_CPU", "KIND_GPU"):
            problems.append(f"instance group of model {name} has unexpected kind {kind}")
    if problems:
        raise UserError(f"server {place.server}: {problems[0]}",
                        "fix the source config (Triton would refuse to load it)", where)


_NOT_COPIED = ("__pycache__", "*.pyc")   # left by a python backend that served the source: not the model's files


def _copy_model_files(src: Path, dst: Path, keep_config: bool) -> None:
    """Version directories and any other files of the source model (its config too when kept unchanged)."""
    dst.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns(*_NOT_COPIED)
    ignored = skip(str(src), [e.name for e in src.iterdir()])
    for entry in sorted(src.iterdir()):
        if (entry.name == "config.pbtxt" and not keep_config) or entry.name in ignored:
            continue
        if entry.is_dir():
            shutil.copytree(entry, dst / entry.name, dirs_exist_ok=True, ignore=skip)
        else:
            shutil.copy2(entry, dst / entry.name)
