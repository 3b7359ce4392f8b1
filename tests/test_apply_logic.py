"""The Deployer's transaction logic against hand-worked cases, with small fakes at its edges.

What is faked: the tritonserver process (FakeLocalServer: records its options, pretends to serve the repository it
was given), the gRPC client (FakeClient: the repository API of those pretend servers, able to fail on cue), the
front door (FakeFrontDoor) and the process table (which pids are alive and this deployment's). What runs for real:
planned_servers, diff, the repository copies, the state file, the undo log, verification and status. That Triton
and Caddy really behave this way is tested against the real ones in test_apply.py, test_deploy_faults.py and
test_frontdoor.py; these tests pin the decisions (order, rollback, what is reported) fast enough for mutation runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from igniter.deployment import apply
from igniter.deployment.apply import Deployer, status
from igniter.deployment.frontdoor import FrontDoorState, WorkloadPorts
from igniter.deployment.state import DeploymentState, ServerState, load_state, save_state
from igniter.errors import UserError
from igniter.ownership import MARKER, is_owned
from igniter.triton.config import config_digest, read_config, set_dynamic_batching
from igniter.triton.server import Endpoints
from tests.plan_factory import make_plan

HOST = "127.0.0.1"


@dataclass
class FakeServer:
    """One pretend Triton: the configs it runs (read from its repository on load, as Triton does)."""

    repo: Path | None
    configs: dict = field(default_factory=dict)
    not_ready: set = field(default_factory=set)   # models that never become READY
    reject: set = field(default_factory=set)      # models whose load Triton refuses


class World:
    """Every fake at once, and the ordered log of what the Deployer asked of them."""

    def __init__(self):
        self.servers: dict[str, FakeServer] = {}   # grpc address -> server
        self.alive: set[int] = set()               # pids of this deployment's live tritonservers
        self.doors: set[int] = set()               # pids of this deployment's live front doors
        self.events: list[tuple] = []
        self.fail_start: set[str] = set()          # server names whose start fails
        self.fail_stop: set[str] = set()           # server names whose stop (an undo step) fails
        self.route_failures = 0                    # how many route calls fail from now on
        self.on_route = None                       # called before each route (a server dying meanwhile)
        self.routes: list[dict] = []
        self.logs: list = []                       # the log each client was given (None: none)
        self.route_ports: list[dict] = []          # the front door's ports in each route call
        self.started: dict[str, "FakeLocalServer"] = {}
        self._ports = itertools.count(20000, 3)
        self._pids = itertools.count(5_000_001)    # above Linux's pid_max: never a real process

    def endpoints(self) -> Endpoints:
        port = next(self._ports)
        return Endpoints(http=f"{HOST}:{port}", grpc=f"{HOST}:{port + 1}", metrics=f"{HOST}:{port + 2}",
                         pid=next(self._pids))

    def serve(self, grpc: str, repo: Path | None, configs: dict) -> FakeServer:
        self.servers[grpc] = FakeServer(repo=repo, configs=dict(configs))
        return self.servers[grpc]


def install(monkeypatch, world: World, state_path: Path) -> None:
    owner = str(state_path.parent.resolve())

    class FakeLocalServer:
        def __init__(self, options):
            self.options = options
            self.endpoints = None
            self.name = options.repo.name.split("-")[0]

        def start(self):
            self.spawn()
            return self.wait_ready()

        def spawn(self):  # as LocalServer.spawn: the endpoints are known when it returns
            time.sleep(0.002)  # a start takes time: seconds_per_server is measured to the millisecond
            world.events.append(("start", self.name))
            world.events.append(("state at start", dict(load_state(state_path).starting)))
            self.endpoints = world.endpoints()
            world.started[self.name] = self

        def wait_ready(self):
            if self.name in world.fail_start:
                raise UserError(f"tritonserver could not load a model: {self.name} broke", "fix it", "log")
            world.alive.add(self.endpoints.pid)
            world.serve(self.endpoints.grpc, self.options.repo,
                        {m: read_config(self.options.repo / m / "config.pbtxt") for m in self.options.models})
            return self.endpoints

        def stop(self):
            world.events.append(("stop local", self.name))
            if self.name in world.fail_stop:
                raise RuntimeError(f"{self.name} would not stop")
            if self.endpoints is not None:
                world.alive.discard(self.endpoints.pid)

    class FakeClient:
        def __init__(self, endpoints, log_source=None, timeout_s=120.0):
            self.endpoints = endpoints
            world.logs.append(getattr(log_source, "path", log_source))  # where a load failure's reason is read

        @classmethod
        def connect(cls, server, timeout_s=10.0):
            endpoints = server.endpoints if isinstance(server, FakeLocalServer) else server
            if endpoints.grpc not in world.servers:
                raise UserError(f"no Triton server answers on gRPC at {endpoints.grpc}", "start one")
            return cls(endpoints)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def _server(self) -> FakeServer:
            if self.endpoints.grpc not in world.servers:
                raise ConnectionError(f"{self.endpoints.grpc} unreachable")
            return world.servers[self.endpoints.grpc]

        def load(self, name, config=None):
            server = self._server()
            world.events.append(("load", self.endpoints.grpc, name, None if config is None else
                                 config.dynamic_batching.preferred_batch_size[0]))
            if name in server.reject:
                raise UserError(f"Triton rejected model {name!r}: bad", "fix the model's config.pbtxt")
            server.configs[name] = config if config is not None else read_config(server.repo / name / "config.pbtxt")

        def is_ready(self, name):
            server = self._server()
            return name in server.configs and name not in server.not_ready

        def config(self, name):
            return self._server().configs[name]

    class FakeFrontDoor:
        def __init__(self, state_dir, owner_, detached):
            assert owner_ == owner and Path(state_dir) == state_path.parent

        def ensure(self, record):
            if record is not None and record.pid in world.doors:
                return record
            pid = next(world._pids)
            world.doors.add(pid)
            world.events.append(("door started", pid))
            return FrontDoorState(pid=pid, admin=f"{HOST}:2019", ports=record.ports if record else {})

        def route(self, record, routes):
            world.events.append(("route", record.pid))
            world.route_ports.append(dict(record.ports))
            if world.on_route is not None:
                world.on_route()
            if world.route_failures > 0:
                world.route_failures -= 1
                raise UserError("the front door refused the new routes: no", "choose free ports")
            world.routes.append(routes)

    def owned_by(pid, owner_):
        return owner_ == owner and pid in world.alive

    def stop_process_group(pid, timeout_s, wait=None):
        world.events.append(("stop pid", pid, timeout_s))
        world.alive.discard(pid)
        world.doors.discard(pid)

    monkeypatch.setattr(apply, "LocalServer", FakeLocalServer)
    monkeypatch.setattr(apply, "TritonClient", FakeClient)
    monkeypatch.setattr(apply, "FrontDoor", FakeFrontDoor)
    monkeypatch.setattr(apply, "owned_by", owned_by)
    monkeypatch.setattr(apply, "pid_alive", lambda pid: pid in world.alive)
    monkeypatch.setattr(apply, "stop_process_group", stop_process_group)
    monkeypatch.setattr(apply, "is_front_door", lambda pid, owner_: owner_ == owner and pid in world.doors)


@pytest.fixture()
def world(monkeypatch, tmp_path):
    w = World()
    install(monkeypatch, w, tmp_path / "state" / "state.json")
    return w


def state_path_of(tmp_path) -> Path:
    return tmp_path / "state" / "state.json"


def two_servers(tmp_path, demo_repo, **changes):
    """Servers a (rate 30) and b (rate 15), one replica each of workload w, tinynet at batch 1."""
    specs = [{"name": "a", "model": "tinynet", "batch": 1, "workload": "w", "rate": 30.0, "share": 40.0},
             {"name": "b", "model": "tinynet", "batch": 1, "workload": "w", "rate": 15.0, "share": 40.0}]
    for spec in specs:
        spec.update(changes.get(spec["name"], {}))
    return make_plan(tmp_path / "plan", demo_repo, specs)


def made_by(directory: Path) -> str:
    return json.loads((directory / MARKER).read_text())["made_by"]


def planned_config(plan: Path, server: str):
    return read_config(plan.parent / "triton_repo" / server / "tinynet" / "config.pbtxt")


PORTS = {"w": WorkloadPorts(http=9000, grpc=9001)}


def deployer_of(tmp_path, said=None, **kwargs) -> Deployer:
    return Deployer(state_path_of(tmp_path), ports=PORTS, progress=(said.append if said is not None else None),
                    **kwargs)


# -- a first apply ------------------------------------------------------------------------------------------------

def test_a_first_apply_starts_verifies_routes_and_records_each_server(world, demo_repo, tmp_path):
    plan = two_servers(tmp_path, demo_repo)
    said = []
    result = deployer_of(tmp_path, said, detached=False).apply(plan)
    a, b = world.started["a"], world.started["b"]
    state_dir = (tmp_path / "state").resolve()
    # order: a's state records it as starting before its process exists, then b, then the routes
    assert [e for e in world.events if e[0] != "load"] == [
        ("start", "a"), ("state at start", {"a": str(a.options.repo)}),
        ("start", "b"), ("state at start", {"a": str(a.options.repo), "b": str(b.options.repo)}),
        ("door started", 5_000_003), ("route", 5_000_003)]
    for local, name in ((a, "a"), (b, "b")):
        repo = local.options.repo
        assert repo.parent == state_dir / "servers" and repo.name.startswith(f"{name}-")
        assert is_owned(repo) and is_owned(repo.parent) and not (repo / "launch.json").exists()
        assert made_by(repo) == f"igniter apply (repository of server {name})"
        assert made_by(repo.parent) == "igniter apply (server repository copies)"
        assert (repo / "tinynet" / "config.pbtxt").read_bytes() == \
            (plan.parent / "triton_repo" / name / "tinynet" / "config.pbtxt").read_bytes()
        opts = local.options
        assert (opts.models, opts.env, opts.cpus, opts.detached, opts.owner, opts.gpu) == \
            (["tinynet"], {"OMP_NUM_THREADS": "1"}, [0], False, str(state_dir), False)
        assert opts.log_path == state_dir / "servers" / "logs" / f"{repo.name}.log" and opts.log_path.parent.is_dir()
    # weights 30:15 -> 100:50 -> 2:1; the fixed ports of --ports
    assert world.routes == [{"w": {"http": [(a.endpoints.http, 2), (b.endpoints.http, 1)],
                                   "grpc": [(a.endpoints.grpc, 2), (b.endpoints.grpc, 1)]}}]
    saved = load_state(state_path_of(tmp_path))
    assert saved.plan == str(plan.resolve()) and saved.starting == {}
    assert saved.frontdoor == FrontDoorState(pid=5_000_003, admin=f"{HOST}:2019", ports=PORTS, weights={"a": 2, "b": 1})
    assert saved.servers["a"] == ServerState(
        name="a", gpu="host0", share=40.0, repo=str(a.options.repo), http=a.endpoints.http, grpc=a.endpoints.grpc,
        metrics=a.endpoints.metrics, pid=a.endpoints.pid, launch_digest=apply.planned_servers(plan)[0].launch_digest,
        models={"tinynet": config_digest(planned_config(plan, "a"))}, workloads=["w"], log=str(a.options.log_path))
    assert saved.servers["b"].pid == b.endpoints.pid
    assert result["dry_run"] is False and result["state"] == str(state_path_of(tmp_path))
    assert result["actions"] == [{"server": "a", "action": "start", "reason": "new server", "models": ["tinynet"]},
                                 {"server": "b", "action": "start", "reason": "new server", "models": ["tinynet"]}]
    assert set(result["seconds_per_server"]) == {"a", "b"} and result["seconds"] >= 0.004
    assert all(type(t) is float and 0.002 <= t == round(t, 3) for t in result["seconds_per_server"].values())
    assert result["endpoints"]["w"]["grpc"] == f"{HOST}:9001"
    assert [r["weight"] for r in result["endpoints"]["w"]["replicas"]] == [2, 1]
    assert said == ["start    a: new server", "start    b: new server", "route    w -> :9001",
                    f"commit   {state_path_of(tmp_path)}"]


def test_a_servers_directory_igniter_did_not_make_is_refused(world, demo_repo, tmp_path):
    servers = tmp_path / "state" / "servers"
    servers.mkdir(parents=True)
    (servers / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    assert caught.value.what == (f"apply failed and was rolled back (servers directory {servers.resolve()} is not an "
                                 f"igniter output (it has no {MARKER} marker))")
    assert caught.value.fix == "choose another --state directory"
    assert (servers / "notes.txt").read_text() == "mine" and world.started == {}


@pytest.mark.parametrize("what", ["server name", "model name"])
def test_a_plan_whose_server_or_model_directory_leads_outside_it_is_refused(world, demo_repo, tmp_path, what):
    plan = two_servers(tmp_path, demo_repo)
    inside = plan.parent / "triton_repo" / "a"
    if what == "model name":
        inside = inside / "tinynet"
    outside = tmp_path / "elsewhere"
    inside.rename(outside)
    inside.symlink_to(outside)
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(plan)
    assert caught.value.what == f"{what} {inside} resolves to {outside.resolve()}, outside {inside.parent.resolve()}"
    assert caught.value.fix == ("regenerate the plan with `igniter provision` (names are letters, digits, '.', '_' "
                                "or '-')")
    assert world.events == []


def test_a_dry_run_does_nothing(world, demo_repo, tmp_path):
    plan = two_servers(tmp_path, demo_repo)
    result = deployer_of(tmp_path).apply(plan, dry_run=True)
    assert result == {"dry_run": True, "actions": [
        {"server": "a", "action": "start", "reason": "new server", "models": ["tinynet"]},
        {"server": "b", "action": "start", "reason": "new server", "models": ["tinynet"]}]}
    assert world.events == [] and not state_path_of(tmp_path).exists()


def applied(world, demo_repo, tmp_path, **changes):
    """Both servers applied once (by another Deployer, as a second `igniter apply` finds them)."""
    plan = two_servers(tmp_path, demo_repo, **changes)
    deployer_of(tmp_path).apply(plan)
    world.events.clear()
    world.routes.clear()
    world.logs.clear()
    return load_state(state_path_of(tmp_path))


# -- a second apply ----------------------------------------------------------------------------------------------

def test_the_same_plan_again_keeps_every_server_and_only_verifies(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    plan = two_servers(tmp_path, demo_repo)
    result = deployer_of(tmp_path).apply(plan)
    assert [a["action"] for a in result["actions"]] == ["keep", "keep"]
    assert world.events == [("route", before.frontdoor.pid)]  # no start, no load, no stop; the same front door
    after = load_state(state_path_of(tmp_path))
    assert after.servers == before.servers and after.frontdoor == before.frontdoor


def test_a_kept_server_takes_the_plans_workloads_and_share_and_keeps_its_process(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    plan = two_servers(tmp_path, demo_repo, b={"workload": "v"})  # a workload renamed: no new process
    deployer_of(tmp_path).apply(plan)
    after = load_state(state_path_of(tmp_path))
    assert after.servers["b"] == before.servers["b"].model_copy(update={"workloads": ["v"]})
    assert after.servers["a"] == before.servers["a"]
    assert set(world.routes[0]) == {"v", "w"} and world.routes[0]["v"]["http"] == [(before.servers["b"].http, 1)]


def test_a_changed_config_is_reloaded_in_place_and_recorded(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    plan = two_servers(tmp_path, demo_repo, b={"batch": 4})
    said = []
    result = deployer_of(tmp_path, said).apply(plan)
    assert result["actions"][1] == {"server": "b", "action": "reload", "reason": "configs changed",
                                    "models": ["tinynet"]}
    old_b = before.servers["b"]
    assert world.events == [("load", old_b.grpc, "tinynet", None), ("route", before.frontdoor.pid)]
    target = Path(old_b.repo) / "tinynet" / "config.pbtxt"
    assert target.read_bytes() == (plan.parent / "triton_repo" / "b" / "tinynet" / "config.pbtxt").read_bytes()
    assert not target.with_suffix(".tmp").exists()
    assert world.servers[old_b.grpc].configs["tinynet"].dynamic_batching.preferred_batch_size == [4]
    after = load_state(state_path_of(tmp_path))
    assert after.servers["b"] == old_b.model_copy(update={"models": {"tinynet": config_digest(planned_config(plan, "b"))}})
    assert after.servers["b"].models != old_b.models
    assert "reload   b: configs changed" in said
    assert Path(old_b.log) in world.logs  # the reload's client reads b's log for Triton's reason of a refusal


def test_a_new_share_starts_a_new_process_and_retires_the_old_only_after_the_commit(world, demo_repo, tmp_path,
                                                                                     monkeypatch):
    before = applied(world, demo_repo, tmp_path)
    old_b = before.servers["b"]
    saved_at_stop = []
    real_stop = apply.stop_process_group

    def stop(pid, timeout_s, wait=None):
        saved_at_stop.append(load_state(state_path_of(tmp_path)).servers["b"].pid)
        real_stop(pid, timeout_s, wait)
    monkeypatch.setattr(apply, "stop_process_group", stop)
    said = []
    result = deployer_of(tmp_path, said).apply(two_servers(tmp_path, demo_repo, b={"share": 30.0}))
    new_b = world.started["b"]
    assert result["actions"][1] == {"server": "b", "action": "reshare", "reason": "share 40% -> 30%",
                                    "models": ["tinynet"]}
    kinds = [e[0] for e in world.events if e[0] not in ("load", "state at start")]
    assert kinds == ["start", "route", "stop pid"]
    assert world.events[-1] == ("stop pid", old_b.pid, 15)
    assert saved_at_stop == [new_b.endpoints.pid]  # the new state was written before the old process stopped
    assert not Path(old_b.repo).exists() and new_b.options.repo.exists()
    after = load_state(state_path_of(tmp_path))
    assert (after.servers["b"].pid, after.servers["b"].share) == (new_b.endpoints.pid, 30.0)
    assert world.routes[0]["w"]["http"][1] == (new_b.endpoints.http, 1)
    assert f"retire   b (pid {old_b.pid})" in said


def test_a_server_gone_from_the_plan_is_retired_after_the_commit(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    plan = make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 1, "workload": "w",
                                                      "rate": 30.0, "share": 40.0}])
    result = deployer_of(tmp_path).apply(plan)
    assert result["actions"] == [{"server": "a", "action": "keep", "reason": "up to date", "models": []},
                                 {"server": "b", "action": "retire", "reason": "not in the plan", "models": []}]
    assert world.events == [("route", before.frontdoor.pid), ("stop pid", before.servers["b"].pid, 15)]
    assert world.routes == [{"w": {"http": [(before.servers["a"].http, 1)], "grpc": [(before.servers["a"].grpc, 1)]}}]
    assert set(load_state(state_path_of(tmp_path)).servers) == {"a"} and not Path(before.servers["b"].repo).exists()


def test_a_copy_that_cannot_be_removed_stops_neither_a_retire_nor_a_rollback(world, demo_repo, tmp_path,
                                                                               monkeypatch):
    before = applied(world, demo_repo, tmp_path)
    retire_b = make_plan(tmp_path / "plan", demo_repo, [{"name": "a", "model": "tinynet", "batch": 1, "workload": "w",
                                                          "rate": 30.0, "share": 40.0}])
    start_c = make_plan(tmp_path / "plan-c", demo_repo, [{"name": "c", "model": "tinynet", "batch": 1}])
    refused = []

    def rmtree(path, ignore_errors=False):  # a filesystem that refuses every removal
        refused.append(Path(path))
        if not ignore_errors:
            raise OSError(f"cannot remove {path}")
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    deployer_of(tmp_path).apply(retire_b)  # b retired: its copy stays, the apply stands
    assert refused == [Path(before.servers["b"].repo)] and set(load_state(state_path_of(tmp_path)).servers) == {"a"}
    world.fail_start.add("c")
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(start_c)
    assert caught.value.what.startswith("apply failed and was rolled back (")  # not "not rolled back completely"
    assert refused[-1] == world.started["c"].options.repo


def test_starting_copies_that_cannot_be_removed_do_not_stop_down(world, tmp_path, monkeypatch):
    path = state_path_of(tmp_path)
    copy = tmp_path / "state" / "servers" / "x-1"
    copy.mkdir(parents=True)
    for directory in (copy.parent, copy):
        (directory / MARKER).write_text(json.dumps({"format": "igniter-owned", "made_by": "test"}))
    save_state(DeploymentState(starting={"x": str(copy)}), path)
    refused = []

    def rmtree(path, ignore_errors=False):  # a filesystem that refuses every removal
        refused.append(path)
        if not ignore_errors:
            raise OSError(f"cannot remove {path}")
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    Deployer(path).stop_all()
    assert refused == [copy] and load_state(path) == DeploymentState()


def test_a_recorded_server_without_a_log_is_still_verified_and_reloaded(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)  # an older state file may lack the log
    save_state(before.model_copy(update={"servers": {n: s.model_copy(update={"log": None})
                                                     for n, s in before.servers.items()}}), state_path_of(tmp_path))
    result = deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo, b={"batch": 4}))
    assert [a["action"] for a in result["actions"]] == ["keep", "reload"]


def test_a_launch_spec_that_disagrees_with_the_plan_asks_for_a_new_plan(world, demo_repo, tmp_path):
    from igniter.provisioning.plan import REPROVISION
    from igniter.schema import dump_json
    plan = two_servers(tmp_path, demo_repo)
    launch_path = plan.parent / "triton_repo" / "b" / "launch.json"
    launch = apply.read_launch(launch_path)
    launch_path.write_text(dump_json(launch.model_copy(update={"share": 30.0})))
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(plan)
    assert caught.value.what == "launch spec of 'b' (b, host0, 30 %) does not match the plan (b, host0, 40 %)"
    assert (caught.value.fix, caught.value.where) == (REPROVISION, str(launch_path.parent))
    assert world.events == []


def test_a_remote_undo_error_is_cut_at_200_characters(monkeypatch):
    class Refusing:
        def __init__(self, endpoints, log_source=None, timeout_s=120.0):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def load(self, model, config=None):
            raise RuntimeError("x" * 150 + " \n " + "y" * 150)
    monkeypatch.setattr(apply, "TritonClient", Refusing)
    with pytest.raises(RuntimeError) as caught:
        apply._load_remote("a", Endpoints(http=f"{HOST}:1", grpc=f"{HOST}:2"), "m", None)
    assert str(caught.value) == (f"'m' on remote server 'a' ({HOST}:2) could not be given its previous config back: "
                                 + "x" * 150 + " " + "y" * 49)


def test_a_server_whose_process_died_is_restarted(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    world.alive.discard(before.servers["a"].pid)
    result = deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    assert result["actions"][0]["action"] == "restart"
    assert [e for e in world.events if e[0] == "start"] == [("start", "a")]
    assert load_state(state_path_of(tmp_path)).servers["a"].pid == world.started["a"].endpoints.pid
    # the dead process is not signalled; its repository copy is removed after the commit (it used to stay behind)
    assert not [e for e in world.events if e[0] == "stop pid"] and not Path(before.servers["a"].repo).exists()


def test_a_server_given_another_model_is_restarted_from_a_fresh_copy(world, demo_repo, tmp_path):
    """A workload's model variant changes under the same server name and share: the old copy has no files for
    the new model, so it cannot be reloaded in place (it used to fail with FileNotFoundError)."""
    before = applied(world, demo_repo, tmp_path)
    plan = two_servers(tmp_path, demo_repo, b={"model": "mlp"})
    result = deployer_of(tmp_path).apply(plan)
    assert result["actions"][1] == {"server": "b", "action": "restart", "reason": "models tinynet -> mlp",
                                    "models": ["mlp"]}
    new_b = world.started["b"]
    assert (new_b.options.repo / "mlp" / "config.pbtxt").exists() and new_b.options.models == ["mlp"]
    assert world.events[-1] == ("stop pid", before.servers["b"].pid, 15)  # the old process retired at the end
    saved = load_state(state_path_of(tmp_path)).servers["b"]
    assert saved.pid == new_b.endpoints.pid and list(saved.models) == ["mlp"]
    assert not Path(before.servers["b"].repo).exists()


def test_the_restart_reason_lists_every_model_both_ways(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    two_models = before.servers["b"].model_copy(update={"models": {"tinynet": "x", "mlp": "y"}})
    state = before.model_copy(update={"servers": {**before.servers, "b": two_models}})
    planned = apply.planned_servers(two_servers(tmp_path, demo_repo))
    actions = apply.diff(planned, state, tmp_path / "state")
    assert (actions[1].action, actions[1].reason) == ("restart", "models mlp,tinynet -> tinynet")
    config = planned[1].models["tinynet"]
    planned[1] = dataclasses.replace(planned[1], models={"tinynet": config, "mlp": config})
    actions = apply.diff(planned, before, tmp_path / "state")
    assert (actions[1].action, actions[1].reason, actions[1].models) == ("restart", "models tinynet -> mlp,tinynet",
                                                                         ["mlp", "tinynet"])


# -- rollback ----------------------------------------------------------------------------------------------------

def test_a_start_that_fails_stops_what_started_before_it_and_keeps_the_old_state(world, demo_repo, tmp_path):
    plan = two_servers(tmp_path, demo_repo)
    world.fail_start.add("b")
    said = []
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path, said).apply(plan)
    assert caught.value.what == "apply failed and was rolled back (tritonserver could not load a model: b broke)"
    assert (caught.value.fix, caught.value.where) == ("fix it", "log")
    a, b = world.started["a"], world.started["b"]
    assert world.events[-2:] == [("stop local", "b"), ("stop local", "a")]  # newest first
    assert world.alive == set() and not a.options.repo.exists() and not b.options.repo.exists()
    assert load_state(state_path_of(tmp_path)) == DeploymentState()  # no server, nothing left "starting"
    assert "rolling back" in said


def test_a_failed_reshare_stops_the_new_process_and_leaves_the_old_one_serving(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    world.route_failures = 1  # the last step fails: everything before it is undone
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo, b={"share": 30.0}))
    assert caught.value.what == "apply failed and was rolled back (the front door refused the new routes: no)"
    new_b = world.started["b"]
    assert before.servers["b"].pid in world.alive and new_b.endpoints.pid not in world.alive
    assert ("stop pid", before.servers["b"].pid, 15) not in world.events
    # the old routes are put back on the front door that kept running
    assert world.routes == [{"w": {"http": [(before.servers["a"].http, 2), (before.servers["b"].http, 1)],
                                   "grpc": [(before.servers["a"].grpc, 2), (before.servers["b"].grpc, 1)]}}]
    assert load_state(state_path_of(tmp_path)).servers == before.servers and Path(before.servers["b"].repo).exists()


def test_a_reload_that_fails_verification_gets_its_old_config_back(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    old_b = before.servers["b"]
    target = Path(old_b.repo) / "tinynet" / "config.pbtxt"
    original = target.read_bytes()
    world.servers[old_b.grpc].not_ready.add("tinynet")
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo, b={"batch": 4}))
    assert caught.value.what == "apply failed and was rolled back (model 'tinynet' on server 'b' is not READY after apply)"
    assert caught.value.fix == f"read the server log {old_b.log}"
    assert target.read_bytes() == original
    # loaded at batch 4, then reloaded from the restored file (batch 1) since the server ran the new one
    assert world.events == [("load", old_b.grpc, "tinynet", None), ("load", old_b.grpc, "tinynet", None)]
    assert world.servers[old_b.grpc].configs["tinynet"].dynamic_batching.preferred_batch_size == [1]
    assert load_state(state_path_of(tmp_path)).servers == before.servers


def test_a_rejected_reload_restores_the_file_without_reloading_what_still_runs(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    old_a, old_b = before.servers["a"], before.servers["b"]
    world.servers[old_b.grpc].reject.add("tinynet")
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo, a={"batch": 2}, b={"batch": 4}))
    assert caught.value.what == "apply failed and was rolled back (Triton rejected model 'tinynet': bad)"
    assert caught.value.fix == "fix the model's config.pbtxt"
    # a: loaded, then reloaded after its file came back; b: its load was refused, it still runs the old config
    assert world.events == [("load", old_a.grpc, "tinynet", None), ("load", old_b.grpc, "tinynet", None),
                            ("load", old_a.grpc, "tinynet", None)]
    for server in (old_a, old_b):
        assert read_config(Path(server.repo) / "tinynet" / "config.pbtxt").dynamic_batching.preferred_batch_size == [1]


def test_a_reload_whose_server_died_meanwhile_only_gets_its_file_back(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    old_b = before.servers["b"]
    world.route_failures = 1
    world.on_route = lambda: world.alive.discard(old_b.pid)
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo, b={"batch": 4}))
    assert caught.value.what == "apply failed and was rolled back (the front door refused the new routes: no)"
    assert [e for e in world.events if e[0] == "load"] == [("load", old_b.grpc, "tinynet", None)]  # none when dead
    assert read_config(Path(old_b.repo) / "tinynet" / "config.pbtxt").dynamic_batching.preferred_batch_size == [1]


def test_verification_catches_a_server_that_runs_another_config(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    running = world.servers[before.servers["a"].grpc].configs
    running["tinynet"] = set_dynamic_batching(read_config(Path(before.servers["a"].repo) / "tinynet" / "config.pbtxt"),
                                              [8], 1000)  # something else reconfigured it
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    what = caught.value.what
    assert what.startswith("apply failed and was rolled back (model 'tinynet' on 'a' runs {")
    assert "'preferred_batch_size': [8]" in what and "the plan says {" in what and "'preferred_batch_size': [1]" in what
    assert caught.value.fix == "check that nothing else reconfigures this server"
    assert load_state(state_path_of(tmp_path)) == before


def test_a_new_front_door_is_stopped_when_the_apply_fails(world, demo_repo, tmp_path):
    world.route_failures = 1
    with pytest.raises(UserError):
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    door = next(e[1] for e in world.events if e[0] == "door started")
    assert ("stop pid", door, 10) in world.events and world.doors == set()
    assert world.alive == set() and load_state(state_path_of(tmp_path)) == DeploymentState()


def test_a_front_door_that_died_is_replaced_and_the_replacement_stopped_on_failure(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    world.doors.clear()
    world.route_failures = 1
    with pytest.raises(UserError):
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    (door,) = [e[1] for e in world.events if e[0] == "door started"]
    assert door != before.frontdoor.pid and ("stop pid", door, 10) in world.events
    assert world.routes == []  # no route put back on a front door that is gone


def test_a_failed_apply_puts_the_old_routes_back_on_the_old_ports(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    world.route_ports.clear()
    world.route_failures = 1
    with pytest.raises(UserError):
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo, b={"workload": "v"}))  # v gets new ports
    new_ports, restored_ports = world.route_ports
    assert set(new_ports) == {"v", "w"} and restored_ports == {"w": PORTS["w"]}
    assert load_state(state_path_of(tmp_path)).frontdoor == before.frontdoor


def test_the_backend_daemon_runs_beside_the_state_and_its_env_reaches_the_server(world, demo_repo, tmp_path,
                                                                                  monkeypatch):
    asked = []

    class GpuBackend:  # stands in for the MPS backend (GPU only): what apply asks of it and passes on
        name, gpu = "fakegpu", True

        def start_daemon(self, base):
            asked.append(base)
            return {"CUDA_MPS_PIPE_DIRECTORY": str(base / "pipe")}
    monkeypatch.setattr(apply.backends, "get", lambda name: GpuBackend())
    deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    base = tmp_path / "state" / "fakegpu"
    assert asked == [base, base]
    options = world.started["a"].options
    assert options.gpu is True
    assert options.env == {"OMP_NUM_THREADS": "1", "CUDA_MPS_PIPE_DIRECTORY": str(base / "pipe")}


def test_a_state_file_that_is_not_json_is_one_line_naming_it(world, demo_repo, tmp_path):
    path = state_path_of(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{")
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    assert caught.value.what.startswith("deployment state is not valid JSON: ")
    assert (caught.value.fix, caught.value.where) == ("regenerate it or fix the JSON", "state.json")
    assert world.events == [] and path.read_text() == "{"


def test_an_undo_that_fails_is_named_and_the_rest_still_undone(world, demo_repo, tmp_path):
    world.fail_start.add("b")
    world.fail_stop.add("a")
    said = []
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path, said).apply(two_servers(tmp_path, demo_repo))
    assert caught.value.what == ("apply failed (tritonserver could not load a model: b broke) and was not rolled "
                                 "back completely: a would not stop")
    assert caught.value.fix == "check the servers named with `igniter status` and apply the previous plan again"
    assert caught.value.where == str(state_path_of(tmp_path))
    assert not world.started["a"].options.repo.exists()  # the step before the failed one still ran
    assert "rollback step failed: a would not stop" in said


def test_an_error_that_is_not_a_user_error_is_rolled_back_and_raised_as_it_is(world, demo_repo, tmp_path,
                                                                               monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("weights")
    monkeypatch.setattr(apply, "weights_from_rates", broken)
    with pytest.raises(ZeroDivisionError):
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    assert world.alive == set() and load_state(state_path_of(tmp_path)) == DeploymentState()


def test_an_error_other_than_a_user_error_whose_undo_fails_is_one_line(world, demo_repo, tmp_path, monkeypatch):
    world.fail_stop.add("a")
    monkeypatch.setattr(apply, "weights_from_rates", lambda rates: 1 / 0)
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path).apply(two_servers(tmp_path, demo_repo))
    assert caught.value.what == ("apply failed (division by zero) and was not rolled back completely: "
                                 "a would not stop")


def test_a_deployer_kept_for_the_next_apply_does_not_retire_twice(world, demo_repo, tmp_path):
    applied(world, demo_repo, tmp_path)
    said = []
    deployer = deployer_of(tmp_path, said)
    deployer.apply(two_servers(tmp_path, demo_repo, b={"share": 30.0}))
    deployer.apply(two_servers(tmp_path, demo_repo, b={"share": 30.0}))
    assert [line.split(" (")[0] for line in said if line.startswith("retire")] == ["retire   b"]


# -- remote servers (--server-map) -------------------------------------------------------------------------------

def remote_world(world, plan):
    """a and b already run remotely at http://HOST:8000 and :8010, tinynet at batch 2."""
    configs = {}
    for name, port in (("a", 8000), ("b", 8010)):
        cfg = set_dynamic_batching(planned_config(plan, name), [2], 1000)
        configs[name] = world.serve(f"{HOST}:{port + 1}", None, {"tinynet": cfg})
    return {"a": f"http://{HOST}:8000", "b": f"http://{HOST}:8010"}, configs


