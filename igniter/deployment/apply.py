"""Bring running Triton servers to a plan: live reload where possible, verify, roll back on any failure.

Per planned server (one per workload replica, see docs/artefacts.md):
- new, dead, or its launch spec (share, pinned CPUs, MPS env) changed -> start a new process from a fresh copy of
  its repository, wait until ready; the old process (if any) is retired only after the WHOLE plan verified;
- only model configs changed (batch, instances, queue delay) -> rewrite config.pbtxt atomically and reload through
  the repository API; Triton keeps the old version serving until the new one is ready (no restart, no failed
  requests);
- servers in the state but not in the plan are retired at the end.
On failure every step done is undone in reverse order (configs restored, new processes stopped), so the previous
state keeps serving. Remote servers (--server-map) are reconfigured through config overrides only. A signal
(deployment/interrupt.py) before the commit rolls back like a failure; from the commit on the apply completes and
the signal says so (a local step registers its undo before it changes anything, so either outcome is whole).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from igniter import backends
from igniter.deployment import interrupt, orphans
from igniter.deployment.frontdoor import (FrontDoor, FrontDoorState, WorkloadPorts, assign_ports, front_doors,
                                          is_front_door, stop_front_doors, weights_from_rates)
from igniter.deployment.state import DeploymentState, ServerState, load_state, pid_alive, save_state
from igniter.errors import UserError
from igniter.ownership import child_of, contained, is_owned, make_owned_dir, mark
from igniter.provisioning.plan import REPROVISION, LaunchSpec, read_launch, read_plan
from igniter.triton.client import TritonClient
from igniter.triton.config import config_digest, driven_fields, read_config
from igniter.triton.server import (Endpoints, LocalServer, ServerLog, ServerOptions, deployment_owner, owned_by,
                                   stop_process_group)

Progress = Callable[[str], None]


@dataclass
class PlannedServer:
    name: str
    gpu: str
    share: float
    repo: Path  # plan's OUT_DIR/triton_repo/<name>
    launch: LaunchSpec
    workloads: list[str]
    models: dict[str, Path]  # model -> planned config.pbtxt

    @property
    def launch_digest(self) -> str:
        spec = self.launch.model_dump(mode="json", include={"backend", "share", "cpus", "env", "gpu"})
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class ServerAction:
    server: str
    action: str  # start | restart | reshare | reload | keep | retire
    reason: str
    models: list[str] = field(default_factory=list)  # models whose config changes


def planned_servers(plan_path: Path) -> list[PlannedServer]:
    """The plan's servers with their launch specs, through the one plan reader."""
    plan = read_plan(plan_path)
    plan_dir = plan_path if plan_path.is_dir() else plan_path.parent
    servers = []
    for gpu, entry in plan.servers():
        repo = _inside(plan_dir / "triton_repo", entry.name, "server name")
        launch = read_launch(repo / "launch.json")
        if (launch.server, launch.gpu, launch.share) != (entry.name, gpu.id, entry.share):
            raise UserError(f"launch spec of {entry.name!r} ({launch.server}, {launch.gpu}, {launch.share:g} %) does not "
                            f"match the plan ({entry.name}, {gpu.id}, {entry.share:g} %)", REPROVISION, str(repo))
        models = {m: _inside(repo, m, "model name") / "config.pbtxt" for m in launch.models}
        servers.append(PlannedServer(name=entry.name, gpu=gpu.id, share=entry.share, repo=repo, launch=launch,
                                     workloads=[entry.workload], models=models))
    return servers


def _inside(root: Path, name: str, what: str) -> Path:
    """root/name, refused unless it is one plain component that stays inside root (no '..', no link out)."""
    fix = "regenerate the plan with `igniter provision` (names are letters, digits, '.', '_' or '-')"
    path = child_of(root, name, what, fix)
    contained(path, root, what, fix)
    return path


