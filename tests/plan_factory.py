"""Hand-made plans over the demo models, so apply is tested independently of the provisioner."""

from __future__ import annotations

import shutil
from pathlib import Path

from igniter.provisioning.plan import PLAN_VERSION, GpuPlan, LaunchSpec, Plan, ServerPlan, Totals
from igniter.schema import dump_json
from igniter.triton.config import read_config, set_dynamic_batching, set_instance_group, set_parameter, write_config


def make_plan(out: Path, demo_repo: Path, servers: list[dict]) -> Path:
    """servers: [{name, model, batch, instances, share, cpus, backend, workload, replica, replicas, rate}] -> out/plan.json + out/triton_repo/<server>/.

    ``instances`` goes into the server's config only (as if its repository were edited by hand): plans carry no
    instance count, and apply applies what a repository's configs say."""
    if out.exists():
        shutil.rmtree(out)
    entries = []
    for spec in servers:
        repo = out / "triton_repo" / spec["name"]
        shutil.copytree(demo_repo / spec["model"] / "1", repo / spec["model"] / "1")
        cfg = read_config(demo_repo / spec["model"] / "config.pbtxt")
        set_instance_group(cfg, spec.get("instances", 1), "KIND_CPU")
        set_dynamic_batching(cfg, [spec["batch"]], spec.get("delay_us", 1000))
        set_parameter(cfg, "threads", 1)
        if spec.get("break_config"):
            cfg.dynamic_batching.preferred_batch_size.append(cfg.max_batch_size + 1)  # Triton rejects this
        write_config(cfg, repo / spec["model"] / "config.pbtxt")
        launch = LaunchSpec(server=spec["name"], gpu="host0", backend=spec.get("backend", "cpu"),
                            share=spec.get("share", 50.0), cpus=spec.get("cpus", [0]), env={"OMP_NUM_THREADS": "1"},
                            models=[spec["model"]])
        (repo / "launch.json").write_text(dump_json(launch))
        entries.append(ServerPlan(name=spec["name"], model=spec["model"], workload=spec.get("workload", spec["name"]),
                                  replica=spec.get("replica", 0), replicas=spec.get("replicas", 1),
                                  share=spec.get("share", 50.0), batch=spec["batch"],
                                  max_queue_delay_us=spec.get("delay_us", 1000), rate=spec.get("rate", 10.0),
                                  slo_ms=100.0,
                                  predicted_latency_ms=1.0, predicted_p99_ms=2.0, predicted_throughput_rps=100.0))
    plan = Plan(format="igniter-plan", version=PLAN_VERSION, strategy="manual", latency_model="queueing", hardware_kind="cpu",
                gpus=[GpuPlan(id="host0", type="cpu", kind="cpu", backend="cpu", price_per_hour=1.0, servers=entries)],
                totals=Totals(gpus=1, cost=1.0, accuracy_term=0.0, objective=1.0, lower_bound=1.0, gap=0.0,
                              status="manual"))
    (out / "plan.json").write_text(dump_json(plan))
    return out / "plan.json"
