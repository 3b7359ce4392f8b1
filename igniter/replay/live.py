"""A replay through the front doors, with the watch loop re-provisioning live (``igniter replay --watch``).

Unlike the direct replay (run.py), clients send to each workload's stable front-door endpoint (the state's
``endpoints_by_workload``), so a plan that moves, adds or retires servers keeps its traffic. The clients run in a
thread of their own (an asyncio loop); the main thread is the control loop: every interval (unscaled seconds x K
real) it scrapes every server's metrics, turns two scrapes into observations (igniter.watch.observe), and, with
--watch, calls Watcher.tick, whose apply hook emulates the new plan (emulator.write_emulated_plan, sharing this
replay's emulated devices) and applies it with the Deployer (live reload / reshare / start / retire). Without a
watcher the plan stays as it is: the static baselines of the benchmark run through the same path.

Every time reported is unscaled (seconds / K). ``gpu_hours``: the integral over the measured window of the GPUs
the running plan uses (a plan counts from the end of its apply). A request counts against the plan running when it
was scheduled; "failed during reconfiguration": failed requests scheduled while an apply ran or within
RECONFIGURATION_DRAIN_S (real) after it.

The path's own time per batch is left out of every hold as in the plain replay (run.py): the same zero-latency
probe (run.CALIBRATION) runs beside the plans, in a deployment of its own (WORKDIR/probe: the watch loop
observes and re-plans only the plan's servers), gets CALIBRATION_RPS directly from the client thread, and its
PathTracker writes the measured time where every generation's emulated servers read it.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from igniter.deployment.apply import Deployer
from igniter.deployment.report import timeseries_png, write_html_report
from igniter.deployment.state import load_state
from igniter.errors import UserError
from igniter.profiling.loadgen import LoadResult, open_loop, triton_infer
from igniter.replay.emulator import (EmulatedDevices, PlannedServer, constant_tables, latency_tables, read_plan,
                                     write_emulated_plan)
from igniter.replay.run import (CALIBRATION, PathTracker, ReplayOptions, check_interference, inject, offered_trace,
                                probe_offsets, probe_summary, schedule, track_path)

PROBE_DIR = "probe"            # the zero-latency probe's own deployment: the watcher never sees it as a workload
RECONFIGURATION_DRAIN_S = 5.0  # real seconds after an apply whose failures still count against it
CLIENT_DRAIN_S = 60.0          # real seconds requests in flight at the end may take (an overloaded plan's queue):
                               # a late answer is an SLO miss, not a failure

Say = Callable[[str], None]


@dataclass
class WatchOptions:
    """What the watch loop needs beyond the replay's: the inputs it re-provisions from, and its settings."""

    workloads: Path
    catalog: Path | None = None
    interval_s: float = 1.0           # unscaled seconds between two ticks
    settings: object | None = None    # igniter.watch.detect.WatchSettings; None: its defaults
    enabled: bool = True              # False: observe only (the static baselines)


@dataclass
class Generation:
    """One plan the replay ran: from when its apply ended (real s from the traffic's start)."""

    since_s: float
    servers: list[PlannedServer]
    pipeline_ms: dict[str, float]     # server -> the load delay the replay adds to its requests

    @property
    def gpus(self) -> int:
        return len({s.gpu for s in self.servers})

    def workload_pipeline_ms(self, workload: str) -> float:
        return max((self.pipeline_ms[s.name] for s in self.servers if s.workload == workload), default=0.0)


@dataclass
class LiveRun:
    """What the control loop records while the clients run."""

    generations: list[Generation] = field(default_factory=list)
    applies: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end real s, outcome)
    decisions: list[dict] = field(default_factory=list)


