"""Hand-made plans over the demo models, so apply is tested independently of the provisioner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from igniter.triton.config import read_config, set_dynamic_batching, set_instance_group, set_parameter, write_config


def make_plan(out: Path, demo_repo: Path, servers: list[dict]) -> Path:
    """servers: [{name, model, batch, instances, share, cpus}] -> out/plan.json + out/triton_repo/<server>/."""
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
        launch = {"server": spec["name"], "gpu": "host0", "share": spec.get("share", 50.0), "cpus": spec.get("cpus", [0]),
                  "env": {"OMP_NUM_THREADS": "1"}, "models": [spec["model"]]}
        (repo / "launch.json").write_text(json.dumps(launch, sort_keys=True))
        entries.append({"name": spec["name"], "model": spec["model"], "workload": spec["name"], "replica": 0,
                        "share": spec.get("share", 50.0), "batch": spec["batch"], "instances": spec.get("instances", 1)})
    plan = {"format": "igniter-plan", "version": 1, "strategy": "manual", "hardware_kind": "cpu",
            "gpus": [{"id": "host0", "type": "cpu", "price_per_hour": 1.0, "servers": entries}],
            "totals": {"gpus": 1, "cost": 1.0, "lower_bound": 1.0, "gap": 0.0}}
    (out / "plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True))
    return out / "plan.json"
