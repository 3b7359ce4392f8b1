"""MILP/LP back ends for the pulp models: CBC (bundled with pulp) or HiGHS (highspy), and what a failure means.

A CBC run writes its model (.mps), warm start (.mst) and solution files to a temporary directory; pulp removes
them only when the run succeeds, so every run gets a private directory that is removed whatever happens. A
crashed or killed solver (pulp.PulpSolverError) becomes SolverFailed, which the strategies turn into "the best
plan found so far" (status "fallback") instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from typing import Iterator

import pulp

BACKENDS = ("cbc", "highs")
DEFAULT_BACKEND = "cbc"        # scripts/bench_provision.py (BENCHMARKS.md): CBC vs HiGHS on the same models


class SolverFailed(Exception):
    """The MILP/LP solver did not run to an answer (crashed, killed, not executable)."""


def solve(prob: pulp.LpProblem, time_limit_s: float | None = None, threads: int = 2, warm_start: bool = False,
          backend: str | None = None) -> None:
    """prob.solve with the back end (DEFAULT_BACKEND unless given); SolverFailed on a solver error; no temporary
    file left behind."""
    tmp = tempfile.mkdtemp(prefix="igniter-solver-")
    try:
        if (backend or DEFAULT_BACKEND) == "highs":
            # no MIP start in pulp's HiGHS API; no thread count: HiGHS fixes its global scheduler's threads at the
            # first run in a process and refuses ("Not Solved") any later run asking for another count
            solver = pulp.HiGHS(msg=False, timeLimit=time_limit_s)
            with native_stdout_to_stderr():   # pulp makes the highspy object (and HiGHS its banner) in solve
                prob.solve(solver)
        else:
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, threads=threads, warmStart=warm_start)
            solver.tmpDir = tmp
            prob.solve(solver)
    except pulp.PulpSolverError as e:
        raise SolverFailed(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send what native code writes to file descriptor 1 to stderr meanwhile: HiGHS prints a banner on stdout
    when its first solver object is made, below Python's sys.stdout, which would break `--json` output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
