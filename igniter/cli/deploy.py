"""`igniter apply`, `igniter status`, `igniter down` and `igniter demo`."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from typing import Annotated, Iterator

import click
from pydantic import ConfigDict, RootModel, StringConstraints

from igniter.cli.common import emit, fail, json_option, table, user_errors
from igniter.deployment.apply import Deployer, status as deployment_status
from igniter.deployment.frontdoor import parse_ports
from igniter.deployment import interrupt
from igniter.deployment.interrupt import Interrupted, signals_interrupt
from igniter.deployment.lock import DEFAULT_LOCK_TIMEOUT_S, writer_lock
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


lock_timeout_option = click.option("--lock-timeout", type=click.FloatRange(0, 3600), default=DEFAULT_LOCK_TIMEOUT_S,
                                   show_default=True, help="Seconds to wait for another igniter writing the same state.")


ROLLED_BACK = "rolled back: the servers it started are stopped, the state is as before"


@contextlib.contextmanager
def writing(state_dir: Path, lock_timeout_s: float, what: str, as_json: bool,
            outcome: str = ROLLED_BACK, completed_is_success: bool = False) -> Iterator[None]:
    """The one writer of ``state_dir``; SIGINT/SIGTERM/SIGHUP are handled inside (rollback, or the work finishes
    first), then exit 128+signal in the error form, saying ``outcome``. A signal that comes after an apply
    committed says so instead; with ``completed_is_success`` (`igniter apply`, whose work is then done) it is a
    note and the command carries on to exit 0, since 128+signal would claim a rollback."""
    try:
        with signals_interrupt(), writer_lock(state_dir, lock_timeout_s):
            yield
    except Interrupted as err:
        if err.completed and completed_is_success:
            click.echo(f"note: {err} came after the apply had committed: it completed", err=True)
            return
        if err.completed:  # the signal came after a commit: the work stands, no rollback is claimed
            fail(UserError(f"{what} interrupted by {err} after the apply it ran had completed: not rolled back",
                           "run `igniter status` to see what serves now", str(state_dir)), as_json, err.exit_code)
        fail(UserError(f"{what} interrupted by {err} and {outcome}", "run it again if you still want it",
                       str(state_dir)), as_json, err.exit_code)


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
@click.option("--ports", help="The front door's fixed port per workload: WORKLOAD=PORT,... (HTTP on PORT, gRPC on "
                              "PORT+1); workloads not named keep theirs (new ones get free ports once).")
@state_option
@lock_timeout_option
@json_option
@user_errors
def apply(plan: Path, server_map: Path | None, dry_run: bool, ports: str | None, state_path: Path, lock_timeout: float,
          as_json: bool) -> None:
    """Bring the running servers to PLAN behind one stable endpoint per workload (live reload, hitless moves,
    verify, roll back on failure)."""
    progress = (lambda m: click.echo(m, err=True)) if not as_json else None
    deployer = Deployer(state_path, _read_server_map(server_map), detached=True, progress=progress,
                        ports=parse_ports(ports))
    report = deployer.apply(plan, dry_run=True)  # reads only, no lock: a bad plan or state writes nothing at all
    if not dry_run:
        with writing(state_path.parent, lock_timeout, "apply", as_json, completed_is_success=True):
            deployer.apply(plan)
        report = deployer.report  # set at the commit: a signal from there on found the apply completed
    emit(report, as_json, lambda r: table(r["actions"], ["server", "action", "reason", "models"]))


@click.command()
@state_option
@json_option
@user_errors
def status(state_path: Path, as_json: bool) -> None:
    """Show what runs where and whether each server is healthy (exit 1 when not)."""
    report = deployment_status(state_path)
    emit(report, as_json, _status_text)
    if not report["healthy"]:
        sys.exit(1)


def _status_text(report: dict) -> str:
    if not report["servers"] and not report["starting"]:
        return "nothing deployed"
    door = report["frontdoor"]
    lines = [table(report["servers"])]
    for workload, entry in sorted(report["endpoints"].items()):
        replicas = ", ".join(f"{r['server']} (weight {r['weight']})" for r in entry["replicas"])
        lines.append(f"endpoint {workload}: grpc {entry['grpc']}, http {entry['http']} -> {replicas}")
    if door:
        lines.append(f"front door: pid {door['pid']}, {door['status']}")
    if report["starting"]:
        lines.append(f"an apply died while starting {', '.join(report['starting'])}: run `igniter apply` or "
                     "`igniter down` (either stops what it left)")
    return "\n".join(lines)


@click.command()
@state_option
@lock_timeout_option
@json_option
@user_errors
def down(state_path: Path, lock_timeout: float, as_json: bool) -> None:
    """Stop every server recorded in the deployment state, and any of its tagged servers the state lost."""
    load_state(state_path)  # an unreadable state is one line before anything is written (not even the lock)
    if not state_path.parent.is_dir():  # no deployment ever ran there (its servers' tags name this directory)
        emit({"stopped": []}, as_json, lambda r: "stopped 0 server(s)")
        return
    with writing(state_path.parent, lock_timeout, "down", as_json, "finished first: everything it found is stopped"):
        stopped = sorted(load_state(state_path).servers)  # names only: no health probe of servers about to stop
        with interrupt.deferred():  # half a down would leave a state naming stopped servers
            Deployer(state_path).stop_all()
    emit({"stopped": stopped}, as_json, lambda r: f"stopped {len(r['stopped'])} server(s)")