def diff(planned: list[PlannedServer], state: DeploymentState, state_dir: Path) -> list[ServerAction]:
    actions = []
    for server in planned:
        old = state.servers.get(server.name)
        if old is None:
            actions.append(ServerAction(server.name, "start", "new server", sorted(server.models)))
        elif old.pid is not None and not owned_by(old.pid, deployment_owner(state_dir)):
            actions.append(ServerAction(server.name, "restart", f"process {old.pid} is gone (or not this deployment's)",
                                        sorted(server.models)))
        elif old.pid is not None and not is_server_copy(state_dir, Path(old.repo)):
            actions.append(ServerAction(server.name, "restart", f"{old.repo} is not a copy this deployment made",
                                        sorted(server.models)))
        elif old.launch_digest != server.launch_digest and old.pid is not None:
            actions.append(ServerAction(server.name, "reshare", f"share {old.share:g}% -> {server.share:g}%", sorted(server.models)))
        elif set(old.models) != set(server.models) and old.pid is not None:  # another model variant: a fresh copy
            actions.append(ServerAction(server.name, "restart", f"models {','.join(sorted(old.models))} -> "
                                        f"{','.join(sorted(server.models))}", sorted(server.models)))
        else:
            changed = sorted(m for m, p in server.models.items() if old.models.get(m) != config_digest(read_config(p)))
            actions.append(ServerAction(server.name, "reload" if changed else "keep",
                                        "configs changed" if changed else "up to date", changed))
    planned_names = {s.name for s in planned}
    actions += [ServerAction(name, "retire", "not in the plan") for name in sorted(state.servers) if name not in planned_names]
    return actions


def is_server_copy(state_dir: Path, repo: Path) -> bool:
    """A repository copy this deployment made: marked, directly under its marked servers/ directory."""
    root = Path(state_dir) / "servers"
    return (not repo.is_symlink() and repo.parent.resolve() == root.resolve() and is_owned(root) and is_owned(repo))


