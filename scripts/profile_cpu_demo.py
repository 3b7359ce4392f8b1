#!/usr/bin/env python
"""Profile the three demo models on this CPU host class (2 cores) into profiles/cpu-2core/.

Solo: batches 1,2,4,8 x shares 50,100 (24 runs); pairs: 16 co-located runs (seeded design; the committed store is the union of the 7- and 16-run designs); 2.5 s per run after a
1 s warm-up. Resumable: re-running skips what is stored (pass --fresh to start over). Prints the wall time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "profiles" / "cpu-2core")
    parser.add_argument("--duration", type=float, default=2.5)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--fresh", action="store_true", help="delete the output directory first")
    args = parser.parse_args()
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    from igniter.triton.demo_zoo import ensure_demo_repo  # noqa: PLC0415

    ensure_demo_repo(ROOT / "triton_repo")
    cmd = [sys.executable, "-m", "igniter", "profile", "--repo", str(ROOT / "triton_repo"),
           "--models", "convnet,mlp,tinynet", "--batches", "1,2,4,8", "--shares", "50,100",
           "--pairs", str(args.pairs), "--duration", str(args.duration), "--warmup", str(args.warmup),
           "--backend", "cpu", "--out", str(args.out), "--json"]
    start = time.monotonic()
    code = subprocess.call(cmd)
    print(f"wall time: {time.monotonic() - start:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
