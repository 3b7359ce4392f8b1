#!/usr/bin/env python3
"""Regenerate the demo model zoo in triton_repo/ (deterministic: same bytes every run)."""

import argparse
import json
from pathlib import Path

from igniter.triton.demo_zoo import write_demo_repo

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1] / "triton_repo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(write_demo_repo(args.repo, args.seed), indent=2))
