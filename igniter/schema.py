"""One declaration per file igniter reads: pydantic v2 models, a bounded reader, and one-line errors.

Shared by every stage (like errors.py and atomic.py). Why pydantic v2: strict typing (``rate: true`` and
``max_count: 1.5`` are refused, not coerced), ``extra="forbid"`` for unknown keys, located errors
(``workloads[2].rate``) we can turn into one line, and JSON (de)serialisation of the same declaration, so the
typed artefacts the stages hand each other and the input schemas are one thing.

Usage::

    class Workload(Strict):
        name: SafeName
        rate: PositiveFloat

    data = read_yaml(path, what="workloads file")
    workloads = validate(WorkloadsFile, data, source=path.name, fix="see docs/artefacts.md")
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from igniter.errors import UserError

# Names become directory names, server names, Kubernetes labels (after lowering) and parts of file names: one
# safe character set and a length that every derived path fits (gpuNNN-<workload>-rNN plus a digest stays
# below 255 bytes per path component).
NAME_MAX = 64
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME_RULE = f"letters, digits, '.', '_' or '-', starting with a letter or digit, at most {NAME_MAX} characters"

SafeName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=NAME_MAX)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Share = Annotated[float, Field(gt=0, le=100)]          # a resource share in percent
Count = Annotated[int, Field(ge=1)]

MAX_INPUT_BYTES = 16 * 1024 * 1024   # YAML/JSON inputs; profile CSVs pass their own limit

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every file schema: unknown keys refused, no silent type coercion, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=True)


# -- reading -----------------------------------------------------------------------------------------------------

def read_text(path: str | Path, what: str, limit: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes (never reads more: /dev/zero is refused)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} does not exist", "fix the path")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a regular file", "give the path of a file")
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise UserError(f"cannot read {what} {path}: {err.strerror or err}", "check the path and its permissions") from err
    if len(data) > limit:
        raise UserError(f"{what} {path} is larger than {limit // (1024 * 1024)} MiB", "give a smaller file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {err.start})", "save it as UTF-8") from err


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):   # libyaml's parser: 15x faster
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last) and reads
    ``1e9`` as a number, as YAML 1.2 does (PyYAML's YAML 1.1 rules make it the string "1e9")."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a mapping key is not a plain value",
                                                        key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def read_yaml(path: str | Path, what: str, limit: int = MAX_INPUT_BYTES) -> Any:
    """Parse a YAML (or JSON) file; duplicate keys, anchors-bombs beyond the size limit and syntax errors are
    one-line UserErrors naming the file and the line."""
    path = Path(path)
    text = read_text(path, what, limit)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path.name} line {mark.line + 1}" if mark is not None else path.name
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{what} is not valid YAML: {problem}", "fix the YAML at that line", where) from err
    except RecursionError as err:
        raise UserError(f"{what} nests too deeply", "flatten the file", path.name) from err


def read_json(path: str | Path, what: str, limit: int = MAX_INPUT_BYTES) -> Any:
    path = Path(path)
    text = read_text(path, what, limit)
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except ValueError as err:
        raise UserError(f"{what} is not valid JSON: {err}", "regenerate it or fix the JSON", path.name) from err
    except RecursionError as err:
        raise UserError(f"{what} nests too deeply", "regenerate it", path.name) from err


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice")
        out[key] = value
    return out


# -- validating --------------------------------------------------------------------------------------------------

def validate(model: type[M], data: Any, source: str, fix: str | Mapping[str, str]) -> M:
    """``model.model_validate(data)``; the first error becomes one UserError line naming the file (``source``),
    the entry (``workloads[2] 'w3'``) and the field, with ``fix`` as the hint (the nearest valid key for an
    unknown one). ``fix`` may map field names to hints, "" to the hint for any other field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        # an unknown key first: "did you mean 'rate'?" explains the "rate is missing" that comes with a typo
        first = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
        raise error_line(model, data, first, source, fix) from None


def error_line(model: type[BaseModel], data: Any, error: dict, source: str, fix: str | Mapping[str, str]) -> UserError:
    loc = tuple(error.get("loc", ()))
    if not isinstance(fix, str):
        field = next((k for k in reversed(loc) if isinstance(k, str) and k in fix), "")
        fix = fix.get(field) or fix.get("", "see docs/artefacts.md")
    where = _location(loc, data)
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        valid = sorted(_fields_at(model, loc[:-1]))
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean '{near[0]}'? Valid keys here: {', '.join(valid)}" if near else \
            f"remove it; valid keys here: {', '.join(valid)}"
        return UserError(f"unknown key {where}", hint, source)
    message = error.get("msg", "is invalid").rstrip(".")
    message = message[0].lower() + message[1:] if message else "is invalid"
    if kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NAME_PATTERN:
        message = f"must be {NAME_RULE}"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        message = "must be a mapping of keys to values"
    elif kind == "string_too_long" and loc and loc[-1] in ("name", "type", "model", "workload", "server"):
        message = f"is too long: names must be {NAME_RULE}"
    shown = "" if kind in ("missing",) else f" = {_short(error.get('input'))}"
    return UserError(f"{where or 'the file'}{shown}: {message}", fix, source)


def _location(loc: tuple, data: Any) -> str:
    """workloads[2] 'w3'.rate: indices as [i], the entry's name where it has one."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int):
            parts.append(f"[{key}]")
            node = node[key] if isinstance(node, (list, tuple)) and -len(node) <= key < len(node) else None
            label = next((node.get(k) for k in ("name", "type") if isinstance(node, dict) and isinstance(node.get(k), str)), None)
            if label:
                parts.append(f" {_short(label)}")
        elif key == "[key]":     # pydantic's marker for a mapping's key (the key itself is the previous part)
            parts.append(" (the key)")
        else:
            parts.append(f".{key}" if parts else str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return "".join(parts)


def _fields_at(model: type[BaseModel], loc: tuple) -> set[str]:
    """Field names of the (nested) model that ``loc`` points into."""
    current: Any = model
    for key in loc:
        if isinstance(key, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            current = _inner_model(current)
            if isinstance(key, int):
                continue
        if isinstance(current, type) and issubclass(current, BaseModel) and key in current.model_fields:
            current = _inner_model(current.model_fields[key].annotation)
        else:
            return set()
    current = _inner_model(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return {f.alias or name for name, f in current.model_fields.items()}
    return set()


def _inner_model(annotation: Any) -> Any:
    """list[X] / tuple[X, ...] / X | None / dict[str, X] -> X (the model inside a container), else as given."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(typing.get_args(annotation)):
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_file(model: type[M], path: str | Path, what: str, fix: str | Mapping[str, str], limit: int = MAX_INPUT_BYTES) -> M:
    """Read (YAML or JSON by suffix) and validate one file."""
    path = Path(path)
    data = read_json(path, what, limit) if path.suffix == ".json" else read_yaml(path, what, limit)
    return validate(model, data, path.name, fix)


def dump_json(model: BaseModel) -> str:
    """Deterministic JSON (keys sorted, 2-space indent, trailing newline) of a schema instance."""
    return json.dumps(model.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
