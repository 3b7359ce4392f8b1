"""igniter/provisioning/traces.py: the exact refusal lines (the row a spreadsheet shows: the header is row 1), the
step averaging and the converters, on traces small enough to integrate by hand. Written to kill the sampled mutants
of traces.py (docs/mutation/provisioning.md)."""

from __future__ import annotations

import bz2
import io
import tarfile

import numpy as np
import pytest

from igniter.errors import UserError
from igniter.provisioning import traces
from igniter.provisioning.traces import Trace, load_trace


def csv_file(tmp_path, *rows: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return path


def refusal(path, fmt: str = "csv") -> str:
    with pytest.raises(UserError) as err:
        load_trace(path, fmt)
    return str(err.value)


ISO_FIX = "write timestamps as seconds (e.g. 60) or ISO 8601 (e.g. 2026-01-05T00:01:00Z)"
RATE_FIX = "give rates (req/s) or scale factors as non-negative numbers"


@pytest.mark.parametrize("rows, expected", [
    (["time,scale", "0,1"], "t.csv has no `timestamp` column (columns: time, scale) (t.csv). To fix: name the time "
                            "column `timestamp` (seconds or ISO 8601)"),
    (["timestamp,scale", "0,1", "5,-1"], f"t.csv row 3: scale = '-1' is not a finite number >= 0 (t.csv). To fix: "
                                         f"{RATE_FIX}"),
    (["timestamp,w1,w2", "0,1,2", "5,1,inf"], f"t.csv row 3: w2 = 'inf' is not a finite number >= 0 (t.csv). To fix: "
                                              f"{RATE_FIX}"),
    (["timestamp,scale", "0,nan"], f"t.csv row 2: scale = 'nan' is not a finite number >= 0 (t.csv). To fix: {RATE_FIX}"),
    (["timestamp,scale", "0,1", "10,2", "10,3"], "t.csv row 4: timestamps must be strictly increasing (t.csv). To "
                                                 "fix: sort the rows by time and drop duplicate timestamps"),
    (["timestamp,scale", "10,1", "0,2"], "t.csv row 3: timestamps must be strictly increasing (t.csv). To fix: sort "
                                         "the rows by time and drop duplicate timestamps"),
    (["timestamp,scale,w1", "0,1,2"], "t.csv mixes a `scale` column with workload columns (t.csv). To fix: give either "
                                      "one `scale` column or one column per workload"),
    (["timestamp,w1,w1", "0,1,2"], "t.csv has column 'w1' twice (t.csv). To fix: give every column once"),
    (["timestamp"], "t.csv has no rate column (t.csv). To fix: add one column per workload (req/s) or a `scale` column"),
    (["timestamp,w1"], "t.csv has no rows (t.csv). To fix: give at least one sample"),
    (["timestamp,scale", "0,1", "yesterday,1"],
     f"t.csv row 3: timestamp 'yesterday' is neither seconds nor ISO 8601 (t.csv). To fix: {ISO_FIX}"),
    (["timestamp,scale", "2026-01-05T00:00:00Z,1", "noon,1"],
     f"t.csv row 3: timestamp 'noon' is neither seconds nor ISO 8601 (t.csv). To fix: {ISO_FIX}"),
    (["timestamp,scale", "0,1", "Jan 5 2026,1"],            # a date pandas could guess, but not ISO 8601
     f"t.csv row 3: timestamp 'Jan 5 2026' is neither seconds nor ISO 8601 (t.csv). To fix: {ISO_FIX}"),
])
def test_csv_trace_refusals_are_these_lines(tmp_path, rows, expected):
    assert refusal(csv_file(tmp_path, *rows)) == expected


def test_a_column_mixing_seconds_and_date_times_is_named_as_such(tmp_path):
    # each value alone reads (seconds, or a date-time): no row is "neither"; the column as a whole is refused
    for rows in (["0,1", "2026-01-05T00:01:00Z,2"], ["2026-01-05T00:01:00Z,2", "60,1"]):
        assert refusal(csv_file(tmp_path, "timestamp,scale", *rows)) == (
            f"t.csv mixes timestamps in seconds with ISO 8601 date-times (t.csv). To fix: {ISO_FIX}, all alike")


def test_an_unparsable_csv_is_one_line(tmp_path):
    line = refusal(csv_file(tmp_path, "timestamp,w1", '0,"1', "2,3"))
    assert line.startswith("t.csv is not a valid CSV: ") and line.endswith("(t.csv). To fix: fix the CSV")


def test_unknown_format_and_missing_file(tmp_path):
    assert refusal(tmp_path / "x", "nope") == ("unknown trace format 'nope'. To fix: use one of csv, twitter, "
                                               "azure-llm, alibaba-pods")
    assert refusal(tmp_path / "none", "twitter") == (f"trace file {tmp_path / 'none'} does not exist or is not a "
                                                     "file. To fix: fix the --trace path")
    assert refusal(tmp_path, "twitter") == (f"trace file {tmp_path} does not exist or is not a file. To fix: fix the "
                                            "--trace path")


def test_an_oversized_trace_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(traces, "MAX_TRACE_BYTES", 8)
    path = tmp_path / "t.txt"
    path.write_bytes(b"1 2 3 4 5")                                      # 9 bytes
    assert refusal(path, "twitter") == f"trace file {path} is larger than 0 MiB. To fix: give a smaller trace"
    path.write_bytes(b"1 2 3 45")                                       # 8 bytes: read
    assert load_trace(path, "twitter").values[:, 0].tolist() == pytest.approx([4 / 51, 8 / 51, 12 / 51, 180 / 51])


def test_end_holds_the_last_sample_for_the_median_gap_or_one_second():
    trace = Trace(np.array([0.0, 10.0, 40.0, 50.0]), ("w",), np.ones((4, 1)), "x")
    assert trace.end() == 60.0                                         # gaps 10, 30, 10: median 10
    assert Trace(np.array([5.0]), ("w",), np.ones((1, 1)), "x").end() == 6.0


def test_steps_integrate_the_sample_and_hold_function_hand_worked():
    # 2 on [0, 10), 6 on [10, 20), 4 on [20, 30) (end: median gap 10). Steps of 12 s: [0,12): (20 + 12)/12,
    # [12,24): (48 + 16)/12, [24,30): 4 (a short last step averages over its own 6 s)
    trace = Trace(np.array([0.0, 10.0, 20.0]), ("a", "b"), np.array([[2.0, 1.0], [6.0, 1.0], [4.0, 0.0]]), "x")
    starts, values = trace.steps(12.0)
    assert starts.tolist() == [0.0, 12.0, 24.0]
    assert values[:, 0] == pytest.approx([32 / 12, 64 / 12, 4.0])
    assert values[:, 1] == pytest.approx([1.0, 8 / 12, 0.0])
    starts, values = trace.steps(12.0, duration_s=15.0)                # [0,12), [12,15)
    assert starts.tolist() == [0.0, 12.0] and values[:, 0] == pytest.approx([32 / 12, 6.0])
    starts, values = trace.steps(10.0)                                 # exactly 3 steps, none empty
    assert starts.tolist() == [0.0, 10.0, 20.0] and values[:, 0].tolist() == [2.0, 6.0, 4.0]
    assert trace.steps(100.0)[1][:, 0] == pytest.approx([4.0])        # one step over the whole trace


def test_steps_start_at_the_first_timestamp():
    trace = Trace(np.array([100.0, 110.0]), ("scale",), np.array([[1.0], [3.0]]), "x")
    starts, values = trace.steps(5.0)
    assert starts.tolist() == [100.0, 105.0, 110.0, 115.0] and values[:, 0].tolist() == [1.0, 1.0, 3.0, 3.0]
    assert trace.is_scale and not Trace(trace.times, ("w",), trace.values, "x").is_scale


def test_to_csv_keeps_exact_timestamps_and_six_digits():
    trace = Trace(np.array([0.0, 1.5, 1767571200.25]), ("w1", "w2"),
                  np.array([[1.0, 0.1234567], [2.0, 3.0], [1e-7, 123456789.0]]), "x")
    assert trace.to_csv() == ("timestamp,w1,w2\n0,1,0.123457\n1.5,2,3\n1767571200.25,1e-07,1.23457e+08\n")


def test_iso_timestamps_are_seconds_since_the_epoch(tmp_path):
    trace = load_trace(csv_file(tmp_path, "timestamp,scale", "1970-01-01T00:01:00Z,1", "1970-01-01T00:02:30Z,2"))
    assert trace.times.tolist() == [60.0, 150.0] and trace.source == "t.csv"
    naive = load_trace(csv_file(tmp_path, "timestamp,scale", "1970-01-01T00:01:00,1", "1970-01-01T00:02:30,2"))
    assert naive.times.tolist() == [60.0, 150.0]                         # no zone given: UTC


def tbz2(payload: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        folder = tarfile.TarInfo("dir")        # not a regular file: the first regular one is the trace
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        info = tarfile.TarInfo("counts.txt")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return bz2.compress(raw.getvalue())


def test_twitter_plain_bz2_and_tbz2_read_alike(tmp_path):
    # counts 1, 3 over 2 s: mean 2, scale 0.5, 1.5
    for name, data in (("plain", b"1\n3\n"), ("b.bz2", bz2.compress(b"1 3")), ("t.tbz2", tbz2(b"1 3"))):
        path = tmp_path / name
        path.write_bytes(data)
        trace = load_trace(path, "twitter")
        assert (trace.times.tolist(), trace.values[:, 0].tolist(), trace.columns, trace.source) == (
            [0.0, 1.0], [0.5, 1.5], ("scale",), name)


@pytest.mark.parametrize("data, expected", [
    (b"1 x", "x.txt is not a list of per-second request counts (x.txt). To fix: give the Twitter trace "
             "(whitespace-separated integers)"),
    (b"", "x.txt has no valid counts (x.txt). To fix: give non-negative per-second counts"),
    (b"1 -1", "x.txt has no valid counts (x.txt). To fix: give non-negative per-second counts"),
    (b"1 inf", "x.txt has no valid counts (x.txt). To fix: give non-negative per-second counts"),
    (b"0 0", "x.txt has no load at all (x.txt). To fix: give a trace with some requests"),
    (b"BZhgarbage", "cannot decompress x.txt: Invalid data stream (x.txt). To fix: give the .tbz2/.bz2 file as "
                    "published"),
])
def test_twitter_refusals_are_these_lines(tmp_path, data, expected):
    path = tmp_path / "x.txt"
    path.write_bytes(data)
    assert refusal(path, "twitter") == expected


def test_azure_counts_requests_per_whole_second_from_the_first(tmp_path):
    # requests at .5, .9 (second 0), 2.1 (second 2): counts 2, 0, 1 -> mean 1; times from the first's whole second
    path = csv_file(tmp_path, "TIMESTAMP,x", "1970-01-01 00:01:40.5,1", "1970-01-01 00:01:40.9,1",
                    "1970-01-01 00:01:42.6,1", name="a.csv")
    trace = load_trace(path, "azure-llm")
    assert trace.times.tolist() == [100.0, 101.0, 102.0] and trace.values[:, 0].tolist() == [2.0, 0.0, 1.0]
    assert trace.source == "a.csv"
    assert refusal(csv_file(tmp_path, "A,B", "1,2", name="a.csv"), "azure-llm") == (
        "a.csv lacks column(s) TIMESTAMP (a.csv). To fix: give the trace file as published (see docs/capacity.md)")
    assert refusal(csv_file(tmp_path, "TIMESTAMP", name="a.csv"), "azure-llm") == (
        "a.csv lacks column(s) (no rows) (a.csv). To fix: give the trace file as published (see docs/capacity.md)")
    line = refusal(csv_file(tmp_path, "TIMESTAMP", "soon", name="a.csv"), "azure-llm")
    assert line.startswith("a.csv: TIMESTAMP values are not date-times (") and line.endswith(
        "(a.csv). To fix: give the Azure LLM trace as published")


def test_alibaba_pods_demand_hand_worked(tmp_path):
    # p1: 2 GPUs x 500 milli = 1 GPU on [0, 40); p2: 1 x 1000 = 1 on [20, 60); p3 never deleted: 0.5 from 40 to the
    # last event (60). Demand 1 [0,20), 2 [20,40), 1.5 [40,60), 0 from 60 (held 20 s: end 80). Mean 90/80
    path = csv_file(tmp_path, "num_gpu,gpu_milli,creation_time,deletion_time", "2,500,0,40", "1,1000,20,60",
                    "1,500,40,", "0,1000,5,10", "1,0,5,10", name="p.csv")
    trace = load_trace(path, "alibaba-pods")
    mean = (1 * 20 + 2 * 20 + 1.5 * 20) / 80
    assert trace.times.tolist() == [0.0, 20.0, 40.0, 60.0]
    assert trace.values[:, 0] == pytest.approx(np.array([1.0, 2.0, 1.5, 0.0]) / mean)
    assert refusal(csv_file(tmp_path, "num_gpu,gpu_milli,creation_time,deletion_time", "0,100,1,2", name="p.csv"),
                   "alibaba-pods") == "p.csv has no pod requesting a GPU (p.csv). To fix: give the pod list as published"
    assert refusal(csv_file(tmp_path, "num_gpu,gpu_milli", "1,100", name="p.csv"), "alibaba-pods") == (
        "p.csv lacks column(s) creation_time, deletion_time (p.csv). To fix: give the trace file as published (see "
        "docs/capacity.md)")