class Deployer:
    """Executes a diff transactionally. ``detached`` servers outlive this process (the CLI); the demo keeps them attached."""

    def __init__(self, state_path: Path, server_map: dict[str, str] | None = None, detached: bool = True,
                 progress: Progress | None = None, ports: dict[str, WorkloadPorts] | None = None):
        self.state_path = state_path
        self.root = state_path.parent.resolve() / "servers"  # copies recorded by absolute path: `down` from anywhere
        self.owner = deployment_owner(state_path.parent)
        self.ports = ports or {}  # --ports: workload -> the front door's fixed ports
        self.server_map = server_map or {}
        self.detached = detached
        self.progress = progress or (lambda message: None)
        self.local: dict[str, LocalServer] = {}  # servers this Deployer started and still holds
        self._undo: list[Callable[[], None]] = []
        self._retire: list[ServerState] = []
        self._state = DeploymentState()  # the state as this run found it (plus what it is starting)
        self._undo_failed: list[str] = []  # rollback steps of this apply that failed
        self.report: dict | None = None  # the last apply's, set when it commits (a signal after that finds it done)

    def apply(self, plan_path: Path, dry_run: bool = False) -> dict:
        planned = planned_servers(plan_path)
        state = load_state(self.state_path)
        actions = diff(planned, state, self.state_path.parent)
        if dry_run:
            return {"dry_run": True, "actions": [asdict(a) for a in actions]}
        started = time.monotonic()
        self._state, self._undo_failed, self.report = state, [], None
        self._clean_up_after_a_dead_run(state)
        new_state = DeploymentState(plan=str(plan_path.resolve()))
        timings = {}
        committed = False
        try:
            for server, action in zip(planned, actions):
                t0 = time.monotonic()
                new_state.servers[server.name] = self._execute(server, action, state.servers.get(server.name))
                timings[server.name] = round(time.monotonic() - t0, 3)
            for action in actions[len(planned):]:
                self._retire.append(state.servers[action.server])
            new_state.frontdoor = self._route(plan_path, state, new_state)  # new servers ready -> routes switched
            self.progress(f"commit   {self.state_path}")
            # inside the try: a signal before the block rolls back; one inside it waits for its end (the new state
            # and the retiring of the old servers happen whole) and then finds the apply completed
            with interrupt.deferred():
                save_state(new_state, self.state_path)
                committed = True
                interrupt.mark_completed()  # a signal from here on is raised saying the apply completed
                self._undo.clear()
                for old in self._retire:  # drained (Triton finishes in-flight requests), then retired; what it
                    self._stop(old)       # leaves alone is not this deployment's (said in progress), the apply stands
                self._retire.clear()      # a Deployer kept for the next apply (watch) must not retire them again
                self.report = {"dry_run": False, "actions": [asdict(a) for a in actions],
                               "seconds": round(time.monotonic() - started, 3), "seconds_per_server": timings,
                               "state": str(self.state_path), "endpoints": new_state.endpoints_by_workload()}
        except BaseException as err:
            if committed:  # the state records the new plan and it serves: nothing to roll back
                raise
            try:  # CPython runs a signal's handler at calls and backward jumps: there is none before here
                self._rollback()
            except interrupt.Interrupted as late:  # came before the rollback held signals back (or at its end):
                self._rollback()                   # roll back what is left; later signals are held back
                err = late
            undone = self._undo_failed
            if undone:  # a step that could not be undone leaves the deployment between two plans: say which
                what = err.what if isinstance(err, UserError) else str(err)
                raise UserError(f"apply failed ({what}) and was not rolled back completely: {'; '.join(undone)}",
                                "check the servers named with `igniter status` and apply the previous plan again",
                                str(self.state_path)) from err
            if isinstance(err, UserError):
                raise UserError(f"apply failed and was rolled back ({err.what})", err.fix, err.where) from err
            raise err
        return self.report

    # -- one server ---------------------------------------------------------------------------------------------
    def _execute(self, server: PlannedServer, action: ServerAction, old: ServerState | None) -> ServerState:
        self.progress(f"{action.action:8s} {server.name}: {action.reason}")
        if server.name in self.server_map:
            return self._reconfigure_remote(server, old)
        if action.action in ("start", "restart", "reshare"):
            if old is not None:  # what it replaces is retired after the commit: its process if still ours, its copy
                self._retire.append(old)
            return self._start(server)
        if action.action == "reload":
            self._reload_local(server, old, action.models)
        current = old.model_copy(update={"gpu": server.gpu, "share": server.share, "workloads": server.workloads,
                                         "models": {}})
        return self._verify(server, current, self._client_for(old))

    def _start(self, server: PlannedServer) -> ServerState:
        make_owned_dir(self.root, "igniter apply (server repository copies)", "servers directory",
                       "choose another --state directory")
        repo = self.root / f"{server.name}-{server.launch_digest}-{time.time_ns()}"
        self._undo.append(lambda: shutil.rmtree(repo, ignore_errors=True))  # first: a signal may stop the copy
        shutil.copytree(server.repo, repo, ignore=shutil.ignore_patterns("launch.json"))
        mark(repo, f"igniter apply (repository of server {server.name})")
        backend = backends.get(server.launch.backend)
        # what must run beside the server for its share to hold (the deployment's MPS daemon; nothing on a CPU host)
        env = {**server.launch.env, **backend.start_daemon(self._daemon_dir(backend))}
        options = ServerOptions(repo=repo, models=sorted(server.models), env=env, gpu=backend.gpu,
                                cpus=server.launch.cpus, detached=self.detached, owner=self.owner,
                                log_path=self.root / "logs" / f"{repo.name}.log")
        options.log_path.parent.mkdir(parents=True, exist_ok=True)
        local = LocalServer(options)
        self._undo.append(local.stop)
        self._record_starting(server.name, repo)
        with interrupt.deferred():  # a signal during the spawn would lose the pid (and a launch shim has no tag yet)
            local.spawn()
        local.wait_ready()
        self.local[server.name] = local
        endpoints = local.endpoints
        state = ServerState(name=server.name, gpu=server.gpu, share=server.share, repo=str(repo), http=endpoints.http,
                            grpc=endpoints.grpc, metrics=endpoints.metrics, pid=endpoints.pid,
                            launch_digest=server.launch_digest, workloads=server.workloads, log=str(options.log_path))
        with TritonClient.connect(local) as client:
            return self._verify(server, state, client)

    def _daemon_dir(self, backend) -> Path:
        """Where a backend's daemon keeps its pipes beside the state: applied servers outlive `igniter apply`."""
        return self.state_path.parent / backend.name

    def _reload_local(self, server: PlannedServer, old: ServerState, models: list[str]) -> None:
        with self._client_for(old) as client:
            for model in models:
                target = Path(old.repo) / model / "config.pbtxt"
                previous = target.read_bytes() if target.exists() else None
                # the undo before the change: a signal between the two must not leave the new config unrecorded
                self._undo.append(lambda t=target, p=previous, m=model, o=old: self._restore_config(o, m, t, p))
                shutil.copyfile(server.models[model], target.with_suffix(".tmp"))
                target.with_suffix(".tmp").replace(target)
                client.load(model)  # Triton re-reads the repository; old version serves until the new is ready

    def _restore_config(self, old: ServerState, model: str, target: Path, previous: bytes | None) -> None:
        if previous is None:
            return
        target.write_bytes(previous)
        if pid_alive(old.pid):
            with self._client_for(old) as client:
                if driven_fields(client.config(model)) != driven_fields(read_config(target)):
                    client.load(model)

    def _reconfigure_remote(self, server: PlannedServer, old: ServerState | None) -> ServerState:
        endpoints = Endpoints.from_url(self.server_map[server.name])
        with TritonClient.connect(endpoints) as client:
            for model, path in server.models.items():
                previous = client.config(model) if client.is_ready(model) else None
                client.load(model, read_config(path))
                if previous is not None:
                    self._undo.append(lambda m=model, c=previous, e=endpoints, n=server.name: _load_remote(n, e, m, c))
            state = ServerState(name=server.name, gpu=server.gpu, share=server.share, repo="(remote)", http=endpoints.http,
                                grpc=endpoints.grpc, metrics=endpoints.metrics, pid=None,
                                launch_digest=server.launch_digest, workloads=server.workloads)
            return self._verify(server, state, client)

    def _verify(self, server: PlannedServer, state: ServerState, client: TritonClient) -> ServerState:
        """Every model READY and its running config equal to the plan's driven fields."""
        with client:
            for model, path in sorted(server.models.items()):
                if not client.is_ready(model):
                    raise UserError(f"model {model!r} on server {server.name!r} is not READY after apply",
                                    f"read the server log {state.log or '(remote)'}")
                planned = read_config(path)
                running = driven_fields(client.config(model))
                if running != driven_fields(planned):
                    raise UserError(f"model {model!r} on {server.name!r} runs {running}, the plan says {driven_fields(planned)}",
                                    "check that nothing else reconfigures this server")
                state.models[model] = config_digest(planned)
        return state

    def _client_for(self, state: ServerState) -> TritonClient:
        log = ServerLog(Path(state.log)) if state.log else None
        return TritonClient(Endpoints(http=state.http, grpc=state.grpc, metrics=state.metrics), log_source=log)

    def _rollback(self) -> list[str]:
        """Undo every step done, newest first; returns what could not be undone (kept in ``_undo_failed`` too: a
        signal during the rollback waits for its end, then is raised instead of the return)."""
        with interrupt.deferred():
            self._undo_all()
            return self._undo_failed

    def _undo_all(self) -> None:
        self.progress("rolling back")
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception as err:  # keep undoing the rest; report what could not be undone
                self.progress(f"rollback step failed: {err}")
                self._undo_failed.append(str(err))
        self._undo.clear()
        self._retire.clear()
        # a process whose start was interrupted before this run learnt its pid: found by its tag
        orphans.stop_orphans(self.owner, [s.pid for s in self._state.servers.values()], self.progress)
        self._stop_stray_front_doors(self._state)
        if self._state.starting:
            self._state.starting.clear()
            save_state(self._state, self.state_path)

    def _route(self, plan_path: Path, old: DeploymentState, new: DeploymentState) -> FrontDoorState:
        """Point every workload's stable endpoint at its new replicas, weighted by the planned rates."""
        door = FrontDoor(self.state_path.parent, self.owner, self.detached)
        record = door.ensure(old.frontdoor)
        if old.frontdoor is None or record.pid != old.frontdoor.pid:
            self._undo.append(lambda pid=record.pid: stop_process_group(pid, timeout_s=10))
        elif old.servers:  # the old routes come back on rollback (their servers still run until the commit)
            self._undo.append(lambda: door.route(old.frontdoor, routes_of(old)))
        record = record.model_copy(deep=True)
        assign_ports(record, sorted({w for s in new.servers.values() for w in s.workloads}), self.ports)
        record.weights = weights_from_rates({entry.name: entry.rate for _, entry in read_plan(plan_path).servers()
                                             if entry.name in new.servers})
        new.frontdoor = record
        self.progress(f"route    {', '.join(f'{w} -> :{p.grpc}' for w, p in sorted(record.ports.items()))}")
        door.route(record, routes_of(new))
        return record

    def _stop_stray_front_doors(self, state: DeploymentState) -> None:
        recorded = state.frontdoor.pid if state.frontdoor else None
        for pid in front_doors(self.owner):
            if pid != recorded:
                self.progress(f"stop     orphan front door pid {pid}")
                stop_process_group(pid, timeout_s=10)

    def _remove_starting_copies(self, state: DeploymentState) -> None:
        """The repository copies of servers a dead run was starting, where they are verifiably this deployment's."""
        for repo in map(Path, state.starting.values()):
            if is_server_copy(self.state_path.parent, repo):
                shutil.rmtree(repo, ignore_errors=True)

    def _record_starting(self, name: str, repo: Path) -> None:
        """Write the state with this server as starting BEFORE its process exists (never an unrecorded server)."""
        self._state.starting[name] = str(repo)
        save_state(self._state, self.state_path)

    def _clean_up_after_a_dead_run(self, state: DeploymentState) -> None:
        """Stop what an earlier run that died (kill -9) started but never recorded, and forget its copies."""
        stopped = orphans.stop_orphans(self.owner, [s.pid for s in state.servers.values()], self.progress)
        self._stop_stray_front_doors(state)
        if stopped or state.starting:
            self._remove_starting_copies(state)
            state.starting.clear()
            save_state(state, self.state_path)

    def _stop(self, old: ServerState) -> list[str]:
        """Stop one recorded server and delete its repository copy, only where both are verifiably this
        deployment's (a hand-edited state may name any pid or directory); returns what it left alone."""
        self.progress(f"retire   {old.name} (pid {old.pid})")
        left = []
        if owned_by(old.pid, self.owner):
            stop_process_group(old.pid, timeout_s=15)
        elif pid_alive(old.pid):
            left.append(f"pid {old.pid} (not a tritonserver this deployment started)")
        if old.repo != "(remote)":
            if is_server_copy(self.state_path.parent, Path(old.repo)):
                shutil.rmtree(old.repo, ignore_errors=True)
            elif Path(old.repo).exists():
                left.append(f"{old.repo} (not a server copy under {self.root})")
        for item in left:
            self.progress(f"left alone: {item}")
        return left

    def stop_all(self) -> None:
        """Stop every server in the state (`igniter down`; the demo's cleanup). What is not this deployment's is
        left alone, dropped from the state, and reported as one error after the rest is stopped."""
        state = load_state(self.state_path)
        left = [f"server {name!r}: {item}" for name, server in state.servers.items() for item in self._stop(server)]
        for local in self.local.values():
            local.stop()
        orphans.stop_orphans(self.owner, [], self.progress)  # what the state lost (igniter killed mid-apply)
        stop_front_doors(self.owner)
        self._remove_starting_copies(state)
        for backend in backends.BACKENDS.values():
            backend.stop_daemon(self._daemon_dir(backend))
        save_state(DeploymentState(), self.state_path)
        if left:
            raise UserError(f"the state {self.state_path} named what igniter did not start; left alone: "
                            f"{'; '.join(left)}",
                            "stop or delete those yourself if they are yours; the state no longer lists them")


