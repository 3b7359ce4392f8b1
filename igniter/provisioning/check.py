"""`igniter provision --check`: does OUT_DIR hold exactly what this run would write? (for CI and pre-commit)

The run's output is written into a private temporary directory (never into OUT_DIR) and compared file by file
with OUT_DIR; solve.json is left out (it holds the solve time, the one number that differs between runs).
Differences come back as a unified diff (text files) or a one-line note (binary files, missing or extra files).
"""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path

from igniter.provisioning.plan import write_plan

NOT_COMPARED = {"solve.json"}


def check_plan(plan: dict, problem, out_dir: str | Path, src_repo: str | Path | None,
               solve_info: dict) -> dict[str, str]:
    """Per differing file (path relative to OUT_DIR) its diff from OUT_DIR to what this run writes."""
    with tempfile.TemporaryDirectory(prefix="igniter-check-") as tmp:
        expected = Path(tmp) / "out"
        write_plan(plan, problem, expected, src_repo, solve_info)
        return diff_trees(Path(out_dir), expected)


def diff_trees(actual: Path, expected: Path) -> dict[str, str]:
    want, have = _files(expected), _files(actual)
    diffs = {}
    for rel in sorted(want | have):
        if rel not in have:
            diffs[rel] = f"Only in the expected output: {rel} (missing from {actual})\n"
        elif rel not in want:
            diffs[rel] = f"Only in {actual}: {rel} (this run does not write it)\n"
        else:
            diffs[rel] = _diff_file(actual / rel, expected / rel, actual.name, rel)
    return {rel: text for rel, text in diffs.items() if text}


def _files(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name not in NOT_COMPARED}


def _diff_file(actual: Path, expected: Path, label: str, rel: str) -> str:
    old, new = actual.read_bytes(), expected.read_bytes()
    if old == new:
        return ""
    try:
        old_text, new_text = old.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        return f"Binary files {label}/{rel} and expected/{rel} differ\n"
    lines = difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                 fromfile=f"{label}/{rel}", tofile=f"expected/{rel}")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
