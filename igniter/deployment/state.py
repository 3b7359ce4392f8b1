"""Deployment state: what runs where, written by `igniter apply`, read by `igniter status` and the next apply."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from igniter.atomic import atomic_write
from igniter.errors import UserError
from igniter.ownership import output_errors
from igniter.triton.server import pid_alive  # noqa: F401 - re-exported for apply/status

STATE_FORMAT = "igniter-state"


@dataclass
class ServerState:
    name: str
    gpu: str
    share: float
    repo: str  # the deployed repository directory this server serves
    http: str
    grpc: str
    metrics: str | None
    pid: int | None  # None for remote servers
    launch_digest: str  # what forces a new process (share, cpus, env); configs alone reload live
    models: dict[str, str] = field(default_factory=dict)  # model -> config digest
    workloads: list[str] = field(default_factory=list)
    log: str | None = None


@dataclass
class DeploymentState:
    plan: str | None = None
    servers: dict[str, ServerState] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": STATE_FORMAT, "version": 1, "plan": self.plan,
                "servers": {k: asdict(v) for k, v in sorted(self.servers.items())}}

    def endpoints_by_workload(self) -> dict[str, list[dict]]:
        table: dict[str, list[dict]] = {}
        for server in self.servers.values():
            for workload in server.workloads:
                table.setdefault(workload, []).append({"server": server.name, "grpc": server.grpc, "http": server.http})
        return table


def load_state(path: Path) -> DeploymentState:
    if not path.exists():
        return DeploymentState()
    try:
        data = json.loads(path.read_text())
        servers = {k: ServerState(**v) for k, v in data.get("servers", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError) as err:  # unreadable, not JSON/UTF-8, or not a state
        raise UserError(f"deployment state {path} is unreadable ({err})",
                        "restore it from version control or delete it after stopping the servers it lists") from err
    for name, server in servers.items():
        if server.pid is not None and (type(server.pid) is not int or server.pid <= 0):  # a pid, or nothing
            raise UserError(f"deployment state {path}: server {name!r} has pid {server.pid!r}, not a positive integer",
                            "restore the state igniter wrote (or delete it after stopping the servers it lists)")
    return DeploymentState(plan=data.get("plan"), servers=servers)


def save_state(state: DeploymentState, path: Path) -> None:
    with output_errors(path, "deployment state"):
        atomic_write(path, json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n")