def routes_of(state: DeploymentState) -> dict[str, dict]:
    """workload -> {"http": [(HOST:PORT, weight)], "grpc": [...]} of the replicas ``state`` records."""
    routes: dict[str, dict] = {}
    weights = state.frontdoor.weights if state.frontdoor else {}
    for server in sorted(state.servers.values(), key=lambda s: s.name):
        for workload in server.workloads:
            entry = routes.setdefault(workload, {"http": [], "grpc": []})
            entry["http"].append((server.http, weights.get(server.name, 1)))
            entry["grpc"].append((server.grpc, weights.get(server.name, 1)))
    return routes


def _load_remote(server: str, endpoints: Endpoints, model: str, config) -> None:
    try:
        with TritonClient(endpoints) as client:
            client.load(model, config)
    except Exception as err:
        raise RuntimeError(f"{model!r} on remote server {server!r} ({endpoints.grpc}) could not be given its previous config back: "
                           f"{' '.join(str(err).split())[:200]}") from err


def status(state_path: Path) -> dict:
    """What runs where, and whether it is healthy."""
    state = load_state(state_path)
    owner = deployment_owner(state_path.parent)
    rows = []
    for server in sorted(state.servers.values(), key=lambda s: s.name):
        alive = server.pid is None or owned_by(server.pid, owner)
        ready = {}
        if alive:
            try:
                with TritonClient(Endpoints(http=server.http, grpc=server.grpc), timeout_s=5) as client:
                    ready = {m: client.is_ready(m) for m in server.models}
            except Exception:  # an unreachable server is reported, not raised
                ready = {m: False for m in server.models}
        healthy = alive and ready and all(ready.values())
        rows.append({"server": server.name, "gpu": server.gpu, "share": server.share, "pid": server.pid,
                     "grpc": server.grpc, "workloads": ",".join(server.workloads), "models": ",".join(sorted(server.models)),
                     "status": "ok" if healthy else ("down" if not alive else "degraded")})
    door = state.frontdoor
    door_up = door is not None and is_front_door(door.pid, deployment_owner(state_path.parent))
    return {"plan": state.plan, "servers": rows, "endpoints": state.endpoints_by_workload(),
            "frontdoor": None if door is None else {"pid": door.pid, "status": "ok" if door_up else "down"},
            # left by an apply that died mid-way (kill -9): the next apply or down stops them
            "starting": sorted(state.starting),
            "healthy": all(r["status"] == "ok" for r in rows) and (door is None or door_up) and not state.starting}
