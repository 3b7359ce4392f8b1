"""The front door, against REAL tritonservers and a real Caddy: one stable endpoint per workload, hitless moves.

Load is Poisson through the front door's gRPC address; the oracle for "hitless" is the client's own count of
failed requests, for "stable" the address the client was given before the move.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from click.testing import CliRunner

from igniter.cli.main import cli
from igniter.deployment.apply import Deployer, status
from igniter.deployment.chaos import PoissonLoad
from igniter.deployment.frontdoor import front_doors, parse_ports
from igniter.deployment.orphans import tagged_servers
from igniter.deployment.state import load_state
from igniter.errors import UserError
from igniter.triton.client import TritonClient
from igniter.triton.server import Endpoints, deployment_owner, free_port
from tests.plan_factory import make_plan

pytestmark = pytest.mark.integration
RATE_RPS = 20.0


def processes_match_state(deployer: Deployer) -> bool:
    state = load_state(deployer.state_path)
    servers = set(tagged_servers(deployment_owner(deployer.state_path.parent)))
    doors = set(front_doors(deployment_owner(deployer.state_path.parent)))
    return servers == {s.pid for s in state.servers.values()} and doors == ({state.frontdoor.pid} if state.frontdoor else set())


def test_endpoints_name_the_front_door_and_the_weighted_replicas(deployer, demo_repo, tmp_path):
    port = free_port()
    deployer.ports = parse_ports(f"a={port}")
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    report = deployer.apply(plan)
    entry = report["endpoints"]["a"]
    state = load_state(deployer.state_path).servers["a"]
    assert (entry["http"], entry["grpc"]) == (f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}")
    assert entry["replicas"] == [{"server": "a", "grpc": state.grpc, "http": state.http, "weight": 1}]
    with TritonClient(Endpoints(http=entry["http"], grpc=entry["grpc"])) as client:  # both protocols, through it
        assert client.infer("tinynet", client.make_inputs("tinynet", 1))["OUTPUT0"].shape == (1, 16)
    assert status(deployer.state_path)["endpoints"] == report["endpoints"]
    assert processes_match_state(deployer)


def test_planned_reshare_and_reload_fail_no_request_through_the_stable_endpoint(deployer, demo_repo, tmp_path):
    plan = make_plan(tmp_path / "p1", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4, "share": 50.0},
                                                  {"name": "b", "model": "mlp", "batch": 4, "cpus": [1]}])
    before = deployer.apply(plan)["endpoints"]
    old_pid = load_state(deployer.state_path).servers["a"].pid
    moved = make_plan(tmp_path / "p2", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4, "share": 60.0},
                                                   {"name": "b", "model": "mlp", "batch": 8, "cpus": [1]}])
    with PoissonLoad(before["a"]["grpc"], "tinynet", RATE_RPS, seed=1) as load_a, \
            PoissonLoad(before["b"]["grpc"], "mlp", RATE_RPS, seed=2) as load_b:
        time.sleep(1.0)  # requests before the move too (not an assertion on timing)
        report = deployer.apply(moved)
        time.sleep(1.0)
    actions = {a["server"]: a["action"] for a in report["actions"]}
    assert actions == {"a": "reshare", "b": "reload"}
    assert load_state(deployer.state_path).servers["a"].pid != old_pid, "a new process serves a"
    assert {w: (e["grpc"], e["http"]) for w, e in report["endpoints"].items()} == \
        {w: (e["grpc"], e["http"]) for w, e in before.items()}, "the clients' addresses did not change"
    for load in (load_a, load_b):
        assert load.record.requests, "load was sent"
        assert load.record.failed == [], load.record.failed[:3]
    assert processes_match_state(deployer)


def test_a_killed_server_fails_only_its_down_time_then_apply_restores_it(deployer, demo_repo, tmp_path):
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    endpoint = deployer.apply(plan)["endpoints"]["a"]["grpc"]
    with PoissonLoad(endpoint, "tinynet", RATE_RPS, seed=3) as load:
        time.sleep(1.0)
        killed_at = time.monotonic()
        os.kill(load_state(deployer.state_path).servers["a"].pid, signal.SIGKILL)
        time.sleep(1.0)
        report = deployer.apply(plan)
        restored_at = time.monotonic()
        time.sleep(1.0)
    assert report["actions"][0]["action"] == "restart"
    assert report["endpoints"]["a"]["grpc"] == endpoint
    assert load.record.failed, "requests sent to a dead server fail"
    assert all(killed_at - 30 <= r.scheduled <= restored_at for r in load.record.failed), "only its down time fails"
    after = [r for r in load.record.requests if r.scheduled > restored_at]
    assert after and all(r.latency_ms is not None for r in after)
    assert processes_match_state(deployer)


def test_down_stops_the_front_door(tmp_path, demo_repo):
    state = tmp_path / "state" / "state.json"
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    applied = CliRunner().invoke(cli, ["apply", str(plan), "--state", str(state), "--json"])
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.output)["endpoints"]["a"]["grpc"]
    owner = deployment_owner(state.parent)
    assert len(front_doors(owner)) == 1 and len(tagged_servers(owner)) == 1
    result = CliRunner().invoke(cli, ["down", "--state", str(state)])
    assert result.exit_code == 0, result.output
    assert front_doors(owner) == [] and tagged_servers(owner) == []


@pytest.mark.parametrize("text", ["a", "a=x", "a=0", "a=9000,b=9001"])
def test_bad_ports_are_one_line(text):
    with pytest.raises(UserError, match="--ports"):
        parse_ports(text)


def test_weights_follow_the_planned_rates():
    from igniter.deployment.frontdoor import weights_from_rates
    # hand-worked: 30 and 15 rps -> 100:50 -> 2:1 in lowest terms; 1/3 of the top rate rounds to 33
    assert weights_from_rates({"r0": 30.0, "r1": 15.0}) == {"r0": 2, "r1": 1}
    assert weights_from_rates({"r0": 7.0, "r1": 7.0}) == {"r0": 1, "r1": 1}
    assert weights_from_rates({"r0": 30.0, "r1": 10.0, "r2": 0.01}) == {"r0": 100, "r1": 33, "r2": 1}


def test_a_workloads_replicas_share_its_traffic_by_the_planned_rates(deployer, demo_repo, tmp_path):
    import tritonclient.grpc as grpcclient

    replicas = [{"name": f"w-r{i}", "model": "tinynet", "batch": 4, "workload": "w", "replica": i, "replicas": 2,
                 "rate": rate, "cpus": [i]} for i, rate in enumerate([20.0, 10.0])]
    report = deployer.apply(make_plan(tmp_path / "p", demo_repo, replicas))
    entry = report["endpoints"]["w"]
    assert [(r["server"], r["weight"]) for r in entry["replicas"]] == [("w-r0", 2), ("w-r1", 1)]
    servers = load_state(deployer.state_path).servers

    def served(server: str) -> int:
        client = grpcclient.InferenceServerClient(servers[server].grpc)
        stats = client.get_inference_statistics("tinynet", as_json=True)["model_stats"][0]
        client.close()
        return int(stats.get("inference_count", 0))

    with TritonClient(Endpoints(http=servers["w-r0"].http, grpc=servers["w-r0"].grpc)) as direct:
        inputs = direct.make_inputs("tinynet", 1)
    with TritonClient(Endpoints(http=entry["http"], grpc=entry["grpc"])) as door:
        for _ in range(30):  # sequential: weighted round robin 2:1 gives 20 and 10 of 30, +-1 for where it starts
            door.infer("tinynet", inputs)
    first, second = served("w-r0"), served("w-r1")
    assert first + second == 30 and abs(first - 20) <= 1, (first, second)


def test_a_front_door_port_in_use_rolls_back_in_one_line(tmp_path, demo_repo):
    import socket

    state = tmp_path / "state" / "state.json"
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["apply", str(plan), "--state", str(state), "--ports", f"a={port}"])
    assert result.exit_code == 2, result.output
    assert "refused the new routes" in result.output and "To fix:" in result.output
    owner = deployment_owner(state.parent)
    assert tagged_servers(owner) == [] and front_doors(owner) == [], "the apply stopped what it had started"
    assert load_state(state).servers == {}


def test_status_shows_each_workloads_endpoint(deployer, demo_repo, tmp_path):
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4}])
    endpoint = deployer.apply(plan)["endpoints"]["a"]
    result = CliRunner().invoke(cli, ["status", "--state", str(deployer.state_path)])
    assert result.exit_code == 0, result.output
    assert f"endpoint a: grpc {endpoint['grpc']}, http {endpoint['http']} -> a (weight 1)" in result.output


def test_new_workloads_never_share_a_port_when_the_os_repeats_one(monkeypatch):
    # the OS may hand the same just-released port out twice (seen in a 12-workload replay: Caddy refused the
    # configuration, "listener address repeated"): a fake free_port that repeats each port once
    from igniter.deployment import frontdoor

    handed = iter([9000, 9000, 9001, 9001, 9000, 9002, 9003, 9002, 9004])
    monkeypatch.setattr(frontdoor, "free_port", lambda: next(handed))
    record = frontdoor.FrontDoorState(pid=1, admin="127.0.0.1:1")
    frontdoor.assign_ports(record, ["a", "b"], {})
    ports = [p for w in record.ports.values() for p in (w.http, w.grpc)]
    assert sorted(ports) == [9000, 9001, 9002, 9003]
