"""Deployment state: what runs where, written by `igniter apply`, read by `igniter status` and the next apply.

<state dir>/state.json (``DeploymentState``, typed and versioned like the plan): reading another version or format
is one UserError line; an absent file is an empty deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from igniter.atomic import atomic_write
from igniter.errors import UserError
from igniter.ownership import output_errors
from igniter.schema import SafeName, Share, Strict, dump_json, read_json, validate
from igniter.triton.server import pid_alive  # noqa: F401 - re-exported for apply/status

STATE_FORMAT, STATE_VERSION = "igniter-state", 2
STATE_FIX = ("stop the servers it lists with the igniter that wrote it (igniter down --state FILE), then apply "
             "again; or move the file away after stopping them")


class ServerState(Strict):
    name: SafeName
    gpu: SafeName
    share: Share
    repo: str  # the deployed repository directory this server serves ("(remote)" for --server-map servers)
    http: str
    grpc: str
    metrics: str | None
    pid: Annotated[int, Field(gt=0)] | None  # None for remote servers
    launch_digest: str  # what forces a new process (share, cpus, env); configs alone reload live
    models: dict[str, str] = Field(default_factory=dict)  # model -> config digest
    workloads: list[str] = Field(default_factory=list)
    log: str | None = None


class DeploymentState(Strict):
    format: Literal["igniter-state"] = STATE_FORMAT
    version: Literal[2] = STATE_VERSION
    plan: str | None = None
    servers: dict[str, ServerState] = Field(default_factory=dict)

    def endpoints_by_workload(self) -> dict[str, list[dict]]:
        table: dict[str, list[dict]] = {}
        for server in self.servers.values():
            for workload in server.workloads:
                table.setdefault(workload, []).append({"server": server.name, "grpc": server.grpc, "http": server.http})
        return table


def load_state(path: Path) -> DeploymentState:
    if not path.exists():
        return DeploymentState()
    data = read_json(path, "deployment state")
    found = data.get("format") if isinstance(data, dict) else None
    if found != STATE_FORMAT:
        raise UserError(f"{path} is not an igniter deployment state (format={found!r})",
                        "pass the state.json written by igniter apply (--state)", path.name)
    if data.get("version") != STATE_VERSION:
        raise UserError(f"deployment state {path} is version {data.get('version')!r}; this igniter reads version "
                        f"{STATE_VERSION}", STATE_FIX, path.name)
    return validate(DeploymentState, data, path.name,
                    "restore it from a backup or move it away after stopping the servers it lists")


def save_state(state: DeploymentState, path: Path) -> None:
    state.servers = dict(sorted(state.servers.items()))
    with output_errors(path, "deployment state"):
        atomic_write(path, dump_json(state))
