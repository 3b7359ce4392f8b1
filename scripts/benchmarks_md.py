"""BENCHMARKS.md section replacement, shared by the bench_*.py scripts (each owns one `## ` section)."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def replace_section(text: str, heading: str, new: str) -> str:
    """Swap the ``heading`` section of ``text`` (up to the next '## ' heading) for ``new``; append it if absent."""
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: new.rstrip("\n") + "\n\n", text, count=1).rstrip("\n") + "\n"
    return text.rstrip("\n") + "\n\n" + new.rstrip("\n") + "\n"


def write_section(heading: str, new: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the ``heading`` section of BENCHMARKS.md, leaving every other section as it is."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(old, heading, new))
