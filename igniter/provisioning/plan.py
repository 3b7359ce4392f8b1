"""The provisioning result on disk: OUT_DIR/plan.json + OUT_DIR/triton_repo/<server>/ (docs/artefacts.md §3).

The plan and each server's launch spec are declared once here (``Plan``, ``LaunchSpec``: typed, versioned) and read
through one reader each, ``read_plan`` and ``read_launch``: every consumer (apply, the demo, the provision summary,
exporters, planners) reads plans through ``read_plan(path) -> Plan``, never by string keys.

Determinism: plan.json and the repositories depend only on the inputs (keys sorted, floats rounded, GPUs and
servers in a canonical order). The one non-deterministic number, the solve time, goes to OUT_DIR/solve.json
(and the command's --json output), never into plan.json.

Atomicity: everything is written to a temporary sibling directory first and renamed into place; a previous
OUT_DIR is swapped out only after the new one is complete.

Ownership: OUT_DIR carries igniter's marker. An existing OUT_DIR is replaced only when it is such a plan directory
holding nothing but igniter's files, and no deployment runs from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal

from pydantic import Field, StringConstraints, field_validator

from igniter import backends
from igniter.atomic import swap_in_directory
from igniter.errors import UserError
from igniter.ownership import MARKER, child_of, is_owned, mark, output_errors, require_owned
from igniter.provisioning.candidates import ProvisioningProblem
from igniter.provisioning.repository import Placement, write_server_models
from igniter.provisioning.strategy import EPS, Assignment, Gpu, accuracy_reward, memory_limit, predicted, price
from igniter.schema import (Count, NonNegativeFloat, PositiveFloat, SafeName, Share, Strict, dump_json, read_json,
                            validate)
from igniter.triton.server import owned_servers_under

PLAN_FORMAT, PLAN_VERSION = "igniter-plan", 3
OLD_PLAN_VERSION = 2      # read too: its servers also said ``instances``, which had to be 1 (_from_version_2)
LAUNCH_FORMAT, LAUNCH_VERSION = "igniter-launch", 2
REPROVISION = "re-run igniter provision (it writes plan.json and the launch specs; they are not edited by hand)"
Label = Annotated[str, StringConstraints(min_length=1, max_length=200)]   # display names (GPU types: "H100 PCIe")


class ServerPlan(Strict):
    """One Triton server: one replica of one workload, its configuration and what the model predicts for it."""

    name: SafeName
    workload: SafeName
    replica: Annotated[int, Field(ge=0)]
    replicas: Count
    model: SafeName                      # the model (variant) that serves the workload
    accuracy: float | None = None        # the serving model's accuracy, when variants or accuracy_weight matter
    batch: Count
    share: Share                         # one model instance per server: no instance count (docs/artefacts.md §3)
    max_queue_delay_us: Annotated[int, Field(ge=0)]
    rate: PositiveFloat                  # req/s this replica carries
    slo_ms: PositiveFloat                # the workload's p99 budget
    predicted_latency_ms: NonNegativeFloat    # one batch through the model, co-located
    # end-to-end p99 (queueing model): what the SLO is compared with; None: the server cannot carry its rate (the
    # queue grows without bound; only interference-blind baselines plan that)
    predicted_p99_ms: NonNegativeFloat | None
    predicted_throughput_rps: NonNegativeFloat


class GpuPlan(Strict):
    id: SafeName
    type: Label
    kind: SafeName                       # hardware.json's kind: gpu | cpu
    backend: SafeName                    # igniter.backends name that launches its servers
    price_per_hour: NonNegativeFloat     # 0: a type the user already owns
    servers: list[ServerPlan] = Field(min_length=1)


class Miss(Strict):
    """What the full perf model + queueing model says a plan gets wrong: a server over its SLO (its p99, None:
    unbounded) or a GPU over its share or memory."""
    server: SafeName | None = None
    predicted_p99_ms: NonNegativeFloat | None = None
    slo_ms: PositiveFloat | None = None
    gpu: SafeName | None = None
    share: NonNegativeFloat | None = None
    memory_mb: NonNegativeFloat | None = None


class Totals(Strict):
    gpus: Annotated[int, Field(ge=0)]
    cost: NonNegativeFloat               # price per hour of the GPUs (hosts) used
    accuracy_term: NonNegativeFloat      # accuracy_weight x sum of the served variants' accuracy (0 without variants)
    objective: float                     # what the strategy minimised: cost - accuracy_term
    lower_bound: float                   # valid bound on the objective of every plan (bounds.py), never capped
    gap: float | None                    # (objective - bound) / objective; None: the plan is infeasible
    status: SafeName                     # optimal | feasible | heuristic | fallback | infeasible (docs/artefacts.md)
    misses: list[Miss] = Field(default_factory=list)


class Plan(Strict):
    format: Literal["igniter-plan"]
    version: Literal[3]
    strategy: SafeName
    latency_model: SafeName
    hardware_kind: SafeName
    accuracy_weight: NonNegativeFloat = 0.0
    gpus: list[GpuPlan]
    totals: Totals

    @field_validator("gpus")
    @classmethod
    def _unique_names(cls, gpus: list[GpuPlan]) -> list[GpuPlan]:
        for what, names in (("GPU id", [g.id for g in gpus]),
                            ("server name", [s.name for g in gpus for s in g.servers])):
            twice = sorted(n for n, count in Counter(names).items() if count > 1)
            if twice:
                raise ValueError(f"{what} {twice[0]!r} is given twice")
        return gpus

    def servers(self) -> Iterator[tuple[GpuPlan, ServerPlan]]:
        """Every (GPU, server) pair, in plan order."""
        return ((g, s) for g in self.gpus for s in g.servers)

    def by_workload(self) -> dict[str, list[ServerPlan]]:
        """Workload name -> its replica servers, workloads sorted."""
        out: dict[str, list[ServerPlan]] = {}
        for _, s in self.servers():
            out.setdefault(s.workload, []).append(s)
        return dict(sorted(out.items()))


class LaunchSpec(Strict):
    """OUT_DIR/triton_repo/<server>/launch.json: how apply starts the server (backend, env, pinned cores)."""

    format: Literal["igniter-launch"] = LAUNCH_FORMAT
    version: Literal[2] = LAUNCH_VERSION
    server: SafeName
    gpu: SafeName
    backend: SafeName
    share: Share
    models: list[SafeName] = Field(min_length=1)
    env: dict[str, str]
    cpus: list[Annotated[int, Field(ge=0)]] | None = None
    threads: Count | None = None


def read_plan(path: str | Path) -> Plan:
    """THE plan reader (plan.json, or the OUT_DIR holding it): one UserError line for anything but a valid plan of
    this version or a version-2 plan of one instance per server (read as this version)."""
    path = Path(path)
    if path.is_dir():
        path = path / "plan.json"
    data = _read_format(path, "plan", PLAN_FORMAT)
    if data.get("version") == OLD_PLAN_VERSION:
        data = _from_version_2(data, path)
    return _validate_version(Plan, data, path, "plan", PLAN_VERSION, f" (and version {OLD_PLAN_VERSION})")


def read_launch(path: str | Path) -> LaunchSpec:
    path = Path(path)
    data = _read_format(path, "launch spec", LAUNCH_FORMAT)
    return _validate_version(LaunchSpec, data, path, "launch spec", LAUNCH_VERSION)


def _read_format(path: Path, what: str, file_format: str) -> dict:
    data = read_json(path, what)
    found = data.get("format") if isinstance(data, dict) else None
    if found != file_format:
        raise UserError(f"{path} is not an {file_format} file (format={found!r})", REPROVISION, path.name)
    return data


def _validate_version(model, data: dict, path: Path, what: str, version: int, older: str = ""):
    if data.get("version") != version:
        raise UserError(f"{what} {path} is version {data.get('version')!r}; this igniter reads version {version}"
                        f"{older}", REPROVISION, path.name)
    return validate(model, data, path.name, REPROVISION)


def _from_version_2(data: dict, path: Path) -> dict:
    """A version-2 plan as version 3: every server's ``instances`` dropped, where it is 1 (all igniter ever
    planned). Another count was a decision the profiles and the queueing model never covered (one instance per
    server): refused, not silently served with one."""
    gpus = data.get("gpus")
    for gpu in gpus if isinstance(gpus, list) else []:
        servers = gpu.get("servers") if isinstance(gpu, dict) else None
        for server in servers if isinstance(servers, list) else []:
            count = server.pop("instances", 1) if isinstance(server, dict) else 1
            if type(count) is not int or count != 1:
                raise UserError(f"server {server.get('name')!r} of the version-2 plan {path} asks for "
                                f"instances={count!r}; igniter plans one model instance per server", REPROVISION,
                                path.name)
    return {**data, "version": PLAN_VERSION}


DIGITS = 4
PLAN_ENTRIES = {"plan.json", "solve.json", "triton_repo", MARKER}  # what write_plan puts into OUT_DIR
_NAME_FIX = "use workload and model names of letters, digits, '.', '_' or '-'"


def canonical(problem: ProvisioningProblem, gpus: list[Gpu]) -> list[Gpu]:
    """GPUs ordered by type then by their first workload; servers by workload then replica."""
    for g in gpus:
        g.servers.sort(key=lambda s: (s.workload, s.replica))
    return sorted((g for g in gpus if g.servers),
                  key=lambda g: (problem.types[g.type_index].type, [(s.workload, s.replica) for s in g.servers]))


def build_plan(problem: ProvisioningProblem, assignment: Assignment, strategy: str) -> Plan:
    """The typed plan; one that misses an SLO (or overfills a GPU) under the full model says "infeasible", lists
    its misses and has no gap (its objective may be below the bound: it is not a plan of the candidate space)."""
    gpus = canonical(problem, assignment.gpus)
    preds = predicted(problem, gpus)
    cost, accuracy_term = price(problem, gpus), problem.accuracy_weight * accuracy_reward(problem, gpus)
    objective = cost - accuracy_term
    lower = assignment.lower_bound
    misses = _misses(problem, gpus, preds)
    plan_gpus = []
    for gi, (g, gpreds) in enumerate(zip(gpus, preds)):
        t = problem.types[g.type_index]
        servers = []
        for s, p in zip(g.servers, gpreds):
            w, o = problem.workloads[s.workload], s.option
            servers.append(ServerPlan(
                name=server_name(gi, w.name, s.replica), share=o.share, model=o.model, workload=w.name,
                replica=s.replica, replicas=o.replicas, batch=o.batch,
                max_queue_delay_us=o.queue_delay_us, rate=_r(o.rate), slo_ms=w.slo_ms,
                predicted_latency_ms=_r(p["latency_ms"]),
                predicted_p99_ms=_r(p["p99_ms"]) if math.isfinite(p["p99_ms"]) else None,
                predicted_throughput_rps=_r(p["throughput_rps"]),
                accuracy=o.accuracy if w.variants or problem.accuracy_weight else None))
        plan_gpus.append(GpuPlan(id=f"gpu{gi}", type=t.type, price_per_hour=t.price_per_hour, kind=t.kind,
                                 backend=backends.for_hardware(t.perf_model.hardware).name, servers=servers))
    totals = Totals(gpus=len(gpus), cost=_r(cost), accuracy_term=_r(accuracy_term), objective=_r(objective),
                    lower_bound=_r(lower), gap=None if misses else _r(gap(objective, lower)),
                    status="infeasible" if misses else assignment.status, misses=misses)
    return Plan(format=PLAN_FORMAT, version=PLAN_VERSION, strategy=strategy, latency_model=problem.latency_model,
                hardware_kind=problem.types[0].kind if problem.types else "gpu",
                accuracy_weight=problem.accuracy_weight, gpus=plan_gpus, totals=totals)


def _misses(problem: ProvisioningProblem, gpus: list[Gpu], preds: list[list[dict]]) -> list[Miss]:
    out = []
    for gi, (g, gpreds) in enumerate(zip(gpus, preds)):
        if g.share() > 100 + EPS:
            out.append(Miss(gpu=f"gpu{gi}", share=_r(g.share())))
        if g.memory() > memory_limit(problem, g.type_index) + EPS:
            out.append(Miss(gpu=f"gpu{gi}", memory_mb=_r(g.memory())))
        for s, p in zip(g.servers, gpreds):
            w = problem.workloads[s.workload]
            if p["p99_ms"] > w.slo_ms + EPS:
                out.append(Miss(server=server_name(gi, w.name, s.replica), slo_ms=w.slo_ms,
                                predicted_p99_ms=_r(p["p99_ms"]) if math.isfinite(p["p99_ms"]) else None))
    return out


def gap(total: float, lower: float) -> float:
    """(cost - bound) / cost; negative only if a bound were invalid for the plan (never clamped to hide it)."""
    return (total - lower) / total if total > 0 else 0.0


def server_name(gpu_index: int, workload: str, replica: int) -> str:
    return f"gpu{gpu_index}-{workload}-r{replica}"


def _r(x: float) -> float:
    return round(float(x), DIGITS)


def write_plan(plan: Plan, problem: ProvisioningProblem, out_dir: str | Path, src_repo: str | Path | None,
               solve_info: dict) -> None:
    """Write plan.json, solve.json and triton_repo/ atomically into out_dir."""
    out = Path(out_dir)
    with output_errors(out, "plan directory"):
        check_replaceable(out)
        _write_plan(plan, problem, out, src_repo, solve_info)


def check_replaceable(out: Path) -> None:
    """Refuse an --out that is not an earlier plan igniter wrote, holds other files, or serves a live deployment."""
    fix = "choose a new --out directory (igniter replaces only a plan directory it wrote)"
    if out.exists() and not out.is_dir():
        raise UserError(f"output directory {out} exists and is not a directory", fix)
    require_owned(out, "output directory", fix)
    if not out.exists():
        return
    live = owned_servers_under(out)
    if live:
        pids = ", ".join(map(str, live))
        raise UserError(f"output directory {out} holds a live deployment (tritonserver pid {pids})",
                        "run `igniter down --state <its state.json>` first, or choose another --out")
    foreign = sorted(e.name for e in out.iterdir() if e.name not in PLAN_ENTRIES and not _igniter_leftover(e))
    if foreign:
        raise UserError(f"output directory {out} holds files igniter did not write ({', '.join(foreign[:5])})",
                        "move them elsewhere, or choose another --out")


def _igniter_leftover(entry: Path) -> bool:
    """A stopped deployment's files beside a plan: a directory igniter marked, or a JSON file of an igniter format."""
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return is_owned(entry)
    try:
        with entry.open("rb") as fh:
            head = json.loads(fh.read(1 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and str(head.get("format", "")).startswith("igniter-")


def _write_plan(plan: Plan, problem: ProvisioningProblem, out: Path, src_repo, solve_info: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "plan.json").write_text(dump_json(plan))
        (tmp / "solve.json").write_text(json.dumps(solve_info, indent=2, sort_keys=True) + "\n")
        (tmp / "triton_repo").mkdir()
        for g, s, launch in server_launches(plan, problem):
            _write_server(child_of(tmp / "triton_repo", s.name, "server name", _NAME_FIX), g, s, launch, src_repo)
        mark(tmp, "igniter provision")
        os.chmod(tmp, 0o755)
        swap_in_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def server_launches(plan: Plan, problem: ProvisioningProblem) -> Iterator[tuple[GpuPlan, ServerPlan, Any]]:
    """Every server with the launch the profiler used for its share (igniter.backends: env, pinned cores, thread
    caps), the cores of each host handed out in plan order: what launch.json says, without writing anything."""
    types = {t.type: t for t in problem.types}
    for g in plan.gpus:
        backend = backends.get(g.backend)
        cpu_next = 0
        for s in g.servers:
            launch = backend.launch(s.share, backend.host_cpus(types[g.type].perf_model.hardware), cpu_next)
            cpu_next += len(launch.cpus or [])
            yield g, s, launch


def launch_spec(gpu: GpuPlan, server: ServerPlan, launch: Any, models: list[str]) -> LaunchSpec:
    return LaunchSpec(server=server.name, gpu=gpu.id, backend=gpu.backend, share=server.share, models=models,
                      env=launch.env, cpus=launch.cpus, threads=launch.threads)


def _write_server(repo: Path, gpu: GpuPlan, server: ServerPlan, launch: Any, src_repo) -> None:
    """One server's model repository and launch.json."""
    backend = backends.get(gpu.backend)
    repo.mkdir()
    # the configs (repository.py: from the source model where there is one, keeping its semantics)
    place = Placement(server.name, server.workload, server.batch, server.max_queue_delay_us, server.replicas,
                      backend.gpu, launch.threads)
    models = write_server_models(repo, server.model, place, src_repo)
    # a plain write: the whole OUT_DIR is built in a temporary directory and swapped in (atomic as a whole)
    (repo / "launch.json").write_text(dump_json(launch_spec(gpu, server, launch, models)))
