"""The batcher simulation that serves as the replay's host-free oracle (tests/batcher_sim.py), against hand-worked
cases: several batchers on one emulated GPU slowing each other only while both hold a batch."""

from __future__ import annotations

import numpy as np
import pytest

from tests.batcher_sim import simulate, simulate_gpu


def _server(arrivals, batch=1, delay=0.0, table=((10.0, 20.0),), partners=(1,)):
    return {"arrivals_ms": np.array(arrivals, dtype=float), "batch": batch, "delay_ms": delay,
            "table": [list(row) for row in table], "partners": list(partners)}


def test_overlap_slows_only_the_overlapping_part():
    # A at 0, B at 5; alone 10 ms, 20 ms while the other holds a batch. A: 0-5 alone (half done), then both
    # busy: the other half at 1/20 per ms takes 10 ms -> ends at 15. B: 5-15 at 1/20 (half done), then alone:
    # 5 ms -> ends at 20. Both latencies 15 ms.
    a, b = simulate_gpu([_server([0.0], partners=[1]), _server([5.0], partners=[0])])
    assert a.tolist() == pytest.approx([15.0]) and b.tolist() == pytest.approx([15.0])


def test_no_overlap_no_slowdown_and_batching_follows_the_batcher():
    # B's request arrives after A's batch is over: both alone (10 ms). A batch of 2 with max queue delay 3 ms:
    # requests at 0 and 1 leave at 1 (the second fills it), a lone request at 30 leaves at 33 (its delay)
    a, b = simulate_gpu([_server([0.0, 1.0, 30.0], batch=2, delay=3.0, table=((4.0, 8.0), (10.0, 20.0)),
                                 partners=[1]),
                         _server([12.0], partners=[0])])
    assert a.tolist() == pytest.approx([11.0, 10.0, 3.0 + 4.0])
    assert b.tolist() == pytest.approx([10.0])


def test_one_server_alone_is_the_single_batcher_simulation():
    rng = np.random.default_rng(3)
    arrivals = np.cumsum(rng.exponential(1.0, 5000))
    holds = [0.5, 0.8, 1.0, 1.3]
    [alone] = simulate_gpu([{"arrivals_ms": arrivals, "batch": 4, "delay_ms": 1.5, "table": [[h] for h in holds],
                             "partners": []}])
    assert np.array_equal(alone, simulate(arrivals, 4, 1.5, holds))
