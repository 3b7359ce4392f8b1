"""`igniter provision` vs `igniter provision --check` wall time -> `## provision --check (CI mode)` in BENCHMARKS.md.

    python scripts/bench_check.py [--repeats 5] [--write]

The demo's workloads and model repository (triton_repo/, 32 MB of weights per mlp server) with a perf model fitted
on profiles/cpu-2core, each command a fresh process (`python -m igniter`, as CI runs it). --check writes the
whole output into a temporary directory (model files included) and compares it with --out.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from benchmarks_md import write_section  # noqa: E402


def timed(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    rc = subprocess.run([sys.executable, "-m", "igniter", *argv], capture_output=True).returncode
    return time.perf_counter() - start, rc


def cpu_name() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    from igniter.model import PerfModel  # noqa: PLC0415
    from igniter.triton.demo_zoo import ensure_demo_repo  # noqa: PLC0415

    repo = ensure_demo_repo(ROOT / "triton_repo")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "cpu.model.json"
        PerfModel.fit(ROOT / "profiles" / "cpu-2core").save(model)
        base = ["provision", "--workloads", str(ROOT / "examples" / "demo_workloads.yaml"), "--perf-model",
                str(model), "--repo", str(repo), "--out", str(Path(tmp) / "out"), "--strategy", "ilp"]
        write_s, check_s = [], []
        for _ in range(args.repeats):
            seconds, rc = timed(base)
            assert rc == 0, "provision failed"
            write_s.append(seconds)
            seconds, rc = timed([*base, "--check"])
            assert rc == 0, "--check found drift right after writing"
            check_s.append(seconds)
        size = sum(p.stat().st_size for p in (Path(tmp) / "out").rglob("*") if p.is_file()) / 2 ** 20
    rows = [("provision (writes OUT)", write_s), ("provision --check (exit 0)", check_s)]
    lines = ["## provision --check (CI mode)", "",
             f"Machine: {os.cpu_count()}-core {cpu_name()} VM ({platform.machine()}), no GPU; "
             "other work shared the cores. `python scripts/bench_check.py` regenerates this.",
             f"Demo workloads (examples/demo_workloads.yaml) over triton_repo/, output {size:.0f} MB; "
             f"{args.repeats} runs each, fresh process per run (includes Python start-up and the ILP).", "",
             "| command | median s | min s | max s |", "|---|---|---|---|"]
    lines += [f"| {name} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} |" for name, t in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section("## provision --check (CI mode)", text)


if __name__ == "__main__":
    main()
