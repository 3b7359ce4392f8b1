"""Resource backends: how one Triton server gets its share of a machine, the same way when it is profiled,
planned and deployed (so a server runs as it was measured).

A backend is one module here exposing ``BACKEND`` (an object with the ``ResourceBackend`` fields and methods); the
registry below lists them and every stage picks one by name (the CLI builds its choices from ``BACKENDS``):
- share grid: the shares a planner may give a server on this hardware (``share_grid``, ``lowest_usable_share``);
- launch: the environment, pinned cores and thread caps of a server at a share (``launch``), and the model config
  fields that go with it (``configure_model``);
- daemon: what must run beside the servers (the MPS control daemon; nothing on a CPU host);
- hardware: the kind recorded in hardware.json and how to describe the machine.
A new kind of partitioning (MIG) is one new module here plus its line in ``BACKENDS``.

This package sits at the Triton-access layer: profiling, provisioning and deployment all import it, it imports
none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from igniter.errors import UserError
from igniter.triton.config import ModelConfig


@dataclass(frozen=True)
class Launch:
    """How one server runs at its share: environment, pinned cores (None: not pinned) and thread count."""

    env: dict[str, str]
    cpus: list[int] | None = None
    threads: int | None = None


class ResourceBackend(Protocol):
    name: str    # registry key, recorded in plans and launch specs
    kind: str    # hardware.json's kind: "cpu" | "gpu"
    gpu: bool    # servers use a GPU (KIND_GPU instances, GPU metrics)
    exclusive_shares: bool   # co-located shares must add up to at most 100 % (else they may overlap)

    def share_grid(self, hardware: dict) -> np.ndarray: ...

    def lowest_usable_share(self, lowest_profiled: float, hardware: dict) -> float: ...

    def check_share(self, share: float) -> None: ...

    def host_cpus(self, hardware: dict) -> list[int]: ...

    def launch(self, share: float, host_cpus: Sequence[int], first: int = 0) -> Launch: ...

    def configure_model(self, cfg: ModelConfig, instances: int, launch: Launch) -> ModelConfig: ...

    def start_daemon(self, base: Path) -> dict[str, str]: ...

    def stop_daemon(self, base: Path) -> None: ...

    def describe_hardware(self) -> dict: ...


def get(name: str) -> ResourceBackend:
    found = BACKENDS.get(name)
    if found is None:
        raise UserError(f"unknown resource backend {name!r}", f"use one of {', '.join(sorted(BACKENDS))}")
    return found


def for_hardware(hardware: dict) -> ResourceBackend:
    """The backend that profiled (and so must run) servers on the hardware described by hardware.json."""
    kind = str((hardware or {}).get("kind", "gpu"))
    name = (hardware or {}).get("backend") or DEFAULT_FOR_KIND.get(kind)
    if name is None:
        raise UserError(f"hardware kind {kind!r} has no resource backend", "profile with igniter profile (cpu or mps)")
    return get(str(name))


def share_grid(step: float) -> np.ndarray:
    """Shares step, 2*step, ... up to 100 %."""
    return np.round(np.arange(1, np.floor(100.0 / step + 1e-9) + 1) * step, 4)


def check_percentage(share: float) -> None:
    if not 0 < share <= 100:
        raise UserError(f"share {share:g} is not a percentage in (0, 100]", "give shares like 25,50,100")


# The registry (imported last: each module imports Launch and the helpers above).
from igniter.backends import cpu, mps  # noqa: E402

BACKENDS: dict[str, ResourceBackend] = {b.name: b for b in (cpu.BACKEND, mps.BACKEND)}
# hardware.json without a "backend" entry (imported profiles, older stores): the backend of its kind
DEFAULT_FOR_KIND = {"cpu": "cpu", "gpu": "mps"}
