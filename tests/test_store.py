"""Profile store: round trip, atomic appends, done keys, validation errors naming column and file."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from igniter.errors import UserError
from igniter.profiling.store import ProfileStore


def solo_row(batch=1, share=50.0, **extra):
    return {"model": "m", "batch": batch, "share": share, "throughput_rps": 100.0, "latency_mean_ms": 10.0,
            "latency_p50_ms": 9.5, "latency_p99_ms": 14.0, **extra}


def pair_row(**extra):
    return {**solo_row(), "partner": "n", "partner_batch": 2, "partner_share": 50.0, **extra}


def test_round_trip_and_done_keys(tmp_path):
    store = ProfileStore(tmp_path)
    store.write_hardware({"kind": "cpu", "name": "test", "source": "measured"})
    store.append_solo(solo_row(1))
    store.append_solo(solo_row(2, l2_util_pct=3.5))
    store.append_pair_rows([pair_row(), pair_row(model="n", partner="m")])
    assert store.read_hardware()["name"] == "test"
    solo = store.read_solo()
    assert list(solo["batch"]) == [1, 2] and solo["l2_util_pct"].iloc[1] == 3.5
    assert len(store.read_pairs()) == 2
    assert store.done_keys("solo") == {("m", 1, 50.0), ("m", 2, 50.0)}
    assert ("m", 1, 50.0, "n", 2, 50.0) in store.done_keys("pairs")


def test_writes_leave_no_temp_files(tmp_path):
    store = ProfileStore(tmp_path)
    for b in range(1, 4):
        store.append_solo(solo_row(b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["solo.csv"]


def test_failed_write_keeps_previous_file(tmp_path):
    store = ProfileStore(tmp_path)
    store.append_solo(solo_row(1))
    before = (tmp_path / "solo.csv").read_text()
    with pytest.raises(UserError):
        store.append_solo(solo_row(2, share=0.0))
    assert (tmp_path / "solo.csv").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["solo.csv"]


def test_missing_column_names_column_and_file(tmp_path):
    pd.DataFrame([solo_row()]).drop(columns=["latency_p99_ms"]).to_csv(tmp_path / "solo.csv", index=False)
    with pytest.raises(UserError) as err:
        ProfileStore(tmp_path).read_solo()
    assert "latency_p99_ms" in str(err.value) and "solo.csv" in str(err.value) and "To fix:" in str(err.value)


@pytest.mark.parametrize("share", [0, -5, 100.5])
def test_share_outside_range_is_rejected(tmp_path, share):
    pd.DataFrame([solo_row(share=share)]).to_csv(tmp_path / "solo.csv", index=False)
    with pytest.raises(UserError, match=r"outside \(0, 100\]"):
        ProfileStore(tmp_path).read_solo()


def test_bad_hardware_and_missing_files(tmp_path):
    with pytest.raises(UserError, match="no solo.csv"):
        ProfileStore(tmp_path).read_solo()
    assert ProfileStore(tmp_path).read_pairs().empty
    (tmp_path / "hardware.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(UserError, match="kind"):
        ProfileStore(tmp_path).read_hardware()


def test_path_overhead_rows_are_typed(tmp_path):
    # a calibration row keeps what the calibration recorded beside its typed rate, p50 and p99 ...
    row = {"rate_rps": 300.0, "p50_ms": 3.0, "p99_ms": 9.0, "load_average": 0.4}
    (tmp_path / "hardware.json").write_text(json.dumps({"kind": "cpu", "path_overhead": [row]}))
    assert ProfileStore(tmp_path).read_hardware()["path_overhead"] == [row]
    # ... and a row the p99 model cannot use is refused, naming the field
    (tmp_path / "hardware.json").write_text(json.dumps({"kind": "cpu", "path_overhead": [{**row, "p99_ms": -1}]}))
    with pytest.raises(UserError, match="p99_ms"):
        ProfileStore(tmp_path).read_hardware()
    (tmp_path / "hardware.json").write_text(json.dumps({"kind": "cpu", "path_overhead": [{"p50_ms": 1, "p99_ms": 2}]}))
    with pytest.raises(UserError, match="rate_rps"):
        ProfileStore(tmp_path).read_hardware()
