"""The five poem records of the post (大模型预训练代码实战): loading and validation.

Introduced in notebook 01_chat_templates; every later notebook loads its data this way.
Notebook 03_label_masking shows the one rule that is not about JSON shape: record text may
not contain a tokenizer's control tokens (see :func:`find_control_token`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .tokenizer import ADDED_TOKENS

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
    string, empty where it must not be, or holding one of Qwen2.5's 22 added tokens (the
    tokenizer would encode it as that control token, not as text: notebook 03_label_masking).
    Extra keys are kept as they are.
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
        check_record(record, f"{path}: record {index}", ADDED_TOKENS)
    return records


def check_record(record: object, where: str, control_tokens: Iterable[str] = ()) -> None:
    """Raise :class:`DataError` (its message starting with ``where``) unless ``record`` is a
    dict with a string ``instruct``, ``input`` and ``label`` (only ``input`` may be empty) and
    none of them contains one of ``control_tokens``.

    Introduced in notebook 03_label_masking: :func:`load_records` checks each record of a file
    with it, and the collators check each record they are handed (with their tokenizer's own
    added tokens).
    """
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
    found = find_control_token(record, control_tokens)
    if found is not None:
        field, token = found
        raise DataError(
            f"{where}: field {field!r} contains the control token {token!r}, which the tokenizer would "
            "encode as that one special id, not as text (an <|endoftext|> inside a label teaches the "
            "model to stop there, an <|im_start|> inside an input forges a chat turn). Remove it or "
            "write it differently."
        )


def find_control_token(record: dict, control_tokens: Iterable[str]) -> tuple[str, str] | None:
    """The first ``(field, token)`` such that ``record[field]`` contains ``token``, or None.

    Introduced in notebook 03_label_masking. Fields are searched in
    :data:`RECORD_FIELDS` order and, within a field, the token that occurs first is named.
    """
    tokens = [token for token in control_tokens if token]
    for field in RECORD_FIELDS:
        value = record.get(field)
        if not isinstance(value, str):
            continue
        hits = [(value.find(token), -len(token), token) for token in tokens if token in value]
        if hits:
            return field, min(hits)[2]
    return None


def _json_kind(value: object) -> str:
    """How JSON itself names the type of a parsed value (for error messages)."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)
