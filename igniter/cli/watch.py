"""`igniter watch`: the reconciliation loop over a deployed plan (igniter/watch/loop.py), one JSON line a decision."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import click

from igniter.cli.common import json_option, user_errors
from igniter.cli.deploy import lock_timeout_option, state_option, writing
from igniter.deployment.apply import Deployer
from igniter.deployment.state import load_state
from igniter.errors import UserError
from igniter.provisioning import STRATEGIES
from igniter.watch.detect import WatchSettings
from igniter.watch.history import load_history, save_history
from igniter.watch.loop import APPLIED, KEPT, Watcher
from igniter.watch.observe import observe, scrape_all

PLANS_DIR = "watch-plans"             # beside state.json: the plans the watcher applied
HISTORY_FILE = "watch-history.json"   # beside state.json: what the next run carries on from


@click.command()
@state_option
@click.option("--workloads", "workloads_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The workloads YAML the running plan was provisioned from.")
@click.option("--perf-model", type=click.Path(dir_okay=False, path_type=Path), help="Its fitted model file.")
@click.option("--gpus", "catalog", type=click.Path(dir_okay=False, path_type=Path), help="Or its GPU catalog YAML.")
@click.option("--repo", "src_repo", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The source model repository provision was given (re-plans copy models from it).")
@click.option("--interval", "interval_s", type=click.FloatRange(min=0.5, max=86400), default=30.0,
              show_default=True, help="Seconds between metric scrapes (one decision pass each).")
@click.option("--once", is_flag=True, help="One pass (two scrapes --interval apart), then exit (cron, CI): 1 when its "
                                           "re-plan or apply failed, else 0.")
@click.option("--dry-run", is_flag=True, help="Decide and log; write nothing and apply nothing.")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="ilp", show_default=True,
              help="What re-plans solve with.")
@click.option("--move-penalty", type=click.FloatRange(min=0), default=WatchSettings.move_penalty, show_default=True,
              help="Price units per hour charged per server a re-plan starts or restarts.")
@click.option("--up-after", type=click.IntRange(min=1), default=WatchSettings.up_after, show_default=True,
              help="Intervals the load must stay above the plan before scaling up.")
@click.option("--down-after", type=click.IntRange(min=1), default=WatchSettings.down_after, show_default=True,
              help="Consecutive lower forecasts before scaling down.")
@click.option("--interference-after", type=click.IntRange(min=1), default=WatchSettings.interference_after,
              show_default=True, help="Intervals a server must run slower than predicted before re-planning.")
@lock_timeout_option
@json_option
@user_errors
def watch(state_path: Path, workloads_path: Path, perf_model: Path | None, catalog: Path | None,
          src_repo: Path | None, interval_s: float, once: bool, dry_run: bool, strategy: str, move_penalty: float,
          up_after: int, down_after: int, interference_after: int, lock_timeout: float, as_json: bool) -> None:
    """Watch the deployed plan: observe every server each interval, detect load and interference drift and SLO
    risk, adapt the performance model, re-plan and apply live; every decision one line (--json: one JSON line)."""
    if not math.isfinite(move_penalty):   # click's FloatRange lets inf through
        raise UserError(f"--move-penalty {move_penalty} is not a number", "give e.g. --move-penalty 0.25")
    state = _deployed(state_path)
    settings = WatchSettings(strategy=strategy, move_penalty=move_penalty, up_after=up_after, down_after=down_after,
                             interference_after=interference_after)
    say = (lambda m: click.echo(m, err=True))

    def apply_plan(plan_dir: Path) -> None:
        deployer = Deployer(state_path, detached=True, progress=None if as_json else say)
        with writing(state_path.parent, lock_timeout, "watch's apply", as_json):
            deployer.apply(plan_dir)

    history_path = state_path.parent / HISTORY_FILE
    watcher = Watcher(Path(state.plan), perf_model, workloads_path, catalog, apply_plan, dry_run, settings,
                      lambda d: click.echo(json.dumps(d, sort_keys=True) if as_json else _human(d)),
                      src_repo=src_repo, plans_dir=state_path.parent / PLANS_DIR,
                      history=load_history(history_path), progress=say)
    before = scrape_all(state)
    passes = 0
    while True:
        passes += 1
        say(f"watch: pass {passes}, observing for {interval_s:g} s (decision at "
            f"{time.strftime('%H:%M:%S', time.localtime(time.time() + interval_s))})")
        time.sleep(interval_s)
        state = _deployed(state_path)
        if Path(state.plan).resolve() != watcher.plan_path.resolve():   # someone applied another plan meanwhile
            watcher.adopt(Path(state.plan))
        after = scrape_all(state)
        decisions = watcher.tick(observe(state, before, after), round(time.time(), 3))
        if not dry_run:   # the next run (--once from cron) carries on from here
            _save(watcher, history_path, lock_timeout, as_json, say)
        if once:   # for CI: 1 when this pass's re-plan or apply failed (the running plan still serves)
            sys.exit(1 if any(d.action == KEPT and "error" in d.details for d in decisions) else 0)
        # after an apply the servers are new: the next interval starts from their first scrape
        before = scrape_all(_deployed(state_path)) if any(d.action == APPLIED for d in decisions) else after


def _save(watcher: Watcher, history_path: Path, lock_timeout: float, as_json: bool, say) -> None:
    """Write the history under the writer lock; another writer holding it costs this interval's record only."""
    try:
        with writing(history_path.parent, lock_timeout, "watch", as_json, "stopped; the history is as before"):
            save_history(watcher.snapshot(), history_path)
    except UserError as err:
        say(f"watch: the history was not saved this interval ({err.line()})")


def _deployed(state_path: Path):
    state = load_state(state_path)
    if not state.servers or state.plan is None:
        raise UserError("nothing is deployed", "apply a plan first (igniter apply PLAN), or give the --state of a "
                        "running deployment", str(state_path))
    if not Path(state.plan).exists():
        raise UserError(f"the running plan {state.plan} no longer exists", "apply the plan again (igniter apply PLAN)",
                        str(state_path))
    return state


def _human(decision: dict) -> str:
    return (f"{time.strftime('%H:%M:%S', time.localtime(decision['time_s']))} {decision['kind']:12s} "
            f"{decision['subject']}: {decision['reason']} -> {decision['action']}")
