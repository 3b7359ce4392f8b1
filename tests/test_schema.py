"""The shared schema base: what it refuses and how the one line reads (expected lines written by hand)."""

from __future__ import annotations

import pytest
from pydantic import Field

from igniter.errors import UserError
from igniter.schema import (NAME_MAX, NonNegativeFloat, PositiveFloat, SafeName, Share, Strict, read_json,
                            read_text, read_yaml, validate)


class Item(Strict):
    name: SafeName
    rate: PositiveFloat
    share: Share = 100.0


class File(Strict):
    items: list[Item] = Field(min_length=1)
    weight: NonNegativeFloat = 0.0


def line(data) -> str:
    with pytest.raises(UserError) as err:
        validate(File, data, "f.yaml", "see the docs")
    text = err.value.line()
    assert "\n" not in text and text.count("To fix: ") == 1
    return text


def test_valid_file_is_typed():
    f = validate(File, {"items": [{"name": "w1", "rate": 3}]}, "f.yaml", "x")
    assert f.items[0].rate == 3.0 and isinstance(f.items[0].rate, float) and f.items[0].share == 100.0


@pytest.mark.parametrize("bad, expected", [
    ({"items": [{"name": "w1", "rate": True}]}, "items[0] 'w1'.rate = True: input should be a valid number (f.yaml)"),
    ({"items": [{"name": "w1", "rate": "5"}]}, "items[0] 'w1'.rate = '5': input should be a valid number (f.yaml)"),
    ({"items": [{"name": "w1", "rate": float("nan")}]}, "items[0] 'w1'.rate = nan: input should be a finite number"),
    ({"items": [{"name": "w1", "rate": 0}]}, "items[0] 'w1'.rate = 0: input should be greater than 0"),
    ({"items": [{"name": "w1", "rate": 1, "share": 150}]}, "items[0] 'w1'.share = 150: input should be less than or equal to 100"),
    ({"items": [{"name": "../etc", "rate": 1}]}, "items[0] '../etc'.name = '../etc': must be letters, digits"),
    ({"items": [{"name": "w1"}]}, "items[0] 'w1'.rate: field required (f.yaml)"),
    ({"items": []}, "items = []: list should have at least 1 item"),
    ([1, 2], "the file = [1, 2]: must be a mapping of keys to values"),
])
def test_refused_with_located_line(bad, expected):
    assert expected in line(bad)


def test_unknown_key_names_the_nearest_valid_key_before_the_missing_one():
    text = line({"items": [{"name": "w1", "rat": 4}]})
    assert text == ("unknown key items[0] 'w1'.rat (f.yaml). To fix: did you mean 'rate'? "
                    "Valid keys here: name, rate, share")


def test_name_length_limit():
    validate(File, {"items": [{"name": "a" * NAME_MAX, "rate": 1}]}, "f", "x")
    assert "too long" in line({"items": [{"name": "a" * (NAME_MAX + 1), "rate": 1}]})


def test_duplicate_yaml_and_json_keys_refused(tmp_path):
    (tmp_path / "w.yaml").write_text("items:\n  - {name: a, rate: 1}\nitems: []\n")
    with pytest.raises(UserError, match=r"key 'items' is given twice \(w.yaml line 3\)"):
        read_yaml(tmp_path / "w.yaml", "workloads file")
    (tmp_path / "p.json").write_text('{"a": 1, "a": 2}')
    with pytest.raises(UserError, match="key 'a' is given twice"):
        read_json(tmp_path / "p.json", "plan")


def test_reader_refuses_special_large_and_binary_files(tmp_path):
    with pytest.raises(UserError, match="is not a regular file"):
        read_text("/dev/zero", "workloads file")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * 2048)
    with pytest.raises(UserError, match="larger than"):
        read_text(big, "workloads file", limit=1024)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not UTF-8"):
        read_text(tmp_path / "bin.yaml", "workloads file")
    with pytest.raises(UserError, match="does not exist"):
        read_text(tmp_path / "missing.yaml", "workloads file")
