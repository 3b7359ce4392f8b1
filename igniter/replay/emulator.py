"""An emulated accelerator for Triton: a plan's servers as python-backend models that sleep for the predicted time.

Every planned server becomes a Triton model repository serving the planned model name with the planned batcher
(max_batch_size, preferred batch, max queue delay, one instance: Triton's real dynamic batcher forms the batches),
whose execute() holds a batch of n samples for hold(n, busy partners) x K (igniter/triton/emulated_backend.py).
hold = n / throughput, the time the batch occupies the device; latency - hold (input loading, which overlaps the
previous batch: iGniter's t_load) delays the request without occupying the device, so the replay adds it to each
request's measured latency instead of holding the instance for it.

Interference: the latency table comes from the perf model's full co-located prediction (``PerfModel.predict``)
for every subset of the server's partners on the same planned GPU (at their planned batch and share), and the
backend picks the row of the partners busy at that moment (a byte per server in a file shared by the replay),
so a partner slows a batch only while it is itself holding one. With every partner busy the hold is exactly the
plan's predicted co-located latency; with none, the solo latency. Partners beyond MAX_TRACKED_PARTNERS are
counted as always busy (the plan's co-location, as predicted), which keeps the table at 2^6 rows per batch.

The path's own time: every batch also spends real time outside the sleep (Triton's hand-over to the python
stub and back, the wake-up), which a GPU's batch time does not have on top of the profiled latency. The replay
measures it live on its zero-latency probe (run.py) and writes it to the devices' path_overhead.f64; each hold sleeps that much
less, so a batch occupies its instance for the table's time x K, not that plus the path.

Time scale K: holds are latency x K and the replay sends at rate / K with max queue delays x K, so the client
and gRPC overheads shrink by K relative to the emulated times; every time is reported divided by K.

Interference injection: a second shared file holds one slowdown factor per emulated GPU (1.0 unless an emulated
neighbour is injected, ``EmulatedDevices.set_slowdown``); every hold is multiplied by its GPU's factor, re-read
every slice, so a step takes effect mid-batch. Slots in both files are kept per server name and GPU id for the
life of the replay, so a re-emulated plan (the watch loop's next plan) shares them with the servers still running.
The spec each server reads travels in its config (parameter ``emulation``): a live reload brings a new table.
"""

from __future__ import annotations

import json
import math
import mmap
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from igniter.errors import UserError
from igniter.model import Member
from igniter.ownership import make_owned_dir, mark, require_owned
from igniter.provisioning.plan import PLAN_VERSION, GpuPlan, LaunchSpec, Plan, ServerPlan, Totals
from igniter.provisioning.plan import read_plan as read_typed_plan
from igniter.schema import dump_json
from igniter.triton.config import (config_text, new_model_config, set_dynamic_batching, set_instance_group,
                                   set_parameter)
from tritonclient.grpc import model_config_pb2 as mc

BACKEND_SOURCE = Path(__file__).resolve().parents[1] / "triton" / "emulated_backend.py"
MAX_TRACKED_PARTNERS = 6
SLICE_MS = 2.0  # real ms between re-reads of the busy partners while a batch is held
OVERHEAD_FILE = "path_overhead.f64"  # beside the devices' shared files: the path's real ms per batch, which every hold leaves out
EMULATED_BACKEND = "cpu"  # emulated servers are plain CPU-kind Triton servers (they sleep: no cores pinned)
BUSY_SLOTS = 4096         # servers one replay can ever name (a byte each)
GPU_SLOTS = 512           # emulated GPUs one replay can ever name (a float64 slowdown each)
WORKDIR_FIX = "choose a --workdir that igniter made, or an empty or new one"


@dataclass(frozen=True)
class PlannedServer:
    """What the replay needs of one planned server (a plan.json "servers" entry)."""

    name: str
    gpu: str
    model: str
    workload: str
    batch: int
    share: float
    max_queue_delay_us: int
    rate: float
    slo_ms: float
    predicted_latency_ms: float
    predicted_p99_ms: float


def read_plan(plan_path: Path) -> list[PlannedServer]:
    """The plan's servers, through the one plan reader (igniter.provisioning.plan.read_plan)."""
    plan = read_typed_plan(plan_path)
    return [PlannedServer(name=s.name, gpu=g.id, model=s.model, workload=s.workload, batch=s.batch, share=s.share,
                          max_queue_delay_us=s.max_queue_delay_us, rate=s.rate,
                          slo_ms=s.slo_ms, predicted_latency_ms=s.predicted_latency_ms,
                          predicted_p99_ms=math.inf if s.predicted_p99_ms is None else s.predicted_p99_ms)
            for g, s in plan.servers()]