def test_a_remote_apply_loads_the_planned_configs_and_records_no_process(world, demo_repo, tmp_path):
    plan = two_servers(tmp_path, demo_repo)
    server_map, _ = remote_world(world, plan)
    deployer_of(tmp_path, server_map=server_map).apply(plan)
    assert [e for e in world.events if e[0] != "route" and e[0] != "door started"] == [
        ("load", f"{HOST}:8001", "tinynet", 1), ("load", f"{HOST}:8011", "tinynet", 1)]
    assert world.started == {}
    saved = load_state(state_path_of(tmp_path))
    assert saved.servers["a"] == ServerState(
        name="a", gpu="host0", share=40.0, repo="(remote)", http=f"{HOST}:8000", grpc=f"{HOST}:8001",
        metrics=f"{HOST}:8002", pid=None, launch_digest=apply.planned_servers(plan)[0].launch_digest,
        models={"tinynet": config_digest(planned_config(plan, "a"))}, workloads=["w"])
    assert world.routes[0]["w"]["grpc"] == [(f"{HOST}:8001", 2), (f"{HOST}:8011", 1)]


def test_a_failed_remote_apply_gives_each_remote_its_previous_config_back(world, demo_repo, tmp_path):
    plan = two_servers(tmp_path, demo_repo)
    server_map, servers = remote_world(world, plan)
    servers["b"].reject.add("tinynet")
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path, server_map=server_map).apply(plan)
    assert caught.value.what == "apply failed and was rolled back (Triton rejected model 'tinynet': bad)"
    assert world.events == [("load", f"{HOST}:8001", "tinynet", 1), ("load", f"{HOST}:8011", "tinynet", 1),
                            ("load", f"{HOST}:8001", "tinynet", 2)]  # b refused: nothing of it to give back
    assert servers["a"].configs["tinynet"].dynamic_batching.preferred_batch_size == [2]