class LiveReplay:
    def __init__(self, opts: ReplayOptions, watch: WatchOptions, say: Say):
        from igniter.provisioning.workloads import load_perf_model  # noqa: PLC0415 - heavy (xgboost)

        self.opts, self.watch, self.say = opts, watch, say
        self.perf_model = load_perf_model(opts.perf_model)
        self.devices = EmulatedDevices(opts.workdir / "devices")
        self.deployer = Deployer(opts.workdir / "state.json", detached=False,
                                 progress=lambda m: say(f"apply: {m.strip()}"))
        self.probe = Deployer(opts.workdir / PROBE_DIR / "state.json", detached=False,
                              progress=lambda m: say(f"apply: {m.strip()}"))
        self.run = LiveRun()
        self.t0: float | None = None  # time.monotonic() when the clients' schedules start

    # -- plans ----------------------------------------------------------------------------------------------------
    def deploy(self, plan_path: Path) -> None:
        """Emulate a (real) plan and bring the servers to it; the apply hook the watcher calls (raises to refuse)."""
        plan_path = plan_path / "plan.json" if plan_path.is_dir() else plan_path
        servers = read_plan(plan_path)
        if not self.run.generations:  # a re-plan may leave the slowed GPU: its neighbour stays where it was
            check_interference(self.opts.interference, servers)
        tables = latency_tables(self.perf_model, servers)
        out = self.opts.workdir / f"emulated-{len(self.run.generations)}"
        emulated = write_emulated_plan(servers, tables, out, self.opts.scale, self.devices)
        started = self._now()
        try:
            self.deployer.apply(emulated)
        except BaseException as err:
            self.run.applies.append((started, self._now(), f"failed: {err}"))
            raise
        self.run.applies.append((started, self._now(), "applied"))
        self.run.generations.append(Generation(self._now(), servers,
                                               {s.name: tables[s.name].get("pipeline_ms", 0.0) for s in servers}))

    def _start_probe(self) -> tuple[PathTracker, str]:
        """The zero-latency probe in its own deployment, its tracker writing to this replay's devices."""
        (self.opts.workdir / PROBE_DIR).mkdir(parents=True, exist_ok=True)
        plan = write_emulated_plan([CALIBRATION], constant_tables([CALIBRATION], lambda s, n: 0.0),
                                   self.opts.workdir / PROBE_DIR / "emulated", self.opts.scale, self.devices)
        self.probe.apply(plan)
        server = load_state(self.probe.state_path).servers[CALIBRATION.name]
        return PathTracker(server.metrics, self.devices.overhead_file), server.grpc

    def _now(self) -> float:
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    # -- the run ----------------------------------------------------------------------------------------------------
    def execute(self) -> dict:
        opts = self.opts
        started = time.monotonic()
        try:
            self.deployer.stop_all()
            self.probe.stop_all()
            tracker, probe_grpc = self._start_probe()
            self.deploy(opts.plan)
            servers = self.run.generations[0].servers
            trace = offered_trace(opts, servers)
            endpoints = load_state(self.deployer.state_path).endpoints_by_workload()
            clients = ClientThread(servers, endpoints, trace, opts, self.devices, self.say, (probe_grpc, tracker))
            clients.start()
            self.t0 = clients.started.wait_for_t0()
            self._control_loop(clients)
            results = clients.join()
        finally:
            self.deployer.stop_all()
            self.probe.stop_all()
        result = self.summarise(servers, results)
        result["overhead"] = {**probe_summary(clients.probe_result, opts.time_scale),
                              "per_batch_real_ms": tracker.mean_ms()}
        result["seconds"] = round(time.monotonic() - started, 1)
        opts.workdir.mkdir(parents=True, exist_ok=True)
        (opts.workdir / "result.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
        (opts.workdir / "timeseries.png").write_bytes(timeseries_png(result))
        result["plot"] = str(opts.workdir / "timeseries.png")
        result["report"] = str(write_html_report(opts.workdir / "report.html", result, "igniter replay --watch"))
        return result

    def _control_loop(self, clients: "ClientThread") -> None:
        from igniter.watch.observe import observe, scrape_all  # noqa: PLC0415

        k = self.opts.time_scale
        watcher = self._watcher()
        total = self.opts.warmup_s + self.opts.duration_s
        step = self.watch.interval_s * k
        state = load_state(self.deployer.state_path)
        before = scrape_all(state)
        wake = step
        while clients.is_alive() and wake <= total:
            time.sleep(max(wake - self._now(), 0.0))
            state = load_state(self.deployer.state_path)
            after = scrape_all(state)
            observations = observe(state, before, after, time_scale=k)
            now_s = self._now() / k
            applied = len(self.run.applies)
            if watcher is not None:
                self.run.decisions += [decision.as_dict() for decision in watcher.tick(observations, now_s)]
            wake += step
            if len(self.run.applies) != applied:  # a new plan: a whole interval from its servers' first scrape
                after = scrape_all(load_state(self.deployer.state_path))
                wake = self._now() + step
            before = after
            self.say(f"replay: {self._now():.0f}/{total:.0f} s, {self.run.generations[-1].gpus} GPU(s), "
                     f"{len(self.run.applies) - 1} reconfiguration(s), ETA {max(total - self._now(), 0):.0f} s")

    def _watcher(self):
        if not self.watch.enabled:
            return None
        from igniter.watch.loop import WatchSettings, Watcher  # noqa: PLC0415

        return Watcher(self.opts.plan, self.opts.perf_model, self.watch.workloads, self.watch.catalog,
                       apply_plan=self.deploy, settings=self.watch.settings or WatchSettings(),
                       log=lambda d: self.say(f"watch: {json.dumps(d, sort_keys=True)}"),
                       plans_dir=self.opts.workdir / "plans")

    # -- the result -----------------------------------------------------------------------------------------------
    def summarise(self, first: list[PlannedServer], results: dict[str, LoadResult]) -> dict:
        opts, run, k = self.opts, self.run, self.opts.time_scale
        warm = opts.warmup_s
        slo = {s.workload: s.slo_ms for s in first}


        requests = {}  # workload -> (scheduled real s from traffic start, unscaled latency or nan for a failure)
        for workload, r in results.items():
            sent = r.scheduled_s + warm
            which = self._generation_at(sent)
            pipeline = np.array([g.workload_pipeline_ms(workload) for g in run.generations])[which]
            failed_at = r.failed_scheduled_s + warm
            requests[workload] = (np.concatenate([sent, failed_at]),
                                  np.concatenate([r.latencies_ms / k + pipeline, np.full(len(failed_at), np.nan)]))
        rows = [_workload_row(w, slo[w], *requests[w], results[w]) for w in sorted(requests)]
        all_latency = np.concatenate([requests[w][1] for w in requests]) if requests else np.zeros(0)
        all_slo = np.concatenate([np.full(len(requests[w][1]), slo[w]) for w in requests]) if requests else np.zeros(0)
        failed_at = np.concatenate([r.failed_scheduled_s + warm for r in results.values()] or [np.zeros(0)])
        during = np.zeros(len(failed_at), dtype=bool)
        for a, b, _ in run.applies[1:]:
            during |= (failed_at >= a) & (failed_at < b + RECONFIGURATION_DRAIN_S)
        return {
            "mode": "watch" if self.watch.enabled else "static", "time_scale": k, "duration_s": opts.duration_s,
            "emulated_duration_s": opts.duration_s / k, "interval_s": self.watch.interval_s,
            "trace": str(opts.trace) if opts.trace else None,
            "gpus": run.generations[0].gpus, "servers": len(first), "workloads": rows,
            "attainment_min": min((r["attainment"] for r in rows), default=0.0),
            "attainment": float(np.sum(all_latency <= all_slo)) / len(all_latency) if len(all_latency) else 0.0,
            "failed": sum(r["failed"] for r in rows), "failed_during_reconfiguration": int(np.sum(during)),
            "gpu_hours": self._gpu_hours(), "reconfigurations": sum(1 for *_, o in run.applies[1:] if o == "applied"),
            "failed_applies": sum(1 for *_, o in run.applies[1:] if o != "applied"),
            "detections": detections(run.decisions),
            "load_steps": [{"factor": x.factor, "at_s": x.at_s} for x in opts.load_steps],
            "interference": [{"gpu": x.gpu, "factor": x.factor, "at_s": x.at_s} for x in opts.interference],
            "applies": [{"start_s": a / k, "end_s": b / k, "outcome": o} for a, b, o in run.applies[1:]],
            "plans": [{"since_s": g.since_s / k, "gpus": g.gpus, "servers": len(g.servers)} for g in run.generations],
            "decisions": run.decisions,
            "series": self._series(requests, slo),
        }

    def _generation_at(self, real_s: np.ndarray) -> np.ndarray:
        """Index of the plan running at each real time (the first plan before its apply ended)."""
        since = np.array([g.since_s for g in self.run.generations])
        return np.clip(np.searchsorted(since, real_s, side="right") - 1, 0, len(since) - 1)

    def _gpu_hours(self) -> float:
        return gpu_hours([(g.since_s, g.gpus) for g in self.run.generations], self.opts.warmup_s,
                         self.opts.warmup_s + self.opts.duration_s, self.opts.time_scale)

    def _series(self, requests: dict, slo: dict[str, float]) -> list[dict]:
        """Per interval of the measured window: offered rate, GPUs at its end, each workload's p99 and SLO."""
        k, step = self.opts.time_scale, self.watch.interval_s * self.opts.time_scale
        start, end = self.opts.warmup_s, self.opts.warmup_s + self.opts.duration_s
        rows = []
        for a in np.arange(math.ceil(start / step - 1e-9) * step, end - 1e-9, step):  # the ticks' intervals
            b = min(a + step, end)
            gen = self.run.generations[int(self._generation_at(np.array([b]))[0])]
            p99 = {}
            sent = 0
            for w, (at, latency) in requests.items():
                inside = latency[(at >= a) & (at < b)]
                sent += len(inside)
                p99[w] = _p99_counting_failures(inside) if len(inside) else None
            rows.append({"t_s": round(a / k, 4), "rate_rps": sent / ((b - a) / k), "gpus": gen.gpus,
                         "p99_ms": {w: (None if v is None or not math.isfinite(v) else v) for w, v in p99.items()},
                         "slo_ms": slo})
        return rows


def gpu_hours(plans: list[tuple[float, int]], start_s: float, end_s: float, k: float) -> float:
    """Unscaled GPU-hours over the real window [start_s, end_s): each plan (from its real start time, its GPUs)
    counts until the next one starts; the first counts from the window's start whenever it began."""
    total = 0.0
    for i, (since, gpus) in enumerate(plans):
        a = max(since, start_s) if i else start_s
        b = min(plans[i + 1][0], end_s) if i + 1 < len(plans) else end_s
        total += gpus * max(b - a, 0.0)
    return total / k / 3600.0


def _p99_counting_failures(latency: np.ndarray) -> float:
    """The p99 with failures (NaN) as infinitely slow; inf when over 1 % failed."""
    ordered = np.sort(np.nan_to_num(latency, nan=math.inf))
    return float(ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)])