def latency_tables(perf_model, servers: list[PlannedServer]) -> dict[str, dict]:
    """Per server: its partners on the same GPU (indices into the plan's servers on that GPU), latency_ms[n - 1][mask] for n = 1..batch: how long a batch holds
    the instance (b / throughput), and pipeline_ms: latency - hold at the planned batch with every partner busy,
    the part of a request's latency that overlaps the next batch (the replay adds it to every request)."""
    by_gpu: dict[str, list[PlannedServer]] = {}
    for s in servers:
        by_gpu.setdefault(s.gpu, []).append(s)
    tables = {}
    for gpu_servers in by_gpu.values():
        for s in gpu_servers:
            others = [(i, p) for i, p in enumerate(gpu_servers) if p is not s]
            tracked, always = others[:MAX_TRACKED_PARTNERS], [p for _, p in others[MAX_TRACKED_PARTNERS:]]
            masks = list(range(1 << len(tracked)))
            sets = []
            for n in range(1, s.batch + 1):
                for mask in masks:
                    busy = [p for bit, (_, p) in enumerate(tracked) if mask >> bit & 1] + always
                    sets.append([Member(s.model, n, s.share)] + [Member(p.model, p.batch, p.share) for p in busy])
            preds = [ps[0] for ps in perf_model.predict_sets(sets)]
            # the instance is occupied for b / throughput <= latency (loading overlaps the previous batch)
            holds = [min(p.latency_ms, p.batch * 1000.0 / p.throughput_rps) for p in preds]
            rows = [holds[i:i + len(masks)] for i in range(0, len(holds), len(masks))]
            tables[s.name] = {"partners": [i for i, _ in tracked],
                              "latency_ms": [[round(x, 6) for x in row] for row in rows],
                              "pipeline_ms": round(preds[-1].latency_ms - holds[-1], 6)}
    return tables


@dataclass
class EmulatedDevices:
    """The shared files of one replay's emulated GPUs: ``busy`` (a byte per server, 1 while it holds a batch) and
    ``slowdown`` (a float64 per GPU, the injected neighbour's factor), with slots kept per server name and GPU id."""

    root: Path
    server_slots: dict[str, int] = field(default_factory=dict)
    gpu_slots: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        make_owned_dir(self.root, "igniter replay (emulated devices)", "emulated devices directory", WORKDIR_FIX)
        (self.root / "busy").write_bytes(bytes(BUSY_SLOTS))
        (self.root / "slowdown").write_bytes(struct.pack(f"<{GPU_SLOTS}d", *([1.0] * GPU_SLOTS)))
        self.overhead_file.write_bytes(struct.pack("d", 0.0))   # run.py writes the live measurement

    @property
    def overhead_file(self) -> Path:
        return self.root / OVERHEAD_FILE

    def slot(self, server: str) -> int:
        return self._slot(self.server_slots, server, BUSY_SLOTS, "servers")

    def gpu_slot(self, gpu: str) -> int:
        return self._slot(self.gpu_slots, gpu, GPU_SLOTS, "GPUs")

    @staticmethod
    def _slot(slots: dict[str, int], name: str, limit: int, what: str) -> int:
        if name not in slots:
            if len(slots) >= limit:
                raise UserError(f"the replay has named more than {limit} emulated {what}",
                                "replay a smaller plan or fewer re-plans")
            slots[name] = len(slots)
        return slots[name]

    def set_slowdown(self, gpu: str, factor: float) -> None:
        """From now on every batch on ``gpu`` holds ``factor`` x its table's time (an emulated neighbour)."""
        with open(self.root / "slowdown", "r+b") as fh, mmap.mmap(fh.fileno(), 0) as shared:
            struct.pack_into("<d", shared, 8 * self.gpu_slot(gpu), float(factor))

    def spec(self, server: PlannedServer, table: dict, gpu_servers: list[PlannedServer], scale: float) -> dict:
        """What the emulated backend reads: the table, with the plan's per-GPU slots turned into this replay's."""
        return {"time_scale": scale, "busy_file": str((self.root / "busy").resolve()), "slot": self.slot(server.name),
                "partners": [self.slot(gpu_servers[i].name) for i in table["partners"]],
                "slowdown_file": str((self.root / "slowdown").resolve()), "gpu_slot": self.gpu_slot(server.gpu),
                "latency_ms": table["latency_ms"], "slice_ms": SLICE_MS,
                "overhead_file": str(self.overhead_file.resolve())}


