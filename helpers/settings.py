"""The one setting that switches the series from the offline default to a real model.

Introduced in notebook 01_chat_templates. Unset (the default): the exact Qwen2.5 tokenizer
rebuilt offline plus a tiny random-init Qwen2 model that trains on a laptop CPU in seconds.
Set ``PVS_MODEL`` to a hub id (``Qwen/Qwen2.5-0.5B``, where a hub is reachable) or to a local
model directory, and every notebook loads that tokenizer and model with ``from_pretrained``.
"""

from __future__ import annotations

import os

MODEL_ENV_VAR = "PVS_MODEL"


def model_setting() -> str | None:
    """The hub id or local directory named by ``$PVS_MODEL``, or None for the offline default."""
    value = os.environ.get(MODEL_ENV_VAR, "").strip()
    return value or None
