"""`igniter apply`, `igniter status`, `igniter down` and `igniter demo`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typing import Annotated

import click
from pydantic import ConfigDict, RootModel, StringConstraints

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.deployment.apply import Deployer, status as deployment_status
from igniter.deployment.state import load_state
from igniter.errors import UserError
from igniter.schema import SafeName, load_file
from igniter.triton.server import Endpoints

DEFAULT_STATE = Path(".igniter/state.json")
state_option = click.option("--state", "state_path", type=click.Path(path_type=Path), default=DEFAULT_STATE,
                            show_default=True, help="Deployment state file (what runs where).")


class ServerMapFile(RootModel[dict[SafeName, Annotated[str, StringConstraints(min_length=1, max_length=1024)]]]):
    """--server-map: planned server name -> address of an existing Triton server (Endpoints.from_url forms)."""
    model_config = ConfigDict(strict=True)


SERVER_MAP_FIX = "write one `SERVER_NAME: http://HOST:PORT` line per server, e.g. `gpu0-w1-r0: http://10.0.0.5:8000`"


def _read_server_map(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    urls = load_file(ServerMapFile, path, "server map", SERVER_MAP_FIX).root
    for name, url in urls.items():
        try:
            Endpoints.from_url(url)
        except UserError as err:
            raise UserError(f"{name}: {err.what}", err.fix, path.name) from None
    return urls


@click.command()
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--server-map", type=click.Path(path_type=Path), help="YAML: planned server name -> URL of an existing server.")
@click.option("--dry-run", is_flag=True, help="Print the diff against the current state and change nothing.")
@state_option
@json_option
@user_errors
def apply(plan: Path, server_map: Path | None, dry_run: bool, state_path: Path, as_json: bool) -> None:
    """Bring the running servers to PLAN (live reload, verify, roll back on failure)."""
    progress = (lambda m: click.echo(m, err=True)) if not as_json else None
    report = Deployer(state_path, _read_server_map(server_map), detached=True, progress=progress).apply(plan, dry_run)
    emit(report, as_json, lambda r: table(r["actions"], ["server", "action", "reason", "models"]))


@click.command()
@state_option
@json_option
@user_errors
def status(state_path: Path, as_json: bool) -> None:
    """Show what runs where and whether each server is healthy (exit 1 when not)."""
    report = deployment_status(state_path)
    emit(report, as_json, lambda r: table(r["servers"]) if r["servers"] else "nothing deployed")
    if not report["healthy"]:
        sys.exit(1)


@click.command()
@state_option
@json_option
@user_errors
def down(state_path: Path, as_json: bool) -> None:
    """Stop every server recorded in the deployment state."""
    stopped = sorted(load_state(state_path).servers)  # names only: no health probe of servers about to stop
    Deployer(state_path).stop_all()
    emit({"stopped": stopped}, as_json, lambda r: f"stopped {len(r['stopped'])} server(s)")
