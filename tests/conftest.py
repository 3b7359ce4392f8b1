"""Shared fixtures: the demo model repository and a real local Triton server (no mocks for Triton)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from igniter.deployment.apply import Deployer
from igniter.triton.client import TritonClient
from igniter.triton.demo_zoo import ensure_demo_repo
from igniter.triton.server import LocalServer, ServerOptions

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory) -> Path:
    """A private copy of triton_repo/ (tests may rewrite configs)."""
    repo = tmp_path_factory.mktemp("repo") / "triton_repo"
    shutil.copytree(ensure_demo_repo(ROOT / "triton_repo"), repo)
    return repo


@pytest.fixture(scope="session")
def triton(demo_repo, tmp_path_factory):
    """One real tritonserver for the session with every demo model loaded."""
    log = tmp_path_factory.mktemp("logs") / "triton.log"
    with LocalServer(ServerOptions(repo=demo_repo, models=["convnet", "mlp", "tinynet"], log_path=log)) as server:
        yield server


@pytest.fixture()
def client(triton):
    with TritonClient.connect(triton) as c:
        yield c


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared beside the checkout)")
    return path


@pytest.fixture()
def deployer(tmp_path):
    """A Deployer on a private state directory whose servers are attached to this process and stopped after."""
    d = Deployer(tmp_path / "state" / "state.json", detached=False)
    yield d
    d.stop_all()
