"""`igniter profile` against a REAL local Triton (demo models): a short profile, resume after kill -9, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from igniter.cli.main import cli
from igniter.profiling.store import PAIR_KEY, SOLO_KEY, ProfileStore
from igniter.triton.server import free_port

SHORT = ["--models", "tinynet,convnet", "--batches", "1,2", "--shares", "100", "--pairs", "1",
         "--duration", "0.4", "--warmup", "0.1", "--backend", "cpu", "--quiet"]


def _servers_of(repo: Path) -> list[int]:
    """Live tritonserver processes and python-backend stubs serving this (test-private) repository, from /proc."""
    needle = str(repo.resolve()).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        triton = argv and (argv[0].endswith(b"tritonserver") or argv[0].endswith(b"triton_python_backend_stub"))
        if triton and any(needle in a for a in argv) and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture()
def private_repo(demo_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(demo_repo, repo)
    return repo


@pytest.mark.integration
def test_short_profile_then_rerun_skips(private_repo, tmp_path):
    out = tmp_path / "prof"
    runner = CliRunner()
    res = runner.invoke(cli, ["profile", "--repo", str(private_repo), "--out", str(out), *SHORT, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["solo_runs"] == 4 and summary["pair_runs"] == 1 and summary["skipped"] == 0
    store = ProfileStore(out)
    solo, pairs = store.read_solo(), store.read_pairs()
    assert len(solo) == 4 and len(pairs) == 2
    assert set(pairs["model"]) == {"tinynet", "convnet"} and (pairs["model"] != pairs["partner"]).all()
    for df in (solo, pairs):
        assert (df["throughput_rps"] > 0).all() and (df["latency_p99_ms"] >= df["latency_p50_ms"]).all()
        assert df[["queue_ms", "compute_ms", "cpu_util_pct", "memory_mb"]].notna().all().all()
    # throughput counts samples: batch 2 moves more samples per request than batch 1
    tiny = solo[solo.model == "tinynet"].set_index("batch")
    assert tiny.loc[2, "throughput_rps"] > tiny.loc[1, "throughput_rps"]
    assert store.read_hardware()["kind"] == "cpu"
    again = runner.invoke(cli, ["profile", "--repo", str(private_repo), "--out", str(out), *SHORT, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1])["skipped"] == 5
    assert len(store.read_solo()) == 4 and not _servers_of(private_repo)


@pytest.mark.integration
def test_resume_after_kill_9_loses_and_duplicates_nothing(private_repo, tmp_path):
    out = tmp_path / "prof"
    cmd = [sys.executable, "-m", "igniter", "profile", "--repo", str(private_repo), "--out", str(out), *SHORT]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "solo.csv").exists():
        time.sleep(0.05)
    assert (out / "solo.csv").exists(), "no row landed"
    assert _servers_of(private_repo), "the profiler's server should be running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(pd.read_csv(out / "solo.csv"))
    assert 1 <= first < 4
    deadline = time.monotonic() + 20  # the servers die with their parent (PDEATHSIG)
    while time.monotonic() < deadline and _servers_of(private_repo):
        time.sleep(0.2)
    assert not _servers_of(private_repo), "orphaned tritonserver after kill -9"
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["skipped"] >= first and summary["solo_runs"] == 4 - first
    store = ProfileStore(out)
    solo, pairs = store.read_solo(), store.read_pairs()
    assert len(solo) == 4 and not solo.duplicated(SOLO_KEY).any()
    assert len(pairs) == 2 and not pairs.duplicated(PAIR_KEY).any()
    assert not _servers_of(private_repo)


@pytest.mark.parametrize("args, message", [
    (["--models", "nosuch"], "is not in the repository"),
    (["--models", "tinynet", "--batches", ""], "nothing to profile"),
    (["--models", "tinynet", "--shares", "0"], "outside (0, 100]"),
    (["--models", "tinynet", "--batches", "64"], "exceeds max_batch_size"),
    (["--models", "tinynet", "--pairs", "2"], "at least two different models"),
])
def test_bad_input_exit_2(demo_repo, tmp_path, args, message):
    res = CliRunner().invoke(cli, ["profile", "--repo", str(demo_repo), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "To fix:" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_unwritable_out_and_unreachable_server(demo_repo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(cli, ["profile", "--repo", str(demo_repo), "--models", "tinynet", "--out", str(blocker / "o")])
    assert res.exit_code == 2 and "cannot write to the output directory" in res.output and "To fix:" in res.output
    url = f"http://127.0.0.1:{free_port()}"
    res = CliRunner().invoke(cli, ["profile", "--server", url, "--models", "tinynet", "--shares", "100",
                                   "--out", str(tmp_path / "o2"), "--quiet"])
    assert res.exit_code == 2 and "no Triton server answers" in res.output and "To fix:" in res.output
    res = CliRunner().invoke(cli, ["profile", "--server", url, "--models", "tinynet", "--out", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "shares cannot be enforced" in res.output
