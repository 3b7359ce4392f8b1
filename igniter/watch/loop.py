"""The reconciliation loop: observations in, decisions out, the running plan changed only through a hook.

Interface (igniter watch and igniter replay --watch both drive it)::

    watcher = Watcher(plan_path, perf_model_path, workloads_path, catalog_path, apply_plan,
                      dry_run=False, settings=WatchSettings(...), log=print_one_json_line,
                      src_repo=None, plans_dir=None, history=None, loader=load_perf_model,
                      progress=print_to_stderr)
    decisions = watcher.tick(observations, now_s)    # observe.observe(...) of the last interval
    watcher.snapshot()                               # a History to restore a later watcher from

- ``plan_path``: the running plan (plan.json or its directory); ``perf_model_path`` / ``catalog_path``: what it was
  provisioned with (one of them); ``workloads_path``: its workloads file (its workload names must be the plan's;
  the rates are the plan's from then on). ``src_repo``: the source model repository provision was given, if any.
- ``apply_plan(new_plan_dir: Path) -> None`` brings the servers to a plan directory the watcher wrote (the CLI:
  Deployer.apply under the state's writer lock; the replay: its own emulation first); it raises to refuse, and a
  refused or failed apply leaves the running plan serving (the watcher keeps it as the running plan).
- ``plans_dir``: where re-plans are written (``NNNN-keep`` / ``NNNN-fresh``, igniter-owned, the running and the
  previous one kept; default a new temporary directory); ``log(dict)`` gets every decision as it is made
  (Decision.as_dict), ``tick`` returns them too; ``history``: an earlier watcher's (history.py; another plan's is
  ignored); ``progress(str)``: what long steps (a re-plan) say while they run. ``adopt(plan_path)``: someone else
  applied another plan, compare with that one from now on.
- ``dry_run``: decide and log, write nothing, apply nothing (the running plan stays the one to compare with).

Each tick: (1) every observation is compared with what the running plan's model predicted for its server's
co-location at the batch Triton formed (the interference signal), then fed to the perf model's online correction
(PerfModel.update_sets: the adapted model is what re-plans use); (2) detect.py's load, interference and SLO-risk
rules run over the history since the running plan started; (3) if any fired, one re-plan: the workloads at their
new rates (drifting ones at the detected target, the others at the plan's), two candidates, the running placement
kept (every server on its GPU at its share, its batch re-chosen where the new rate needs it, then repaired where
the adapted model says it misses an SLO) and a fresh solve of ``settings.strategy``; each is scored price +
move_penalty x servers it starts or restarts (names whose launch spec is new), so placements are kept unless the
SLO or the saving needs a move; (4) the chosen plan is applied through the hook. A re-plan that changes nothing
makes the adapted model the baseline to compare with; one that is not applied restarts the streaks of the rules
that fired it (they must hold again before the next try). Every decision is one Decision (one JSON line).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from igniter.deployment.apply import PlannedServer, planned_servers
from igniter.errors import UserError
from igniter.model.perfmodel import Member
from igniter.ownership import is_owned, make_owned_dir
from igniter.provisioning import finish, load_inputs, queueing, solve
from igniter.provisioning.candidates import Option, ProvisioningProblem, build_problem, min_share_options
from igniter.provisioning.greedy_igniter import pack
from igniter.provisioning.plan import (Plan, build_plan, launch_spec, read_plan, server_launches,
                                      write_plan)
from igniter.provisioning.repository import keep_stateful_on_one_server
from igniter.provisioning.strategy import Assignment, Gpu, Server, within_max_count
from igniter.provisioning.workloads import MIN_RATE, WorkloadSet, load_perf_model
from igniter.watch import detect
from igniter.watch.detect import WatchSettings
from igniter.watch.history import MAX_HISTORY, History
from igniter.watch.observe import Observation

__all__ = ["Decision", "History", "Watcher", "WatchSettings"]

ApplyPlan = Callable[[Path], None]
# what a Decision's action says
REPLAN, NONE = "replan", "none"
APPLIED, WOULD_APPLY, KEPT = "applied", "would-apply (dry run)", "kept running plan"


@dataclass
class Decision:
    """One decision: what was seen (observed) against what the running plan expected (predicted), and what was
    done. kind: load_up | load_down | interference | slo_risk (a detection; action "replan"), replan (its
    outcome: applied, would-apply (dry run), kept running plan), steady (nothing fired; action "none")."""
    time_s: float
    kind: str
    subject: str            # the workload, server or (replan) plan directory concerned
    reason: str
    observed: dict = field(default_factory=dict)
    predicted: dict = field(default_factory=dict)
    action: str = NONE
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return _finite(asdict(self))

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)


def _finite(value: Any) -> Any:
    """JSON without NaN/inf (null instead), floats rounded for reading."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


