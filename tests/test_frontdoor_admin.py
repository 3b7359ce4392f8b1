"""FrontDoor.ensure and route against a stand-in for Caddy's admin API (tests/fake_caddy.py), run as a real process
named caddy and tagged the way igniter tags its own: what is started, kept, replaced, written and sent, and the
one-line errors. That the real Caddy takes these configs and routes by them is tested in test_frontdoor.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from igniter.deployment import frontdoor
from igniter.deployment.frontdoor import FrontDoor, FrontDoorState, WorkloadPorts, is_front_door, stop_front_doors
from igniter.errors import UserError
from igniter.ownership import MARKER, is_owned
from igniter.triton.server import HOST, OWNER_ENV, free_port, pid_alive

FAKE = Path(__file__).with_name("fake_caddy.py")


@pytest.fixture()
def door(tmp_path, monkeypatch):
    """A FrontDoor of a private state directory whose caddy is the fake; every door it started is stopped after."""
    binary = tmp_path / "bin" / "caddy"
    binary.parent.mkdir()
    binary.write_text(f'#!/bin/bash\nexec -a caddy {sys.executable} {FAKE} "$@"\n')
    binary.chmod(0o755)
    monkeypatch.setattr(frontdoor, "caddy_binary", lambda: binary)
    started = []

    class Tracked(subprocess.Popen):  # every process the test starts, reaped at the end (no zombie left behind)
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)
    monkeypatch.setattr(subprocess, "Popen", Tracked)
    state_dir = tmp_path / "state"
    owner = str(state_dir.resolve())
    yield FrontDoor(state_dir, owner, detached=True)
    stop_front_doors(owner)
    for process in started:  # whatever a broken stop left running is this test's own
        if process.poll() is None:
            process.kill()
        process.wait()


def environ_of(pid: int) -> dict[str, str]:
    items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(os.fsdecode(i).split("=", 1) for i in items if b"=" in i)


def test_a_new_front_door_is_started_tagged_with_an_empty_config(door, tmp_path):
    record = door.ensure(None)
    state_dir = (tmp_path / "state").resolve()
    assert door.dir == state_dir / "frontdoor" and is_owned(door.dir)
    assert json.loads((door.dir / MARKER).read_text())["made_by"] == "igniter apply (the front door's config and log)"
    assert is_front_door(record.pid, str(state_dir))
    host, port = record.admin.rsplit(":", 1)
    assert host == HOST and 1 <= int(port) <= 65535
    assert (record.ports, record.weights) == ({}, {})
    assert json.loads((door.dir / "caddy.json").read_text()) == {
        "admin": {"listen": record.admin, "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "ERROR"}}}, "apps": {"http": {"servers": {}}}}
    env = environ_of(record.pid)
    assert env[OWNER_ENV] == str(state_dir)
    assert env["XDG_DATA_HOME"] == env["XDG_CONFIG_HOME"] == env["HOME"] == str(door.dir)
    assert env["PATH"] == os.environ["PATH"]  # the rest of the environment is passed on
    assert (door.dir / "caddy.log").exists()


def test_a_front_door_never_reads_igniters_input(door):
    """Started from a terminal (here: a pipe on fd 0), caddy still gets /dev/null as its stdin."""
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        record = door.ensure(None)
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)
    assert os.readlink(f"/proc/{record.pid}/fd/0") == "/dev/null"


def test_a_live_answering_front_door_is_kept_as_it_is(door):
    first = door.ensure(None)
    kept = first.model_copy(update={"ports": {"w": WorkloadPorts(http=9000, grpc=9001)}, "weights": {"a": 2}})
    assert door.ensure(kept) is kept


def test_a_front_door_that_stopped_answering_is_stopped_and_replaced_keeping_its_ports(door):
    first = door.ensure(None)
    ports = {"w": WorkloadPorts(http=9000, grpc=9001)}
    silent = first.model_copy(update={"admin": f"{HOST}:{free_port()}", "ports": ports})  # nothing answers there
    second = door.ensure(silent)
    assert second.pid != first.pid and not pid_alive(first.pid) and pid_alive(second.pid)
    assert second.ports == ports and second.admin != silent.admin


def test_a_front_door_that_is_gone_is_started_again_and_keeps_its_ports(door):
    first = door.ensure(None)
    stop_front_doors(door.owner)
    ports = {"w": WorkloadPorts(http=9000, grpc=9001)}
    second = door.ensure(first.model_copy(update={"ports": ports}))
    assert second.pid != first.pid and second.ports == ports and pid_alive(second.pid)


def test_a_process_that_is_not_this_deployments_front_door_is_never_signalled(door, tmp_path):
    stranger = FrontDoor(tmp_path / "other", str((tmp_path / "other").resolve()), detached=True)
    theirs = stranger.ensure(None)
    try:
        mine = door.ensure(theirs.model_copy(update={"admin": f"{HOST}:{free_port()}"}))
        assert pid_alive(theirs.pid) and mine.pid != theirs.pid
    finally:
        stop_front_doors(stranger.owner)


def test_a_front_door_directory_igniter_did_not_make_is_refused(door):
    door.dir.mkdir(parents=True)
    (door.dir / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as caught:
        door.ensure(None)
    assert caught.value.what == f"front door directory {door.dir} is not an igniter output (it has no {MARKER} marker)"
    assert caught.value.fix == "choose another --state directory"
    assert (door.dir / "notes.txt").read_text() == "mine" and frontdoor.front_doors(door.owner) == []


def test_a_front_door_that_exits_at_once_is_one_line_naming_its_log(door, monkeypatch):
    monkeypatch.setenv("FAKE_CADDY_EXIT", "1")
    with pytest.raises(UserError) as caught:
        door.ensure(None)
    assert caught.value.what == "the front door (caddy) did not start: fake caddy: boom"
    assert caught.value.fix == f"read {door.dir / 'caddy.log'}"
    assert frontdoor.front_doors(door.owner) == []


def test_a_front_door_that_never_answers_is_stopped_after_the_start_timeout(door, monkeypatch):
    monkeypatch.setenv("FAKE_CADDY_MUTE", "1")
    monkeypatch.setattr(frontdoor, "START_TIMEOUT_S", 2.0)
    with pytest.raises(UserError) as caught:
        door.ensure(None)
    assert caught.value.what == "the front door (caddy) did not start: (empty log)"
    assert frontdoor.front_doors(door.owner) == []


def test_the_launch_outlives_igniter_only_when_detached(door, tmp_path, monkeypatch):
    asked = []
    real = frontdoor.launch_command
    monkeypatch.setattr(frontdoor, "launch_command", lambda cmd, die: asked.append((cmd, die)) or real(cmd, die))
    door.ensure(None)
    attached = FrontDoor(tmp_path / "state", door.owner, detached=False)
    attached.ensure(None)
    config = str(door.dir / "caddy.json")
    assert asked == [([str(frontdoor.caddy_binary()), "run", "--config", config], False),
                     ([str(frontdoor.caddy_binary()), "run", "--config", config], True)]


ROUTES = {"w": {"http": [(f"{HOST}:8000", 2), (f"{HOST}:8010", 1)], "grpc": [(f"{HOST}:8001", 2), (f"{HOST}:8011", 1)]}}


def test_route_writes_the_config_and_loads_it_live(door):
    record = door.ensure(None).model_copy(update={"ports": {"w": WorkloadPorts(http=9000, grpc=9001)}})
    door.route(record, ROUTES)
    written = json.loads((door.dir / "caddy.json").read_text())
    assert written == frontdoor.caddy_config(record.admin, ROUTES, record.ports)
    assert set(written["apps"]["http"]["servers"]) == {"w-http", "w-grpc"}
    assert written["apps"]["http"]["servers"]["w-grpc"]["listen"] == [f"{HOST}:9001"]
    loads = (door.dir / "loads.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in loads] == [written]  # the same config, as JSON, through POST /load


def test_a_refused_route_is_one_line_with_caddys_reason_cut(door, monkeypatch):
    monkeypatch.setenv("FAKE_CADDY_BUSY", "9001")
    record = door.ensure(None).model_copy(update={"ports": {"w": WorkloadPorts(http=9000, grpc=9001)}})
    with pytest.raises(UserError) as caught:
        door.route(record, ROUTES)
    reason = f"loading new config: listen tcp 127.0.0.1:9001: bind: address \ufffd in use {'x' * 400}"[:300]
    assert caught.value.what == f"the front door refused the new routes: {reason}"
    assert caught.value.fix == "a port in --ports may be in use by another program: choose free ones"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_unreachable_front_door_is_one_line(door):
    door.dir.mkdir(parents=True)
    record = FrontDoorState(pid=1, admin=f"{HOST}:{free_port()}")
    with pytest.raises(UserError) as caught:
        door.route(record, {})
    assert caught.value.what.startswith(f"the front door at {record.admin} is unreachable (")
    assert "Connection refused" in caught.value.what
    assert caught.value.fix == "run `igniter apply` again (it restarts the front door)"
    assert caught.value.__suppress_context__


def test_a_route_never_waits_without_a_bound(door, monkeypatch):
    """A front door that took the connection and never answered would hang apply: the request has a timeout."""
    record = door.ensure(None)
    asked = []
    real = frontdoor.urllib.request.urlopen

    def urlopen(request, *args, **kwargs):
        asked.append(kwargs.get("timeout", args[1] if len(args) > 1 else None))
        return real(request, *args, **kwargs)
    monkeypatch.setattr(frontdoor.urllib.request, "urlopen", urlopen)
    door.route(record, {})
    assert len(asked) == 1 and isinstance(asked[0], (int, float)) and 0 < asked[0] <= 30
