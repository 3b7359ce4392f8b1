"""The provisioning result on disk: OUT_DIR/plan.json + OUT_DIR/triton_repo/<server>/ (docs/artefacts.md §3).

Determinism: plan.json and the repositories depend only on the inputs (keys sorted, floats rounded, GPUs and
servers in a canonical order). The one non-deterministic number, the solve time, goes to OUT_DIR/solve.json
(and the command's --json output), never into plan.json.

Atomicity: everything is written to a temporary sibling directory first and renamed into place; a previous
OUT_DIR is swapped out only after the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from igniter.errors import UserError
from igniter.provisioning.candidates import ProvisioningProblem, host_cores
from igniter.provisioning.repository import Placement, write_server_models
from igniter.provisioning.strategy import Assignment, Gpu, cost, predicted

DIGITS = 4


def canonical(problem: ProvisioningProblem, gpus: list[Gpu]) -> list[Gpu]:
    """GPUs ordered by type then by their first workload; servers by workload then replica."""
    for g in gpus:
        g.servers.sort(key=lambda s: (s.workload, s.replica))
    return sorted((g for g in gpus if g.servers),
                  key=lambda g: (problem.types[g.type_index].type, [(s.workload, s.replica) for s in g.servers]))


def build_plan(problem: ProvisioningProblem, assignment: Assignment, strategy: str) -> dict:
    gpus = canonical(problem, assignment.gpus)
    preds = predicted(problem, gpus)
    total = cost(problem, gpus)
    lower = min(assignment.lower_bound, total)
    plan_gpus = []
    for gi, (g, gpreds) in enumerate(zip(gpus, preds)):
        t = problem.types[g.type_index]
        servers = []
        for s, p in zip(g.servers, gpreds):
            w, o = problem.workloads[s.workload], s.option
            entry = {"name": server_name(gi, w.name, s.replica), "share": o.share, "model": o.model,
                     "workload": w.name, "replica": s.replica, "replicas": o.replicas, "batch": o.batch,
                     "instances": 1, "max_queue_delay_us": o.queue_delay_us, "rate": _r(o.rate), "slo_ms": w.slo_ms,
                     "predicted_latency_ms": _r(p["latency_ms"]), "predicted_p99_ms": _r(p["p99_ms"]),
                     "predicted_throughput_rps": _r(p["throughput_rps"])}
            if w.variants:
                entry["accuracy"] = o.accuracy
            servers.append(entry)
        plan_gpus.append({"id": f"gpu{gi}", "type": t.type, "price_per_hour": t.price_per_hour, "kind": t.kind,
                          "servers": servers})
    return {"format": "igniter-plan", "version": 1, "strategy": strategy, "latency_model": problem.latency_model,
            "hardware_kind": problem.types[0].kind if problem.types else "gpu", "gpus": plan_gpus,
            "totals": {"gpus": len(gpus), "cost": _r(total), "lower_bound": _r(lower), "gap": _r(gap(total, lower)),
                       "status": assignment.status},
            "rejected": []}


def gap(total: float, lower: float) -> float:
    return max(0.0, (total - lower) / total) if total > 0 else 0.0


def server_name(gpu_index: int, workload: str, replica: int) -> str:
    return f"gpu{gpu_index}-{workload}-r{replica}"


def _r(x: float) -> float:
    return round(float(x), DIGITS)


def write_plan(plan: dict, problem: ProvisioningProblem, out_dir: str | Path, src_repo: str | Path | None,
               solve_info: dict) -> None:
    """Write plan.json, solve.json and triton_repo/ atomically into out_dir."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "plan.json").exists())):
        raise UserError(f"output directory {out} exists and is not a plan directory",
                        "choose a new --out directory (or an earlier plan's, which is replaced)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
        (tmp / "solve.json").write_text(json.dumps(solve_info, indent=2, sort_keys=True) + "\n")
        types = {t.type: t for t in problem.types}
        (tmp / "triton_repo").mkdir()
        for g in plan["gpus"]:
            cpu_next = 0
            for s in g["servers"]:
                cpu_next = _write_server(tmp / "triton_repo" / s["name"], g, s, types[g["type"]], src_repo, cpu_next)
        os.chmod(tmp, 0o755)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _write_server(repo: Path, gpu: dict, server: dict, gpu_type, src_repo, cpu_next: int) -> int:
    """One server's model repository and launch.json; returns the next free core on a CPU host."""
    model = server["model"]
    on_gpu = gpu_type.kind != "cpu"
    repo.mkdir()
    launch = {"server": server["name"], "gpu": gpu["id"], "share": server["share"]}
    threads = None
    if on_gpu:
        launch["env"] = {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": f"{server['share']:g}"}
    else:
        cores = host_cores(gpu_type)
        threads = max(1, round(server["share"] / 100.0 * cores))
        launch["cpus"] = [c % cores for c in range(cpu_next, cpu_next + threads)]
        launch["threads"] = threads
        launch["env"] = {"OMP_NUM_THREADS": str(threads)}
        cpu_next += threads
    place = Placement(server["name"], server["workload"], int(server["batch"]), int(server["max_queue_delay_us"]),
                      int(server["replicas"]), int(server["instances"]), on_gpu, threads)
    launch["models"] = write_server_models(repo, model, place, src_repo)
    (repo / "launch.json").write_text(json.dumps(launch, indent=2, sort_keys=True) + "\n")
    return cpu_next