@dataclass
class _Candidate:
    name: str
    problem: ProvisioningProblem
    plan: Plan
    moves: list[str]             # servers it starts or restarts (a new name or launch spec)
    score: float


class Watcher:
    def __init__(self, plan_path: Path, perf_model_path: Path | None, workloads_path: Path,
                 catalog_path: Path | None, apply_plan: ApplyPlan, dry_run: bool = False,
                 settings: WatchSettings = WatchSettings(), log: Callable[[dict], None] = lambda d: None, *,
                 src_repo: Path | None = None, plans_dir: Path | None = None, history: History | None = None,
                 loader: Callable[[Path], Any] = load_perf_model, progress: Callable[[str], None] = lambda m: None):
        self.apply_plan, self.dry_run, self.settings, self.log = apply_plan, dry_run, settings, log
        self.progress = progress
        self.src_repo = src_repo
        self.plans_dir = Path(plans_dir) if plans_dir else None
        self.workload_set, self.types = load_inputs(workloads_path, perf_model_path, catalog_path, loader, src_repo)
        self.history = History(plan=str(Path(plan_path).resolve()),
                               rates={w.name: [] for w in self.workload_set.workloads})
        self.adopt(Path(plan_path))
        if history is not None:
            self.restore(history)

    @property
    def replans(self) -> int:
        return self.history.replans

    def restore(self, history: History) -> None:
        """Carry on from an earlier watcher's history (igniter watch --once keeps it beside the state): its
        intervals count towards the streaks and its adapted corrections are the model's. A history of another
        plan, or of other workloads or models, is ignored (a fresh start)."""
        if (history.plan != self.history.plan or set(history.rates) != set(self.history.rates)
                or [set(c) for c in history.corrections] != [set(c) for c in self.history.corrections]):
            return
        self.history = history
        for t, corrections in zip(self.types, history.corrections):
            model = _adaptable(t.perf_model)
            for m, c in corrections.items():
                model.fits[m].correction = c

    def snapshot(self) -> History:
        """The history to restore from, with the adapted model's corrections now."""
        self.history.corrections = [_corrections(t.perf_model) for t in self.types]
        return self.history.model_copy(deep=True)

    # -- the running plan --------------------------------------------------------------------------------------
    def adopt(self, plan_path: Path) -> None:
        """Make ``plan_path`` the running plan: what detection compares with from the next interval on."""
        plan = read_plan(plan_path)
        planned = {w: sum(s.rate for s in servers) for w, servers in plan.by_workload().items()}
        names = {w.name for w in self.workload_set.workloads}
        if set(planned) != names:
            odd = sorted(set(planned) ^ names)[0]
            raise UserError(f"workload {odd!r} is in {'the plan' if odd in planned else 'the workloads file'} "
                            "but not in the other", "give the workloads file the plan was provisioned from",
                            str(plan_path))
        type_index = {t.type: i for i, t in enumerate(self.types)}
        for gpu in plan.gpus:
            if gpu.type not in type_index:
                raise UserError(f"the plan's GPU type {gpu.type!r} is not in the performance model or catalog "
                                f"({', '.join(sorted(type_index))})", "give the catalog (or perf model) the plan "
                                "was provisioned with", str(plan_path))
        self.plan_path, self.plan, self.planned_rps = plan_path, plan, planned
        self.history.plan = str(Path(plan_path).resolve())
        # the corrections the running plan was made with: detection compares with that model, not the adapted one
        self.history.plan_corrections = [_corrections(t.perf_model) for t in self.types]
        self.history.corrections = [dict(c) for c in self.history.plan_corrections]
        self._restart_streaks()

    def _restart_streaks(self, fired: list[Decision] | None = None) -> None:
        """Detection counts from the next interval on: every rule after a new plan; after a re-plan that was not
        applied, the rules that ``fired`` it (they must hold again before the next try; the others' streaks go on)."""
        h = self.history
        if fired is None:
            h.since = {w: len(rates) for w, rates in h.rates.items()}
            h.ratios, h.p99s, h.failures = {}, {}, {}
            return
        for d in fired:
            if d.kind.startswith("load_"):
                h.since[d.subject] = len(h.rates[d.subject])
            elif d.kind == "interference":
                h.ratios[d.subject] = []
            elif d.kind == "slo_risk":
                h.p99s[d.subject], h.failures[d.subject] = [], []

    # -- one interval ------------------------------------------------------------------------------------------
    def tick(self, observations: list[Observation], now_s: float) -> list[Decision]:
        entries = {s.name: (g, s) for g, s in self.plan.servers()}
        seen = [o for o in observations if o.server in entries and o.model == entries[o.server][1].model]
        predicted = self._predicted(seen, entries)
        self._learn(seen, entries)
        h = self.history
        for workload, rate in _workload_rates(seen, entries).items():
            h.rates[workload].append(rate)
        for o in seen:
            h.ratios.setdefault(o.server, []).append(detect.slowdown(o.compute_ms, predicted[o.server]))
            h.p99s.setdefault(o.server, []).append(o.p99_ms)
            h.failures.setdefault(o.server, []).append(o.failures)
        h.trim(MAX_HISTORY)
        detections, targets = self._detect(now_s, seen, entries, predicted)
        decisions = list(detections)
        if detections:
            down = sorted(o.server for o in _observations_down(seen))
            decisions.append(self._replan(now_s, targets, [d.kind for d in detections], down))
            if decisions[-1].action != APPLIED:
                self._restart_streaks(detections)
        else:
            decisions.append(Decision(now_s, "steady", str(self.plan_path), "no drift detected",
                                      observed={w: r[-1] for w, r in h.rates.items() if r},
                                      predicted=dict(self.planned_rps)))
        for d in decisions:
            self.log(d.as_dict())
        return decisions

    def _type_of(self, gpu_type: str) -> int:
        return next(i for i, t in enumerate(self.types) if t.type == gpu_type)

    def _members(self, gpu, observed_batch: dict[str, int]) -> list[Member]:
        return [Member(s.model, observed_batch.get(s.name, s.batch), s.share) for s in gpu.servers]

    def _predicted(self, seen: list[Observation], entries: dict) -> dict[str, float]:
        """Batch latency the running plan's model predicts for each observed server: its co-location, every
        server at the batch Triton formed (the planned batch where none formed)."""
        batches = {o.server: _batch(o.avg_batch) for o in seen if _batch(o.avg_batch)}
        out = {}
        for o in seen:
            gpu, entry = entries[o.server]
            ti = self._type_of(gpu.type)
            members = self._members(gpu, batches)
            with _using(self.types[ti].perf_model, self.history.plan_corrections[ti]):
                preds = self.types[ti].perf_model.predict_sets([members])[0]
            out[o.server] = next(p.latency_ms for s, p in zip(gpu.servers, preds) if s.name == o.server)
        return out

    def _learn(self, seen: list[Observation], entries: dict) -> None:
        """Feed every server that formed batches to its type's perf model (online correction)."""
        batches = {o.server: _batch(o.avg_batch) for o in seen if _batch(o.avg_batch)}
        by_type: dict[int, tuple[list, list]] = {}
        for o in seen:
            if o.server not in batches or not math.isfinite(o.compute_ms) or o.compute_ms <= 0:
                continue
            gpu, entry = entries[o.server]
            members = self._members(gpu, batches)
            own = next(m for m, s in zip(members, gpu.servers) if s.name == o.server)
            sets, measured = by_type.setdefault(self._type_of(gpu.type), ([], []))
            sets.append([own] + [m for m, s in zip(members, gpu.servers) if s.name != o.server])
            measured.append(o.compute_ms)
        for ti, (sets, measured) in by_type.items():
            model = _adaptable(self.types[ti].perf_model)
            if model is not None:
                model.update_sets(sets, measured, rate=self.settings.update_rate)

    def _detect(self, now_s: float, seen: list[Observation], entries: dict,
                predicted: dict[str, float]) -> tuple[list[Decision], dict[str, float]]:
        s = self.settings
        decisions, targets = [], {}
        h = self.history
        for workload, rates in sorted(h.rates.items()):
            drift = detect.load_drift(rates, self.planned_rps[workload], s, h.since[workload])
            if drift is None:
                continue
            targets[workload] = drift.target_rps
            decisions.append(Decision(
                now_s, f"load_{drift.direction}", workload,
                f"forecast {drift.forecast_rps:.4g} req/s vs planned {drift.planned_rps:.4g} req/s for "
                f"{drift.streak} intervals; re-plan for {drift.target_rps:.4g} req/s",
                observed={"rate_rps": drift.observed_rps, "forecast_rps": drift.forecast_rps},
                predicted={"planned_rps": drift.planned_rps, "target_rps": drift.target_rps}, action=REPLAN))
        for o in seen:
            gpu, entry = entries[o.server]
            count = detect.interference_drift(h.ratios[o.server], s)
            if count:
                partners = [x.name for x in gpu.servers if x.name != o.server]
                last = next(r for r in reversed(h.ratios[o.server]) if r is not None)   # the last with a batch
                decisions.append(Decision(
                    now_s, "interference", o.server,
                    f"batch latency {last:.3g}x the prediction for its co-location "
                    f"(threshold {1 + s.interference_threshold:g}x) for {count} intervals",
                    observed={"compute_ms": o.compute_ms, "avg_batch": o.avg_batch},
                    predicted={"compute_ms": predicted[o.server], "gpu": gpu.id, "partners": partners},
                    action=REPLAN))
            risk = detect.slo_risk(h.p99s[o.server], h.failures[o.server], entry.slo_ms, s, o.request_ms)
            if risk:
                decisions.append(Decision(
                    now_s, "slo_risk", o.server, risk,
                    observed={"p99_ms": o.p99_ms, "mean_ms": o.request_ms, "failures": o.failures, "up": o.up},
                    predicted={"p99_ms": entry.predicted_p99_ms, "slo_ms": entry.slo_ms}, action=REPLAN))
        for o in _observations_down(seen):
            decisions.append(Decision(now_s, "slo_risk", o.server, "its metrics could not be read",
                                      observed={"up": False}, predicted={"slo_ms": entries[o.server][1].slo_ms},
                                      action=REPLAN))
        return decisions, targets

    # -- re-plan -----------------------------------------------------------------------------------------------
    def _replan(self, now_s: float, targets: dict[str, float], kinds: list[str], down: list[str]) -> Decision:
        """Re-plan for ``targets`` and apply; with servers ``down`` the plan is applied even if unchanged (apply
        restarts what died)."""
        # a workload that went idle is planned at the least rate a workloads file may give (it keeps one server)
        rates = {w: max(targets.get(w, self.planned_rps[w]), MIN_RATE) for w in self.planned_rps}
        base = dict(observed={"rates_rps": {w: r[-1] for w, r in self.history.rates.items() if r}},
                    predicted={"planned_rps": dict(self.planned_rps), "target_rps": rates})
        self.progress(f"watch: re-planning ({', '.join(kinds)}); its solve stops after about "
                      f"{self.settings.time_limit_s:g} s")
        try:
            chosen, candidates = self._choose(rates)
        except Exception as err:  # noqa: BLE001 - whatever fails, the running plan keeps serving
            return Decision(now_s, "replan", str(self.plan_path), f"re-plan failed: {_message(err)}",
                            action=KEPT, details={"triggers": kinds, "error": _message(err)}, **base)
        details = {"triggers": kinds, "candidates": {c.name: {"price": c.plan.totals.cost, "moves": c.moves,
                                                               "score": c.score, "status": c.plan.totals.status}
                                                      for c in candidates},
                   "chosen": chosen.name, "gpus": {"running": self.plan.totals.gpus, "new": chosen.plan.totals.gpus}}
        if _same_serving(self.plan, chosen.plan) and not down:
            # the adapted model would run the same servers: its figures are what they should show from now on
            self.history.plan_corrections = [_corrections(t.perf_model) for t in self.types]
            return Decision(now_s, "replan", str(self.plan_path), "the re-plan is the running plan; its "
                            "predictions are the adapted model's from now on", action=KEPT, details=details, **base)
        if self.dry_run:
            return Decision(now_s, "replan", str(self.plan_path),
                            f"would apply the {chosen.name} plan ({len(chosen.moves)} servers started)",
                            action=WOULD_APPLY, details=details, **base)
        return self._apply(now_s, chosen, details, base)

    def _apply(self, now_s: float, chosen: _Candidate, details: dict, base: dict) -> Decision:
        target = None
        try:
            target = self._plan_dir(chosen.name)
            write_plan(chosen.plan, chosen.problem, target, self.src_repo, {"strategy": self.settings.strategy,
                                                                             "watch": details})
            self.apply_plan(target)
        except Exception as err:  # noqa: BLE001 - a refused or failed apply leaves the running plan serving
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
            return Decision(now_s, "replan", str(self.plan_path),
                            f"apply failed, the running plan keeps serving: {_message(err)}", action=KEPT,
                            details={**details, "error": _message(err)}, **base)
        previous = self.plan_path
        self.history.replans += 1
        self.adopt(target)
        self._prune({target.resolve(), Path(previous).resolve()})
        return Decision(now_s, "replan", str(target),
                        f"applied the {chosen.name} plan ({len(chosen.moves)} servers started), was {previous}",
                        action=APPLIED, details=details, **base)

    def _plan_dir(self, name: str) -> Path:
        """A new directory for a re-plan: numbered after every earlier one (names are never reused)."""
        if self.plans_dir is None:
            self.plans_dir = Path(tempfile.mkdtemp(prefix="igniter-watch-plans-"))
        root = make_owned_dir(self.plans_dir, "igniter watch (re-plans)", "watch plans directory",
                              "choose another --state directory")
        numbers = [int(p.name.split("-", 1)[0]) for p in root.iterdir() if p.name.split("-", 1)[0].isdigit()]
        return root / f"{max(numbers, default=0) + 1:04d}-{name}"

    def _prune(self, keep: set[Path]) -> None:
        """Delete the re-plans this watcher's directory holds but the running and the previous plan (only
        directories igniter wrote: a plan's marker)."""
        for entry in sorted(self.plans_dir.iterdir()):
            if entry.resolve() not in keep and entry.name.split("-", 1)[0].isdigit() and is_owned(entry):
                shutil.rmtree(entry, ignore_errors=True)

    def _choose(self, rates: dict[str, float]) -> tuple[_Candidate, list[_Candidate]]:
        """The candidates (nothing is written: moves are counted from the launch specs the plans would get)."""
        workloads = tuple(replace(w, rate=rates[w.name]) for w in self.workload_set.workloads)
        problem = build_problem(WorkloadSet(workloads, self.workload_set.accuracy_weight), self.types,
                                self.plan.latency_model)
        keep_stateful_on_one_server(problem)
        found = [("keep", self._keep(problem))]
        fresh, _ = solve(problem, self.settings.strategy, self.settings.time_limit_s)
        found.append(("fresh", fresh))
        running = {s.name: s.launch_digest for s in planned_servers(self.plan_path)}
        candidates = []
        for name, assignment in found:
            if assignment is None:
                continue
            plan = build_plan(problem, assignment, self.settings.strategy)
            moves = sorted(n for n, digest in _launch_digests(plan, problem).items() if running.get(n) != digest)
            score = plan.totals.cost + self.settings.move_penalty * len(moves)
            candidates.append(_Candidate(name, problem, plan, moves, score))
        # a plan that misses an SLO under the adapted model loses to any that does not; ties keep placements
        chosen = min(candidates, key=lambda c: (len(c.plan.totals.misses) > 0, c.score, c.name != "keep"))
        return chosen, candidates

    def _keep(self, problem: ProvisioningProblem) -> Assignment | None:
        """The running placement in the new problem: every server stays on its GPU with its configuration (at
        the new rate); a workload whose model or batch its type no longer knows is packed around them (the
        greedy's rule); then the full model's repair (finish) widens or moves what misses its SLO. None: over a
        max_count."""
        index = {w.name: wi for wi, w in enumerate(problem.workloads)}
        gpus, homeless = [], set()
        for gpu in self.plan.gpus:
            ti = self._type_of(gpu.type)
            kept = Gpu(ti)
            for s in gpu.servers:
                option = _option_like(problem, index[s.workload], ti, s)
                if option is None:
                    homeless.add(index[s.workload])
                else:
                    kept.servers.append(Server(index[s.workload], s.replica, option))
            gpus.append(kept)
        for g in gpus:
            g.servers = [s for s in g.servers if s.workload not in homeless]
        gpus = [g for g in gpus if g.servers]
        extra = []
        for wi in sorted(homeless):
            option = min_share_options(problem, wi)[0]
            extra += [Server(wi, r, option) for r in range(option.replicas)]
        gpus = pack(problem, extra, gpus)
        found = finish(problem, Assignment(gpus, problem.share_lower_bound(), "heuristic"))
        return found if within_max_count(problem, found.gpus) else None


