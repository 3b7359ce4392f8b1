"""The CLI error form (issue #19, deliverable 6): one line, last on stderr, "To fix", exit 2; one JSON object with
--json; click's usage errors in the same form; an internal error is one line, exit 1, its traceback in a log file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from igniter.cli import deploy as deploy_cli
from igniter.cli.main import cli
from tests.plan_factory import make_plan

ERROR_LINE = re.compile(r"^error: .+ To fix: .+$")


def check_one_line(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and ERROR_LINE.match(lines[0]), result.stderr
    return lines[0]


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    (tmp_path / "w.yaml").write_text("workloads:\n  - {name: a, model: alexnet, rate: 400, slo_ms: 20}\n")
    return {"w": str(tmp_path / "w.yaml"), "out": str(tmp_path / "out")}


USAGE_ERRORS = {
    "missing option": (["provision", "--out", "{out}"], "Missing option '--workloads'"),
    "missing argument": (["apply"], "Missing argument 'PLAN'"),
    "bad choice": (["provision", "--workloads", "{w}", "--out", "{out}", "--strategy", "best"], "'best' is not one of"),
    "bad float range": (["provision", "--workloads", "{w}", "--out", "{out}", "--time-limit", "0"], "x>=0.1"),
    "bad int range": (["infer", "--batch", "0"], "1<=x<=1024"),
    "not a number": (["infer", "--batch", "two"], "'two' is not a valid integer"),
    "unknown option": (["provision", "--workload", "{w}"], "No such option '--workload'"),
    "unknown command": (["provison"], "No such command 'provison'"),
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_are_one_line_with_a_fix(files, case):
    args, message = USAGE_ERRORS[case]
    line = check_one_line(CliRunner().invoke(cli, [a.format(**files) for a in args]))
    assert message in line and "--help" in line
    assert not Path(files["out"]).exists()


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_with_json_are_one_json_object(files, case):
    args, message = USAGE_ERRORS[case]
    result = CliRunner().invoke(cli, [a.format(**files) for a in args] + ["--json"])
    check_one_line(result)
    error = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert message in error["error"] and "--help" in error["fix"] and error["exit_code"] == 2


def test_a_user_error_with_json_is_one_json_object(tmp_path):
    args = ["apply", str(tmp_path / "nope.json"), "--state", str(tmp_path / "s.json"), "--json"]
    result = CliRunner().invoke(cli, args)
    line = check_one_line(result)
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and "does not exist" in error["error"] and error["fix"]
    assert error["error"] in line and error["fix"] in line


def test_an_internal_error_is_one_line_exit_1_with_the_traceback_in_a_log(monkeypatch, tmp_path):
    def broken(state_path):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(deploy_cli, "deployment_status", broken)
    monkeypatch.delenv("IGNITER_DEBUG", raising=False)
    result = CliRunner().invoke(cli, ["status", "--state", str(tmp_path / "s.json")])
    line = check_one_line(result, exit_code=1)
    assert "internal error: ZeroDivisionError: a bug" in line and "Traceback" not in result.stderr
    log = Path(re.search(r"traceback in (\S+\.log)", line).group(1))
    assert "Traceback" in log.read_text() and "ZeroDivisionError: a bug" in log.read_text()
    log.unlink()

    monkeypatch.setenv("IGNITER_DEBUG", "1")
    result = CliRunner().invoke(cli, ["status", "--state", str(tmp_path / "s.json"), "--json"])
    assert result.exit_code == 1 and "Traceback" in result.stderr
    assert ERROR_LINE.match(result.stderr.splitlines()[-1]), "the error stays the last line"
    assert json.loads(result.stdout)["exit_code"] == 1
    Path(re.search(r"traceback in (\S+\.log)", result.stderr).group(1)).unlink()


@pytest.mark.parametrize("command", ["down", "status", "apply"])
def test_a_path_the_os_refuses_is_one_line(demo_repo, tmp_path, command):
    state = tmp_path / ("s" * 300) / "state.json"
    servers = [{"name": "a", "model": "tinynet", "batch": 4}]
    plan = [str(make_plan(tmp_path / "p", demo_repo, servers))] if command == "apply" else []
    line = check_one_line(CliRunner().invoke(cli, [command, *plan, "--state", str(state)]))
    assert "too long" in line


def test_the_real_entry_point_prints_one_line():
    result = subprocess.run([sys.executable, "-m", "igniter", "provision", "--strategy", "best"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and ERROR_LINE.match(result.stderr.strip()), result.stderr


@pytest.mark.integration
def test_an_error_after_progress_is_the_only_line_after_it(demo_repo, tmp_path):
    """apply prints progress, fails on a config Triton rejects, rolls back: the error is the one line at the end."""
    plan = make_plan(tmp_path / "p", demo_repo, [{"name": "a", "model": "tinynet", "batch": 4, "break_config": True}])
    result = CliRunner().invoke(cli, ["apply", str(plan), "--state", str(tmp_path / "state" / "state.json")])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) >= 2 and lines[0].startswith("start"), "progress first"
    assert [i for i, line in enumerate(lines) if line.startswith("error: ")] == [len(lines) - 1]
    assert ERROR_LINE.match(lines[-1]) and "rolled back" in lines[-1]