def _workload_row(name: str, slo_ms: float, sent: np.ndarray, latency: np.ndarray, result: LoadResult) -> dict:
    ok = latency[np.isfinite(latency)]
    pct = lambda q: float(np.percentile(ok, q)) if len(ok) else math.nan  # noqa: E731
    return {"name": name, "model": result.model, "slo_ms": slo_ms, "measured_p50_ms": pct(50),
            "measured_p99_ms": pct(99), "attainment": float(np.sum(ok <= slo_ms)) / len(latency) if len(latency) else 0.0,
            "requests": len(latency), "failed": int(np.sum(~np.isfinite(latency))), "errors": result.errors[:3]}


def detections(decisions: list[dict]) -> list[dict]:
    """The watcher's drift detections, [{kind, time_s}], in order (the decisions whose kind is a drift)."""
    return [{"kind": d["kind"], "time_s": d["time_s"]} for d in decisions
            if d.get("kind") in ("load_up", "load_down", "interference", "slo_risk")]


class ClientThread(threading.Thread):
    """Each workload's open-loop arrivals through its front door, on an asyncio loop of its own."""

    def __init__(self, servers: list[PlannedServer], endpoints: dict[str, dict], trace, opts: ReplayOptions,
                 devices: EmulatedDevices, say: Say, probe: tuple[str, PathTracker]):
        super().__init__(name="replay-clients", daemon=True)
        self.servers, self.endpoints, self.trace, self.opts, self.devices, self.say = (
            servers, endpoints, trace, opts, devices, say)
        self.probe_grpc, self.tracker = probe   # the zero-latency probe's gRPC address and its path tracker
        self.started = _T0()
        self.results: dict[str, LoadResult] | None = None
        self.probe_result: LoadResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.results = asyncio.run(self._drive())
        except BaseException as err:  # noqa: BLE001 - handed to the main thread by join()
            self.error = err
            self.started.fail()

    async def _drive(self) -> dict[str, LoadResult]:
        by_workload: dict[str, PlannedServer] = {}
        for s in self.servers:  # one schedule per workload: its whole rate (the replicas' parts together)
            whole = by_workload.get(s.workload)
            by_workload[s.workload] = s if whole is None else PlannedServer(**{**whole.__dict__, "rate": whole.rate + s.rate})
        workloads = sorted(by_workload)
        merged = list(by_workload.values())
        plans = [(w, by_workload[w], schedule(by_workload[w], merged, self.trace, self.opts, self.opts.seed + i))
                 for i, w in enumerate(workloads)]

        async def one(workload: str, server: PlannedServer, offsets: np.ndarray) -> LoadResult:
            endpoint = self.endpoints[workload]["grpc"]
            async with triton_infer(endpoint, server.model, 1, 0) as infer:
                return await open_loop(infer, 1.0, self.opts.duration_s, warmup_s=self.opts.warmup_s,
                                       offsets=offsets, model=server.model, drain_s=CLIENT_DRAIN_S)

        async def probe() -> LoadResult:
            async with triton_infer(self.probe_grpc, CALIBRATION.model, 1, 0) as infer:
                return await open_loop(infer, 1.0, self.opts.duration_s, warmup_s=self.opts.warmup_s,
                                       offsets=probe_offsets(self.opts, self.opts.seed + len(workloads)),
                                       model=CALIBRATION.model)

        self.started.set(time.monotonic())
        background = [asyncio.ensure_future(inject(self.opts.interference, self.devices, self.opts.time_scale,
                                                   self.say)), asyncio.ensure_future(track_path(self.tracker))]
        try:
            *done, self.probe_result = await asyncio.gather(*(one(w, s, o) for w, s, o in plans), probe())
        finally:
            for task in background:
                task.cancel()
        return dict(zip(workloads, done))

    def join(self, timeout: float | None = None) -> dict[str, LoadResult]:
        super().join(timeout)
        if self.error is not None:
            raise self.error
        return self.results


class _T0:
    """The clients' start time, handed from their thread to the control loop."""

    def __init__(self):
        self._event = threading.Event()
        self._t0: float | None = None

    def set(self, t0: float) -> None:
        self._t0 = t0
        self._event.set()

    def fail(self) -> None:
        self._event.set()

    def wait_for_t0(self) -> float:
        self._event.wait()
        if self._t0 is None:
            raise UserError("the replay's clients did not start", "see the error above")
        return self._t0


def run_live_replay(opts: ReplayOptions, watch: WatchOptions, say: Say = lambda m: None) -> dict:
    if not (opts.time_scale > 0 and math.isfinite(opts.time_scale)):
        raise UserError(f"time scale {opts.time_scale} is not a positive number", "give e.g. --time-scale 10")
    if not (watch.interval_s > 0 and math.isfinite(watch.interval_s)):
        raise UserError(f"watch interval {watch.interval_s} is not a positive number of seconds",
                        "give e.g. --watch-interval 1 (unscaled seconds)", "--watch-interval")
    return LiveReplay(opts, watch, say).execute()
