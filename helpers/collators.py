"""Turning records into training batches: pretraining (预训练) vs SFT (有监督微调) labels.

Introduced in notebook 03_label_masking (their options are the subject of notebook
02_pad_eos_pitfalls). Both collators tokenise the same text,
``instruct + input + label (+ eos)``, and pad it on the right; they differ only in which
labels are set to -100 (ignored by the loss):

- :class:`PretrainCollator`: only padding, as chosen by ``mask_pad``;
- :class:`SFTCollator`: padding, and every token of the prompt ``instruct + input``.

``mask_pad`` picks which padding labels become -100:

- ``"position"``: where ``attention_mask`` is 0. Correct even when pad == eos (Qwen's case).
- ``"id"``: every label equal to ``pad_token_id`` (the post's way). When pad == eos this
  also masks the real eos, so the model never learns to stop.
- ``False``: padding is trained like text.

Record text may not contain the tokenizer's added tokens (``<|endoftext|>``, ``<|im_start|>``,
``[PAD]``...): each would be encoded as that control token, not as text. The collators refuse
such a record with a :class:`~helpers.data.DataError`, so the only control token in a row is
the eos they append. (``split_special_tokens=True`` is not enough for Qwen2.5: it splits the 14
tokens flagged special but still encodes ``<tool_call>`` and the fill-in-the-middle markers as
control tokens; notebook 03_label_masking shows it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch

from .data import check_record

IGNORE_INDEX = -100  # cross_entropy's default ignore_index: these labels add no loss
MASK_PAD_CHOICES = ("position", "id", False)


class RecordTooLongError(ValueError):
    """A record that would lose its end (and its eos) to truncation."""


@dataclass
class PretrainCollator:
    """Records -> ``input_ids``, ``attention_mask``, ``labels`` for causal-LM pretraining.

    Introduced in notebook 03_label_masking. Labels are a copy of ``input_ids`` with padding
    set to -100 according to ``mask_pad``; the one-token shift (position t predicts token
    t+1) happens inside the model's loss, not here. Rows are padded on the right to the
    longest row. A record longer than ``max_length`` (default: the tokenizer's
    ``model_max_length``) raises :class:`RecordTooLongError` instead of being truncated,
    since truncation would cut off the eos that teaches the model to stop.
    """

    tokenizer: Any
    append_eos: bool = True  # end every text with eos so the model learns to stop
    mask_pad: Literal["position", "id", False] = "position"  # see the module docstring
    max_length: int | None = None  # longest allowed record in tokens; None: model_max_length

    def __post_init__(self):
        # `is False`, not `in`: 0 == False, and 0 is no choice of its own
        if not (self.mask_pad is False or (isinstance(self.mask_pad, str) and self.mask_pad in MASK_PAD_CHOICES)):
            raise ValueError(f"mask_pad must be one of {MASK_PAD_CHOICES}, got {self.mask_pad!r}")
        if self.max_length is not None and (
            isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1
        ):
            raise ValueError(
                f"max_length must be a positive number of tokens, or None for the tokenizer's "
                f"model_max_length; got {self.max_length!r}"
            )
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token first")
        if self.append_eos and self.tokenizer.eos_token_id is None:
            raise ValueError("append_eos=True needs a tokenizer with an eos token")

    def text(self, record: dict) -> str:
        """The training text of one record: ``instruct + input + label (+ eos)``.

        Raises :class:`~helpers.data.DataError` for a record that is not a valid record or
        whose text holds one of the tokenizer's added tokens."""
        self.check(record, f"the record handed to {type(self).__name__}.text")
        return self._text(record)

    def _text(self, record: dict) -> str:
        eos = self.tokenizer.eos_token if self.append_eos else ""
        return record["instruct"] + record["input"] + record["label"] + eos

    def check(self, record: object, where: str) -> None:
        """Raise :class:`~helpers.data.DataError` (naming ``where``, the field and the token)
        unless ``record`` has string ``instruct``/``input``/``label`` fields, free of every
        token in the tokenizer's added vocabulary."""
        check_record(record, where, self.tokenizer.get_added_vocab())

    def __call__(self, records: Sequence[dict]) -> dict[str, torch.Tensor]:
        if isinstance(records, dict):
            raise ValueError(
                f"records must be a list of records; {type(self).__name__} was handed a single "
                "record (a dict): wrap it in a list"
            )
        if len(records) == 0:
            raise ValueError(f"records is empty: {type(self).__name__} needs at least one record to make a batch")
        rows = [self._encode(index, record) for index, record in enumerate(records)]
        width = max(len(ids) for ids, _ in rows)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for row, (ids, row_labels) in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
            labels[row, : len(ids)] = torch.tensor(row_labels)
        if self.mask_pad == "position":
            labels[attention_mask == 0] = IGNORE_INDEX
        elif self.mask_pad == "id":
            labels[labels == pad_id] = IGNORE_INDEX
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _encode(self, index: int, record: dict) -> tuple[list[int], list[int]]:
        """Token ids and (before padding) labels of one record."""
        self.check(record, f"record {index} handed to {type(self).__name__}")
        encoding = self.tokenizer(self._text(record), return_offsets_mapping=True)
        ids = encoding["input_ids"]
        limit = self.max_length or self.tokenizer.model_max_length
        if len(ids) > limit:
            raise RecordTooLongError(
                f"record {index} is {len(ids)} tokens long, more than max_length={limit}: "
                "truncating it would cut off its end and its eos, so the model would not learn "
                "to stop. Shorten or split the record, or raise max_length."
            )
        return ids, self.labels_for(record, ids, encoding["offset_mapping"])

    def labels_for(self, record: dict, ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
        """Pretraining trains every token of the text."""
        return list(ids)


class SFTCollator(PretrainCollator):
    """Like :class:`PretrainCollator`, but the prompt ``instruct + input`` is not trained.

    Introduced in notebook 03_label_masking. The mask comes from the character offsets of
    the *joint* tokenisation: a token is masked when it ends at or before the prompt's last
    character (counting characters that NFC normalisation folded into it). Tokenising the
    prompt alone and masking that many tokens (the Alpaca-style shortcut) goes wrong when
    BPE merges characters across the prompt/response boundary.

    A token that straddles the boundary (it starts in the prompt and ends in the response)
    is *trained*: the model cannot produce the response without emitting that token, so
    masking it would leave the response's first characters unlearned. The price is that a
    few prompt characters inside that one token are learned too. Special tokens the
    tokenizer adds in front (a bos, offsets (0, 0)) count as prompt.
    """

    def labels_for(self, record: dict, ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
        prompt_end = len(record["instruct"] + record["input"])
        # A token also owns any characters between its end and the next token's start:
        # characters that normalisation folded into it (NFC joins "e" + U+0301 into "é",
        # and the offsets then cover only the "e"). Without this, a response starting with
        # a combining mark would hide inside a prompt-looking token and never be trained.
        next_starts = [start for start, _ in offsets[1:]] + [0]
        return [
            IGNORE_INDEX if max(end, next_start) <= prompt_end else token_id
            for token_id, (_, end), next_start in zip(ids, offsets, next_starts)
        ]