def _workload_rates(seen: list[Observation], entries: dict) -> dict[str, float]:
    """Each workload's arrival rate, summed over its replicas; only where every replica was observed up (a missing
    one would read as a drop in load)."""
    rates: dict[str, float] = {}
    up: dict[str, int] = {}
    for o in seen:
        workload = entries[o.server][1].workload
        rates[workload] = rates.get(workload, 0.0) + o.rate_rps
        up[workload] = up.get(workload, 0) + o.up
    replicas: dict[str, int] = {}
    for _, entry in entries.values():
        replicas[entry.workload] = replicas.get(entry.workload, 0) + 1
    return {w: r for w, r in rates.items() if up[w] == replicas[w]}


def _observations_down(seen: list[Observation]) -> list[Observation]:
    return [o for o in seen if not o.up]


def _option_like(problem: ProvisioningProblem, wi: int, ti: int, s) -> Option | None:
    """The running server as an option of workload wi at its new rate: its model, share and replicas (what a
    restart would change), at its batch if that still meets the SLO solo, else at the batch with the most slack
    (a batch is a live config reload). Terms from the type's grid (problem.with_share), the batcher delay for the
    new rate, the path terms the planner prices every option with (candidates). None: the type no longer knows
    the model. It may still miss its SLO: repair widens or moves it."""
    grid = problem.grids.get((ti, s.model))
    w = problem.workloads[wi]
    accuracy = next((v.accuracy for v in w.models() if v.model == s.model), None)
    if grid is None or accuracy is None:
        return None
    rate = w.rate / s.replicas
    path, slowdown = problem.path_terms(ti)
    extra = queueing.transfer_ms(w.input_bytes, problem.types[ti].network_gbps) + path
    share = grid.share_index(s.share)

    def at(batch: int) -> Option:
        template = Option(wi, ti, s.model, accuracy, batch, s.share, s.replicas, rate,
                          float(grid.memory[grid.batch_index(batch)]), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, extra,
                          int(queueing.max_queue_delay_us(batch, rate)), slowdown)
        return problem.with_share(template, share)

    batches = [int(b) for b in grid.batches]
    if s.batch in batches and at(s.batch).slack_ms >= 0:
        return at(s.batch)
    return max((at(b) for b in batches), key=lambda o: o.slack_ms)


