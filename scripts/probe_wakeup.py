#!/usr/bin/env python
"""How late a sleeping thread wakes on each core of this host: the scheduler's delay every hop of a request (client,
front door, Triton's threads, the python stub) can meet when the cores are shared.

    python scripts/probe_wakeup.py [--seconds 5]

Pinned to one core at a time, sleeps 1 ms repeatedly and records how far past the 1 ms it woke; prints p50, p99
and p99.9 per core with the host's load average. Run it at normal priority under the measurement lock.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def oversleep_ms(core: int, seconds: float) -> np.ndarray:
    os.sched_setaffinity(0, {core})
    lags = []
    end = time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        time.sleep(0.001)
        lags.append((time.perf_counter() - start) * 1e3 - 1.0)
    return np.array(lags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    rows = []
    for core in cores:
        lags = oversleep_ms(core, args.seconds)
        rows.append({"core": core, "wakeups": len(lags), **{f"p{q:g}_ms": round(float(np.percentile(lags, q)), 3)
                                                             for q in (50, 99, 99.9)},
                     "max_ms": round(float(lags.max()), 3),
                     "load_average": Path("/proc/loadavg").read_text().split()[0]})
    os.sched_setaffinity(0, set(cores))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
