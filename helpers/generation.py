"""Greedy generation that reports how it ended.

Standalone: this file needs only torch and transformers; copy it alone into another project.

Introduced in notebook 02_pad_eos_pitfalls; notebook 05_inference explains each step.
"""

from __future__ import annotations

import operator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import GenerationConfig


@dataclass
class Generation:
    """The new part of one greedy generation.

    >>> Generation(text="好。", token_ids=[52801, 1773, 151643], stopped_on_eos=True).stopped_on_eos
    True
    """

    text: str  # the new tokens decoded, special tokens skipped
    token_ids: list[int]  # the new token ids, raw (a final stop id included)
    stopped_on_eos: bool  # True: ended on eos or another stop id; False: ran out of budget


def greedy_config(max_new_tokens: int, stop_token_ids: list[int], pad_token_id: int | None) -> GenerationConfig:
    """The generation config of plain greedy decoding: one beam, the most probable token each step.

    Introduced in notebook 05_inference. On its own it does not make ``model.generate``
    greedy: every field left unset here (``None``) is filled from ``model.generation_config``,
    the settings stored with the checkpoint; :func:`generate` empties those for the call.

    >>> config = greedy_config(8, [151645, 151643], pad_token_id=151643)
    >>> config.do_sample, config.num_beams, config.max_new_tokens, config.eos_token_id
    (False, 1, 8, [151645, 151643])
    """
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_token_ids,
        pad_token_id=pad_token_id,
    )


@contextmanager
def stored_generation_settings_ignored(model):
    """Within the block, ``model.generate`` sees an empty ``generation_config`` on ``model``.

    Introduced in notebook 05_inference. transformers 5 fills every field that the
    ``generation_config`` passed to ``generate`` leaves unset (``None``) from
    ``model.generation_config`` (``GenerationMixin._prepare_generation_config``:
    ``generation_config.update(**self.generation_config.to_dict(), defaults_only=True)``),
    so a checkpoint that stores ``repetition_penalty``, ``no_repeat_ngram_size``,
    ``suppress_tokens`` or the like changes the output of a call that never named them. Many
    of those fields are off when ``None``, so no config passed in can switch them all off:
    the stored one is swapped for a fresh ``GenerationConfig()`` (all ``None``, so only the
    library's neutral defaults are filled in) and put back afterwards. Every module that holds
    a ``generation_config`` of its own is swapped, so a wrapper (e.g. a PEFT model, which copies
    its config to the model it wraps) is covered too.

    >>> from helpers import load_model
    >>> model = load_model()
    >>> model.generation_config.repetition_penalty = 1.3
    >>> with stored_generation_settings_ignored(model):
    ...     print(model.generation_config.repetition_penalty)
    None
    >>> model.generation_config.repetition_penalty  # put back afterwards
    1.3
    """
    holders = [module for module in model.modules() if "generation_config" in vars(module)]
    stored = [vars(module)["generation_config"] for module in holders]
    try:
        for module in holders:
            module.generation_config = GenerationConfig()
        yield
    finally:
        for module, config in zip(holders, stored):
            module.generation_config = config


def _as_integer(value) -> int | None:
    """``value`` as an int when it is an integer (Python, NumPy, a one-element integer tensor), else None.

    bool is an integer to Python, but True/False as a token id or a budget is always a mistake.
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def resolve_stop_ids(stop_token_ids, tokenizer) -> list[int]:
    """The ids :func:`generate` stops on: ``stop_token_ids`` checked, or ``[tokenizer.eos_token_id]``.

    Introduced in notebook 02_pad_eos_pitfalls. Raises ``ValueError`` naming ``stop_token_ids``
    unless it is ``None`` or an iterable of integer ids >= 0 (empty: never stop).

    >>> from helpers import load_tokenizer
    >>> tokenizer = load_tokenizer()
    >>> resolve_stop_ids(None, tokenizer), resolve_stop_ids([151645], tokenizer)
    ([151643], [151645])
    """
    if stop_token_ids is None:
        if tokenizer.eos_token_id is None:
            raise ValueError("generate: stop_token_ids is None and the tokenizer has no eos_token_id to default to")
        return [tokenizer.eos_token_id]
    if isinstance(stop_token_ids, (str, bytes)) or not hasattr(stop_token_ids, "__iter__"):
        raise ValueError(f"generate: stop_token_ids must be a list of integer token ids, got {stop_token_ids!r}")
    stop_ids = []
    for value in stop_token_ids:
        token_id = _as_integer(value)
        if token_id is None or token_id < 0:
            raise ValueError(f"generate: stop_token_ids must hold integer token ids >= 0, got {value!r}")
        stop_ids.append(token_id)
    return stop_ids


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, stop_token_ids=None) -> Generation:
    """Greedy continuation of ``prompt``, without the prompt.

    Introduced in notebook 02_pad_eos_pitfalls; notebook 05_inference explains each step.
    Plain greedy decoding whatever the checkpoint's ``generation_config`` stores: sampling,
    beams, repetition penalties and every other stored setting are ignored for this call
    (see :func:`stored_generation_settings_ignored`). ``generate`` only stops on the ids it
    is given: ``stop_token_ids`` (a list of integer ids; empty: never stop) defaults to
    ``[tokenizer.eos_token_id]``. ``max_new_tokens`` (an integer >= 1) is the budget.
    ``.text`` is decoded with ``skip_special_tokens=True``; ``.token_ids`` keeps every id.

    >>> from helpers import load_model, load_tokenizer
    >>> tokenizer = load_tokenizer()
    >>> model = load_model(tokenizer=tokenizer)  # tiny and untrained: its tokens are arbitrary
    >>> ran_out = generate(model, tokenizer, "请你给哪吒写一首诗：", max_new_tokens=3, stop_token_ids=[])
    >>> len(ran_out.token_ids), ran_out.stopped_on_eos
    (3, False)
    >>> first = ran_out.token_ids[0]
    >>> stopped = generate(model, tokenizer, "请你给哪吒写一首诗：", max_new_tokens=3, stop_token_ids=[first])
    >>> stopped.token_ids == [first], stopped.stopped_on_eos
    (True, True)
    """
    budget = _as_integer(max_new_tokens)
    if budget is None or budget < 1:
        raise ValueError(f"generate: max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    stop_ids = resolve_stop_ids(stop_token_ids, tokenizer)
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    config = greedy_config(budget, stop_ids, tokenizer.pad_token_id)
    with torch.no_grad(), stored_generation_settings_ignored(model):
        output = model.generate(**inputs, generation_config=config)
    # generate returns prompt + continuation; the continuation starts after the prompt's length
    new_ids = output[0, inputs["input_ids"].shape[1]:].tolist()
    return Generation(
        text=tokenizer.decode(new_ids, skip_special_tokens=True),
        token_ids=new_ids,
        stopped_on_eos=bool(new_ids) and new_ids[-1] in stop_ids,
    )
