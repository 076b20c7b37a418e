"""The five poem records of the post (大模型预训练代码实战): loading and validation.

Introduced in notebook 01_chat_templates; every later notebook loads its data this way.
Notebook 03_label_masking shows the one rule that is not about JSON shape: record text may
not contain a tokenizer's control tokens (see :func:`find_control_token`).
"""

from __future__ import annotations

import json
from pathlib import Path
from .collators import MAY_BE_EMPTY, RECORD_FIELDS, DataError, check_record, find_control_token, _json_kind
from .tokenizer import ADDED_TOKENS

DEFAULT_DATA_PATH = Path(__file__).resolve().parent.parent / "data" / "poems.json"

# DataError (the one error type for bad data), check_record and find_control_token live in
# helpers/collators.py, so that the collators can be copied alone; they are re-exported here.
__all__ = ["DEFAULT_DATA_PATH", "MAY_BE_EMPTY", "RECORD_FIELDS", "DataError", "check_record",
           "find_control_token", "load_records"]


def load_records(path: str | Path | None = None) -> list[dict[str, str]]:
    """Read and validate a JSON list of ``{"instruct", "input", "label"}`` records.

    Introduced in notebook 01_chat_templates. ``path`` defaults to ``data/poems.json``.
    Raises :class:`DataError` for an unreadable file, bad JSON, a top level that is not a
    non-empty list, a record that is not an object, or a field that is missing, not a
    string, empty where it must not be, or holding one of Qwen2.5's 22 added tokens (the
    tokenizer would encode it as that control token, not as text: notebook 03_label_masking).
    Extra keys are kept as they are.

    >>> records = load_records()
    >>> len(records), records[1]["instruct"], records[1]["label"]
    (5, '请你给敖丙写一首诗：', '恩仇难两忘，何处是家乡？')
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
