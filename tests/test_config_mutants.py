"""triton/config.py's sequence-batcher fields against configs written out by hand in protobuf text form."""

from __future__ import annotations

from igniter.triton.config import driven_fields, parse_config, sequence_fields

OLDEST = """name: "s"
max_batch_size: 8
sequence_batching {
  oldest {
    max_candidate_sequences: 4
    preferred_batch_size: [2, 4]
    max_queue_delay_microseconds: 300
  }
}
"""
DIRECT = """name: "s"
sequence_batching {
  direct {
    max_queue_delay_microseconds: 700
    minimum_slot_utilization: 0.5
  }
}
"""


def test_sequence_batcher_oldest_fields():
    cfg = parse_config(OLDEST)
    want = {"strategy": "oldest", "max_candidate_sequences": 4, "preferred_batch_size": [2, 4],
            "max_queue_delay_us": 300}
    assert sequence_fields(cfg) == want
    fields = driven_fields(cfg)
    assert fields["sequence_batching"] == want and fields["dynamic_batching"] is False


def test_sequence_batcher_direct_fields_and_the_default_strategy():
    assert driven_fields(parse_config(DIRECT))["sequence_batching"] == {
        "strategy": "direct", "max_queue_delay_us": 700, "minimum_slot_utilization": 0.5}
    # a sequence batcher with neither strategy written is Triton's default, direct, with zero fields
    assert sequence_fields(parse_config('name: "s"\nsequence_batching { }\n')) == {
        "strategy": "direct", "max_queue_delay_us": 0, "minimum_slot_utilization": 0.0}
    assert driven_fields(parse_config('name: "s"\n'))["sequence_batching"] is None
