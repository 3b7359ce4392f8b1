"""`igniter serve` (a local Triton in the foreground) and `igniter infer` (one inference per model, a smoke test)."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path

import click

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.errors import UserError
from igniter.ownership import is_owned
from igniter.triton.client import TritonClient, resolve_repo
from igniter.triton.demo_zoo import DEMO_MODELS, ensure_demo_repo
from igniter.triton.server import LocalServer, ServerOptions, list_repo_models, new_log_file

DEFAULT_REPO = Path("triton_repo")


def prepare_repo(repo: Path) -> Path:
    """Resolve a repository path; the bundled demo repo gets its generated weights if they are missing (only a
    repository igniter made: a user's models named like the demo's are never touched)."""
    repo = resolve_repo(repo)
    if is_owned(repo) and {m.name for m in DEMO_MODELS} <= set(list_repo_models(repo)):
        ensure_demo_repo(repo)
    return repo


@click.command()
@click.option("--repo", type=click.Path(path_type=Path), required=True, help="Triton model repository.")
@click.option("--load", "models", multiple=True, help="Model to load at start (repeatable; default: all).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--log", "log_path", type=click.Path(path_type=Path), help="Server log file (default: a temp file).")
@json_option
@user_errors
def serve(repo: Path, models: tuple[str, ...], host: str, log_path: Path | None, as_json: bool) -> None:
    """Run a local Triton server in the foreground; print ONE JSON line with its endpoints once ready."""
    repo = prepare_repo(repo)
    server = LocalServer(ServerOptions(repo=repo, models=list(models) or list_repo_models(repo), host=host,
                                       log_path=log_path or new_log_file()))  # announced: kept after exit
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        line = {**server.endpoints.to_dict(), "log": str(server.log_path), "models": server.options.models}
        click.echo(json.dumps(line))
        sys.stdout.flush()
        while not stop.is_set() and server.alive():
            stop.wait(0.5)
        if not server.alive() and not stop.is_set():
            raise UserError(f"tritonserver died: {server.log_tail()}", f"read the log at {server.log_path}")


@click.command()
@click.option("--repo", type=click.Path(path_type=Path), default=DEFAULT_REPO, show_default=True,
              help="Model repository for a local server (ignored with --server).")
@click.option("--server", "server_url", help="Use a running server (http://HOST:PORT) instead of starting one.")
@click.option("--model", "models", multiple=True, help="Model to query (repeatable; default: all in the repo).")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 1024))
@json_option
@user_errors
def infer(repo: Path, server_url: str | None, models: tuple[str, ...], batch: int, as_json: bool) -> None:
    """Run one inference per model (starting a local server on the demo models by default) and print a table."""
    with contextlib.ExitStack() as stack:
        if server_url:
            client = stack.enter_context(TritonClient.connect(server_url))
            names = list(models) or [m["name"] for m in client.index()]
        else:
            repo = prepare_repo(repo)
            names = list(models) or list_repo_models(repo)
            server = stack.enter_context(LocalServer(ServerOptions(repo=repo, models=names)))
            client = stack.enter_context(TritonClient.connect(server))
        rows = [_one_inference(client, name, batch) for name in names]
    emit({"server": server_url or "local", "results": rows}, as_json, lambda r: table(r["results"]))
    if any(r["status"] != "ok" for r in rows):
        sys.exit(1)


def _one_inference(client: TritonClient, name: str, batch: int) -> dict:
    if not client.is_ready(name):
        client.load(name)
    inputs = client.make_inputs(name, batch)
    started = time.perf_counter()
    outputs = client.infer(name, inputs)
    latency_ms = (time.perf_counter() - started) * 1e3
    shapes = {k: list(v.shape) for k, v in outputs.items()}
    ok = all(v.size > 0 for v in outputs.values())  # numpy-2 python backend bug returns 0-byte outputs
    return {"model": name, "batch": batch, "outputs": json.dumps(shapes), "latency_ms": round(latency_ms, 2),
            "status": "ok" if ok else "empty output"}
