#!/usr/bin/env python
"""Calibrate the real request path of this host into a profile store's hardware.json (``path_overhead``).

    python scripts/calibrate_path.py [--profiles profiles/cpu-2core] [--rates 20,150,300,600] [--duration 10]

A zero-latency python-backend model behind its own Caddy front door, driven by igniter's load generator with
Poisson arrivals at each rate (igniter/replay/calibrate.py); the p99 model adds the path's p99 at the host's rate
minus the profiler's own path, measured too: direct, one outstanding request (queueing.path_overhead_ms).
Measure on a quiet host, at normal priority: the rows record the load average they ran under.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igniter.replay.calibrate import calibrate_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=Path, default=ROOT / "profiles" / "cpu-2core")
    parser.add_argument("--rates", default="20,150,300,600", help="request rates (req/s), comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per rate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="calibrate-path-") as work:
        rows = calibrate_store(args.profiles, [float(r) for r in args.rates.split(",")], args.duration, Path(work),
                               say=lambda m: print(m, file=sys.stderr) if not m.startswith("apply") else None)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