def test_a_remote_model_that_was_not_loaded_is_not_given_back_anything(world, demo_repo, tmp_path):
    plan = two_servers(tmp_path, demo_repo)
    server_map, servers = remote_world(world, plan)
    servers["a"].configs.clear()   # not loaded before the apply
    servers["b"].not_ready.add("tinynet")
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path, server_map=server_map).apply(plan)
    assert caught.value.what == "apply failed and was rolled back (model 'tinynet' on server 'b' is not READY after apply)"
    assert caught.value.fix == "read the server log (remote)"
    # neither was READY before: nothing to give back
    assert world.events == [("load", f"{HOST}:8001", "tinynet", 1), ("load", f"{HOST}:8011", "tinynet", 1)]


def test_a_remote_whose_old_config_cannot_come_back_is_reported(world, demo_repo, tmp_path, monkeypatch):
    plan = two_servers(tmp_path, demo_repo)
    server_map, servers = remote_world(world, plan)
    servers["b"].reject.add("tinynet")

    def refuse_old_config(*args):
        raise RuntimeError("'tinynet' on remote server 'a' could not be given its previous config back")
    monkeypatch.setattr(apply, "_load_remote", refuse_old_config)
    with pytest.raises(UserError) as caught:
        deployer_of(tmp_path, server_map=server_map).apply(plan)
    assert caught.value.what == ("apply failed (Triton rejected model 'tinynet': bad) and was not rolled back "
                                 "completely: 'tinynet' on remote server 'a' could not be given its previous config back")


