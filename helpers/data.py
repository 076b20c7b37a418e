"""The five poem records of the seed walkthrough: loading and validation.

Introduced in notebook 01_chat_templates; every later notebook loads its data this way.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_DATA_PATH = Path(__file__).resolve().parent.parent / "data" / "poems.json"

#: The fields every record carries; `input` may be empty, the others may not.
RECORD_FIELDS = ("instruct", "input", "label")
MAY_BE_EMPTY = frozenset({"input"})


class DataError(ValueError):
    """A data file that cannot be used: the message names the file, the record and the field."""


def load_records(path: str | Path | None = None) -> list[dict[str, str]]:
    """Read and validate a JSON list of ``{"instruct", "input", "label"}`` records.

    Introduced in notebook 01_chat_templates. ``path`` defaults to ``data/poems.json``.
    Raises :class:`DataError` for an unreadable file, bad JSON, a top level that is not a
    non-empty list, a record that is not an object, or a field that is missing, not a
    string, or empty where it must not be. Extra keys are kept as they are.
    """
    path = Path(path) if path is not None else DEFAULT_DATA_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc})") from exc
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(records, list) or not records:
        found = "an empty array" if records == [] else _json_kind(records)
        raise DataError(f"{path}: the top level must be a non-empty array of records, found {found}")
    for index, record in enumerate(records):
        _check_record(path, index, record)
    return records


def _check_record(path: Path, index: int, record: object) -> None:
    where = f"{path}: record {index}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: must be a JSON object, found {_json_kind(record)}")
    for field in RECORD_FIELDS:
        if field not in record:
            raise DataError(f"{where}: field {field!r} is missing")
        value = record[field]
        if not isinstance(value, str):
            raise DataError(f"{where}: field {field!r} must be a string, found {_json_kind(value)}")
        if not value and field not in MAY_BE_EMPTY:
            raise DataError(f"{where}: field {field!r} is empty")


def _json_kind(value: object) -> str:
    """How JSON itself names the type of a parsed value (for error messages)."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)
