"""The Triton layer against a REAL local tritonserver (bundled in the nvidia-pytriton wheel)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from igniter.cli.main import cli
from igniter.errors import UserError
from igniter.triton.config import driven_fields, set_dynamic_batching, set_instance_group
from igniter.triton.metrics import interval, scrape
from igniter.triton.server import LocalServer, ServerOptions, http_ok

pytestmark = pytest.mark.integration


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_start_ready_stop(demo_repo):
    server = LocalServer(ServerOptions(repo=demo_repo, models=["tinynet"]))
    with server:
        assert http_ok(f"http://{server.endpoints.http}/v2/health/ready")
        assert server.endpoints.http.startswith("127.0.0.1:")
        stubs = _children(server.process.pid)
        assert stubs, "the python backend runs its model in a stub process"
    assert not server.alive()
    time.sleep(0.5)
    assert not any(_pid_alive(p) for p in stubs)
    assert not server.log_path.exists(), "the temp log igniter made is removed after a clean stop"


def test_failed_start_keeps_the_log_its_error_names(tmp_path):
    (tmp_path / "repo" / "broken").mkdir(parents=True)
    (tmp_path / "repo" / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "no-such-backend"\n')
    server = LocalServer(ServerOptions(repo=tmp_path / "repo", models=["broken"]))
    with pytest.raises(UserError) as err:
        server.start()
    assert str(server.log_path) in str(err.value) and server.log_path.exists()
    server.log_path.unlink()


def test_inference_is_correct(client, demo_repo):
    inputs = client.make_inputs("convnet", 3, seed=7)
    got = client.infer("convnet", inputs)["OUTPUT0"]
    x = np.random.default_rng(7).random((3, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(demo_repo / "convnet" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    want = session.run(["OUTPUT0"], {"INPUT0": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_load_unload(client):
    client.unload("tinynet")
    assert not client.is_ready("tinynet")
    client.load("tinynet")
    assert client.is_ready("tinynet")


def test_reload_with_override_takes_effect(client):
    cfg = client.config("mlp")
    set_instance_group(cfg, 2, "KIND_CPU")
    set_dynamic_batching(cfg, [4, 8], 300)
    client.load("mlp", cfg)
    running = driven_fields(client.config("mlp"))
    assert running["instances"] == 2
    assert running["preferred_batch_size"] == [4, 8]
    assert running["max_queue_delay_us"] == 300
    assert client.infer("mlp", client.make_inputs("mlp", 2))["OUTPUT0"].shape == (2, 1000)


def test_rejected_config_shows_tritons_reason(client):
    cfg = client.config("tinynet")
    cfg.dynamic_batching.preferred_batch_size.append(cfg.max_batch_size + 10)  # Triton validates this
    with pytest.raises(UserError) as err:
        client.load("tinynet", cfg)
    message = err.value.line()
    assert "preferred size must be <= max batch size" in message and "To fix:" in message
    assert client.is_ready("tinynet"), "the previous version keeps serving"


def test_metrics_parsed(triton, client):
    before = scrape(triton.endpoints.metrics).models.get("tinynet")
    for _ in range(5):
        client.infer("tinynet", client.make_inputs("tinynet", 4))
    time.sleep(0.6)  # summaries refresh on the metrics interval
    metrics = scrape(triton.endpoints.metrics)
    figures = interval(before, metrics.models["tinynet"])
    assert figures["requests"] == 5 and figures["inferences"] == 20
    assert figures["compute_ms"] > 0 and figures["request_ms"] >= figures["compute_ms"]
    assert metrics.cpu_utilization is not None


def test_no_orphan_when_parent_is_killed(demo_repo, tmp_path):
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from igniter.triton.server import LocalServer, ServerOptions\n"
        f"s = LocalServer(ServerOptions(repo=Path({str(demo_repo)!r}), models=['tinynet']))\n"
        "s.start()\n"
        "print(json.dumps({'pid': s.process.pid}), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    server_pid = json.loads(parent.stdout.readline())["pid"]
    stubs = _children(server_pid)
    assert _pid_alive(server_pid) and stubs
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (_pid_alive(server_pid) or any(_pid_alive(p) for p in stubs)):
        time.sleep(0.2)
    assert not _pid_alive(server_pid), "server outlived its killed parent"
    assert not any(_pid_alive(p) for p in stubs), "a python stub outlived its server"


def test_serve_command_prints_endpoints_and_stops_on_sigterm(demo_repo):
    proc = subprocess.Popen([sys.executable, "-m", "igniter.cli", "serve", "--repo", str(demo_repo), "--load", "tinynet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = json.loads(proc.stdout.readline())
    assert {"http", "grpc", "metrics", "pid"} <= set(line)
    assert line["http"].startswith("127.0.0.1:")
    assert http_ok(f"http://{line['http']}/v2/health/ready")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not _pid_alive(line["pid"])
    assert os.path.exists(line["log"]), "serve keeps the log it announced"
    os.unlink(line["log"])


def test_bad_repo_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--repo", str(tmp_path / "missing")])
    assert result.exit_code == 2
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "To fix:" in lines[0]


def test_remote_url_is_accepted(triton):
    result = CliRunner().invoke(cli, ["infer", "--server", f"http={triton.endpoints.http},grpc={triton.endpoints.grpc}",
                                      "--model", "convnet", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["status"] == "ok"
