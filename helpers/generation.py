"""Greedy generation that reports how it ended.

Introduced in notebook 02_pad_eos_pitfalls; notebook 05_inference explains each step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig


@dataclass
class Generation:
    """The new part of one greedy generation."""

    text: str  # the new tokens decoded, special tokens skipped
    token_ids: list[int]  # the new token ids, raw (a final stop id included)
    stopped_on_eos: bool  # True: ended on eos or another stop id; False: ran out of budget


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, stop_token_ids=None) -> Generation:
    """Greedy continuation of ``prompt``, without the prompt.

    Introduced in notebook 02_pad_eos_pitfalls. ``generate`` only stops on the ids it is
    given: ``stop_token_ids`` defaults to ``[tokenizer.eos_token_id]``. A fresh
    :class:`~transformers.GenerationConfig` is used so that sampling settings stored with a
    checkpoint cannot change the result.
    """
    stop_ids = [tokenizer.eos_token_id] if stop_token_ids is None else [int(i) for i in stop_token_ids]
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.no_grad():
        output = model.generate(**inputs, generation_config=config)
    # generate returns prompt + continuation; the continuation starts after the prompt's length
    new_ids = output[0, inputs["input_ids"].shape[1]:].tolist()
    return Generation(
        text=tokenizer.decode(new_ids, skip_special_tokens=True),
        token_ids=new_ids,
        stopped_on_eos=bool(new_ids) and new_ids[-1] in stop_ids,
    )