def _launch_digests(plan: Plan, problem: ProvisioningProblem) -> dict[str, str]:
    """Server name -> the launch digest apply compares (what forces a new process), as write_plan would write it."""
    return {s.name: PlannedServer(s.name, g.id, s.share, Path(), launch_spec(g, s, launch, [s.model]), [s.workload],
                                  {}).launch_digest for g, s, launch in server_launches(plan, problem)}


def _same_serving(running: Plan, new: Plan) -> bool:
    """Would applying ``new`` change nothing that serves: same servers, configurations and routing weights."""
    def key(plan: Plan) -> list:
        return sorted((g.id, g.type, s.name, s.model, s.batch, s.share, s.max_queue_delay_us, s.rate)
                      for g, s in plan.servers())
    return key(running) == key(new)


def _batch(avg_batch: float) -> int | None:
    """The batch Triton formed, as the whole batch the perf model takes (None: none formed)."""
    return max(1, int(round(avg_batch))) if math.isfinite(avg_batch) and avg_batch > 0 else None


def _adaptable(perf_model: Any) -> Any:
    """The PerfModel under a type's model (a RepositoryPerfModel wraps it), if it adapts online."""
    inner = getattr(perf_model, "inner", perf_model)
    return inner if hasattr(inner, "update_sets") else None


def _corrections(perf_model: Any) -> dict[str, float]:
    model = _adaptable(perf_model)
    return {m: f.correction for m, f in model.fits.items()} if model is not None else {}


@contextlib.contextmanager
def _using(perf_model: Any, corrections: dict[str, float]) -> Iterator[None]:
    """Predict with the corrections the running plan was made with, then back to the adapted ones."""
    model = _adaptable(perf_model)
    now = _corrections(perf_model)
    try:
        for m, c in corrections.items():
            model.fits[m].correction = c
        yield
    finally:
        for m, c in now.items():
            model.fits[m].correction = c


def _message(err: BaseException) -> str:
    if isinstance(err, UserError):
        return err.line()
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
