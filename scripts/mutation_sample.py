"""Sampled mutation testing on top of mutmut 3: draw a seeded random sample of mutants per module, then score them.

The configured modules hold about 10 000 mutants, far more than a 2-core machine runs in a session, so a module's
score is estimated from a uniform random sample of its mutants (mutant sampling, Acree 1980 / Wong & Mathur 1995):
the point estimate killed / (run - equivalent) with its 95 % Wilson interval. Equivalent mutants are listed, one
name per line with the reason after a '#', in docs/mutation/equivalent-*.txt.

    mutmut run "igniter.none*"                       # once: makes mutants/ and the coverage stats, then stops
                                                     # with mutmut's "nothing matches" AssertionError (exit 1)
    mutmut run $(python scripts/mutation_sample.py sample igniter.provisioning.ilp --n 60)
    python scripts/mutation_sample.py score igniter.provisioning.ilp [--markdown]

Exit codes (mutmut's own table): 1 and 3 killed, 0 survived, 5 and 33 no tests, 24/-24/36/152/255 timeout
(counted as killed: the mutant hung a test), None not run.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from pathlib import Path

KILLED = {1, 3}
TIMEOUT = {24, -24, 36, 152, 255}
NO_TESTS = {5, 33}
EQUIVALENT_FILES = "docs/mutation/equivalent-*.txt"


def exit_codes(root: Path) -> dict[str, int | None]:
    """Every generated mutant's exit code, from mutmut's .meta files under root/mutants."""
    codes: dict[str, int | None] = {}
    for meta in sorted((root / "mutants").rglob("*.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def module_of(name: str) -> str:
    """'igniter.provisioning.ilp.x_solve__mutmut_3' -> 'igniter.provisioning.ilp'."""
    return re.split(r"\.x(?:_|\u01c1)", name, maxsplit=1)[0]


def equivalents(root: Path) -> set[str]:
    names = set()
    for path in sorted(root.glob(EQUIVALENT_FILES)):
        for line in path.read_text().splitlines():
            name = line.split("#", 1)[0].strip()
            if name:
                names.add(name)
    return names


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def sample(codes: dict[str, int | None], module: str, n: int, seed: int) -> list[str]:
    names = sorted(k for k in codes if module_of(k) == module)
    return sorted(random.Random(f"{seed}:{module}").sample(names, min(n, len(names))))


def score(codes: dict[str, int | None], module: str, equivalent: set[str]) -> dict:
    mine = {k: v for k, v in codes.items() if module_of(k) == module}
    run = {k: v for k, v in mine.items() if v is not None and v not in NO_TESTS}
    killed = sum(1 for v in run.values() if v in KILLED or v in TIMEOUT)
    survivors = sorted(k for k, v in run.items() if v == 0)
    equiv = [k for k in survivors if k in equivalent]
    judged = len(run) - len(equiv)
    low, high = wilson(killed, judged)
    return {"module": module, "mutants": len(mine), "run": len(run), "killed": killed,
            "timeout": sum(1 for v in run.values() if v in TIMEOUT), "equivalent": len(equiv),
            "not_killed": [k for k in survivors if k not in equivalent],
            "no_tests": sum(1 for v in mine.values() if v in NO_TESTS),
            "score": killed / judged if judged else None, "wilson95": [low, high]}


def markdown(row: dict) -> str:
    s = "-" if row["score"] is None else f"**{100 * row['score']:.1f} %**"
    lo, hi = row["wilson95"]
    return (f"| {row['module']} | {row['mutants']} | {row['run']} | {row['killed']} ({row['timeout']}) | "
            f"{row['equivalent']} | {len(row['not_killed'])} | {row['no_tests']} | {s} | "
            f"{100 * lo:.0f}-{100 * hi:.0f} % |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="print a seeded random sample of a module's mutant names")
    s.add_argument("module")
    s.add_argument("--n", type=int, default=60)
    s.add_argument("--seed", type=int, default=2026)
    c = sub.add_parser("score", help="score of the mutants run so far, per module")
    c.add_argument("modules", nargs="+")
    c.add_argument("--markdown", action="store_true")
    ap.add_argument("--root", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    codes = exit_codes(args.root)
    if not codes:
        print(f"no mutants under {args.root / 'mutants'}. To fix: run `mutmut run \"igniter.none*\"` first "
              "(it generates every mutant and runs none).", file=sys.stderr)
        return 2
    if args.cmd == "sample":
        print("\n".join(sample(codes, args.module, args.n, args.seed)))
        return 0
    equivalent = equivalents(args.root)
    for module in args.modules:
        row = score(codes, module, equivalent)
        print(markdown(row) if args.markdown else json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