# -- status ------------------------------------------------------------------------------------------------------

def test_status_of_healthy_and_degraded_servers(world, demo_repo, tmp_path):
    before = applied(world, demo_repo, tmp_path)
    got = status(state_path_of(tmp_path))
    assert [(r["server"], r["status"]) for r in got["servers"]] == [("a", "ok"), ("b", "ok")]
    assert got["frontdoor"] == {"pid": before.frontdoor.pid, "status": "ok"}
    assert got["healthy"] is True and got["starting"] == [] and got["plan"] == before.plan
    assert got["servers"][0] == {"server": "a", "gpu": "host0", "share": 40.0, "pid": before.servers["a"].pid,
                                 "grpc": before.servers["a"].grpc, "workloads": "w", "models": "tinynet",
                                 "status": "ok"}
    assert got["endpoints"] == before.endpoints_by_workload()
    world.servers[before.servers["b"].grpc].not_ready.add("tinynet")
    got = status(state_path_of(tmp_path))
    assert [r["status"] for r in got["servers"]] == ["ok", "degraded"] and got["healthy"] is False
    del world.servers[before.servers["b"].grpc]  # unreachable: reported, not raised
    assert [r["status"] for r in status(state_path_of(tmp_path))["servers"]] == ["ok", "degraded"]
    world.alive.discard(before.servers["b"].pid)
    assert [r["status"] for r in status(state_path_of(tmp_path))["servers"]] == ["ok", "down"]


def test_status_of_a_remote_server_and_a_dead_front_door(world, demo_repo, tmp_path):
    plan = two_servers(tmp_path, demo_repo)
    server_map, _ = remote_world(world, plan)
    deployer_of(tmp_path, server_map=server_map).apply(plan)
    assert status(state_path_of(tmp_path))["healthy"] is True  # no pid: a remote server is asked, not looked up
    world.doors.clear()
    got = status(state_path_of(tmp_path))
    assert [r["status"] for r in got["servers"]] == ["ok", "ok"]
    assert got["frontdoor"]["status"] == "down" and got["healthy"] is False


def test_status_of_a_server_with_no_models_is_degraded(world, tmp_path):
    path = state_path_of(tmp_path)
    world.alive.add(42)
    world.serve(f"{HOST}:2", None, {})
    save_state(DeploymentState(servers={"a": ServerState(name="a", gpu="g", share=50.0, repo="/r", http=f"{HOST}:1",
                                                         grpc=f"{HOST}:2", metrics=None, pid=42,
                                                         launch_digest="d")}), path)
    assert status(path)["servers"][0]["status"] == "degraded"  # nothing to serve is not healthy