def emulated_config(server: PlannedServer, queue_delay_scale: float, spec: dict | None = None) -> mc.ModelConfig:
    """The planned batcher on a CPU-kind python model with one small FP32 input and output; ``spec``: what the
    emulated backend reads (parameter ``emulation``)."""
    cfg = new_model_config(server.model, "python", server.batch)
    cfg.input.add(name="INPUT0", data_type=mc.TYPE_FP32, dims=[1])
    cfg.output.add(name="OUTPUT0", data_type=mc.TYPE_FP32, dims=[1])
    set_dynamic_batching(cfg, [server.batch], round(server.max_queue_delay_us * queue_delay_scale))
    set_instance_group(cfg, 1, "KIND_CPU")      # a planned server runs one instance: one batch holds it at a time
    if spec is not None:
        set_parameter(cfg, "emulation", json.dumps(spec, separators=(",", ":")))
    return cfg


def emulated_plan(servers: list[PlannedServer]) -> Plan:
    """A plan of the same servers on emulated devices: CPU-kind Triton servers, unpinned, no MPS."""
    gpus: dict[str, list[ServerPlan]] = {}
    for s in servers:
        gpus.setdefault(s.gpu, []).append(ServerPlan(
            name=s.name, workload=s.workload, replica=0, replicas=1, model=s.model, batch=s.batch, share=s.share,
            max_queue_delay_us=s.max_queue_delay_us, rate=max(s.rate, 1e-9),
            slo_ms=s.slo_ms if math.isfinite(s.slo_ms) else 3.6e6, predicted_latency_ms=s.predicted_latency_ms,
            predicted_p99_ms=s.predicted_p99_ms if math.isfinite(s.predicted_p99_ms) else None,
            predicted_throughput_rps=0.0))
    return Plan(format="igniter-plan", version=PLAN_VERSION, strategy="replay", latency_model="emulated",
                hardware_kind="cpu",
                gpus=[GpuPlan(id=g, type="emulated", kind="cpu", backend=EMULATED_BACKEND, price_per_hour=0.0,
                              servers=v) for g, v in gpus.items()],
                totals=Totals(gpus=len(gpus), cost=0.0, accuracy_term=0.0, objective=0.0, lower_bound=0.0, gap=0.0,
                              status="feasible"))


def write_emulated_plan(servers: list[PlannedServer], tables: dict[str, dict], out: Path,
                        time_scale: Callable[[PlannedServer], float], devices: EmulatedDevices | None = None) -> Path:
    """OUT/plan.json + OUT/triton_repo/<server>/ serving the emulated models. ``time_scale``: each server's K;
    ``devices``: the replay's shared files (a fresh set under OUT/devices when None). Returns the plan path for
    Deployer.apply."""
    require_owned(out, "emulated plan directory", WORKDIR_FIX)   # replaced whole: only one igniter made
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mark(out, "igniter replay (emulated plan)")
    devices = devices or EmulatedDevices(out / "devices")
    for s in servers:
        repo = out / "triton_repo" / s.name
        version = repo / s.model / "1"
        version.mkdir(parents=True)
        spec = devices.spec(s, tables[s.name], [p for p in servers if p.gpu == s.gpu], time_scale(s))
        (repo / s.model / "config.pbtxt").write_text(config_text(emulated_config(s, time_scale(s), spec)))
        shutil.copyfile(BACKEND_SOURCE, version / "model.py")
        launch = LaunchSpec(server=s.name, gpu=s.gpu, backend=EMULATED_BACKEND, share=s.share, models=[s.model], env={})
        (repo / "launch.json").write_text(dump_json(launch))
    (out / "plan.json").write_text(dump_json(emulated_plan(servers)))
    return out / "plan.json"


def constant_tables(servers: list[PlannedServer], latency_ms) -> dict[str, dict]:
    """Tables without interference: latency_ms(server, n) for every mask (the sweep and the overhead calibration)."""
    tables = {}
    for s in servers:
        tables[s.name] = {"partners": [], "pipeline_ms": 0.0,
                          "latency_ms": [[float(latency_ms(s, n))] for n in range(1, s.batch + 1)]}
    return tables

