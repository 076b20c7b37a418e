"""Turning records into training batches: pretraining (预训练) vs SFT (有监督微调) labels.

Standalone: this file needs only torch and a *fast* transformers tokenizer (``tokenizer.is_fast``,
the default of ``AutoTokenizer``); copy it alone into another project. (``packing.py`` needs it.)

Introduced in notebook 03_label_masking (their options are the subject of notebook
02_pad_eos_pitfalls). Both collators tokenise the same text,
``prompt + response (+ eos)``, and pad it on the right; they differ only in which
labels are set to -100 (ignored by the loss):

- :class:`PretrainCollator`: only padding, as chosen by ``mask_pad``;
- :class:`SFTCollator`: padding, and every token of the prompt.

A record's prompt and response come from ``prompt_response``, a function of the record:
by default :data:`POST_RECORD`, the post's records (prompt ``instruct + input``, response
``label``); ``Fields("question", "answer")`` reads two other fields, and any function that
returns two strings will do. :class:`ChatSFTCollator` puts the same pair in a chat template and
trains only what the assistant writes (notebook 06_lora_vs_full).

``mask_pad`` picks which padding labels become -100:

- ``"position"``: where ``attention_mask`` is 0. Correct even when pad == eos (Qwen's case).
- ``"id"``: every label equal to ``pad_token_id`` (the post's way). When pad == eos this
  also masks the real eos, so the model never learns to stop.
- ``False``: padding is trained like text.

Record text may not contain the tokenizer's added tokens (``<|endoftext|>``, ``<|im_start|>``,
``[PAD]``...): each would be encoded as that control token, not as text. The collators refuse
such a record with a :class:`DataError`, so the only control token in a row is
the eos they append. (``split_special_tokens=True`` is not enough for Qwen2.5: it splits the 14
tokens flagged special but still encodes ``<tool_call>`` and the fill-in-the-middle markers as
control tokens; notebook 03_label_masking shows it.)

>>> from helpers import load_records, load_tokenizer
>>> tokenizer, records = load_tokenizer(), load_records()
>>> batch = SFTCollator(tokenizer)(records[:2])
>>> batch["input_ids"].shape, (batch["labels"] != IGNORE_INDEX).sum(1).tolist()
(torch.Size([2, 48]), [21, 11])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Sequence

import torch

IGNORE_INDEX = -100  # cross_entropy's default ignore_index: these labels add no loss
MASK_PAD_CHOICES = ("position", "id", False)

#: The fields of the post's records; `input` may be empty, the others may not.
RECORD_FIELDS = ("instruct", "input", "label")
MAY_BE_EMPTY = frozenset({"input"})


class DataError(ValueError):
    """A data file or record that cannot be used: the message names the file, the record and the field.

    The one error type for bad data in this project (``helpers.DataError``; ``helpers.data``
    raises it for files).

    >>> try:
    ...     check_record({"instruct": "hi", "input": ""}, "record 3")
    ... except DataError as error:
    ...     print(error)
    record 3: field 'label' is missing
    """


class RecordTooLongError(ValueError):
    """A record that would lose its end (and its eos) to truncation.

    >>> from helpers import load_records, load_tokenizer
    >>> try:
    ...     PretrainCollator(load_tokenizer(), max_length=8)(load_records()[:1])
    ... except RecordTooLongError as error:
    ...     print(str(error)[:55])
    record 0 is 48 tokens long, more than max_length=8: tru
    """


@dataclass(frozen=True)
class Fields:
    """Which fields of a record are the prompt and the response: a ``prompt_response`` function.

    ``prompt`` is one field name or several, joined in order (the post's prompt is
    ``instruct + input``). Every field must be a string, non-empty unless it is named in
    ``may_be_empty``; a record that breaks that raises :class:`DataError` naming the record and
    the field (see :func:`check_record`).

    >>> Fields("question", "answer")({"question": "2+2?", "answer": "4"})
    ('2+2?', '4')
    >>> POST_RECORD({"instruct": "请你给哪吒写一首诗：", "input": "哪吒降世。", "label": "红绫缠腕。"})
    ('请你给哪吒写一首诗：哪吒降世。', '红绫缠腕。')
    """

    prompt: str | tuple[str, ...]
    response: str
    may_be_empty: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.prompt, str):
            object.__setattr__(self, "prompt", (self.prompt,))
        object.__setattr__(self, "may_be_empty", tuple(self.may_be_empty))

    @property
    def names(self) -> tuple[str, ...]:
        """Every field read, in order: the prompt's, then the response's.

        >>> POST_RECORD.names, Fields("question", "answer").names
        (('instruct', 'input', 'label'), ('question', 'answer'))
        """
        return (*self.prompt, self.response)

    def __call__(self, record: dict) -> tuple[str, str]:
        return "".join(record[name] for name in self.prompt), record[self.response]


#: The post's records: prompt ``instruct + input`` (``input`` may be empty), response ``label``.
POST_RECORD = Fields(("instruct", "input"), "label", may_be_empty=("input",))


def check_record(record: object, where: str, control_tokens: Iterable[str] = (), fields: Fields = POST_RECORD) -> None:
    """Raise :class:`DataError` (its message starting with ``where``) unless ``record`` is a
    dict with a string for each of ``fields.names`` (empty only where ``fields.may_be_empty``
    allows) and none of them contains one of ``control_tokens``.

    Introduced in notebook 03_label_masking: ``load_records`` checks each record of a file
    with it, and the collators check each record they are handed (with their tokenizer's own
    added tokens). ``fields`` defaults to the post's ``instruct``/``input``/``label``.

    >>> check_record({"instruct": "写诗：", "input": "", "label": "好。"}, "record 0")  # valid: no error
    >>> try:
    ...     check_record({"question": "", "answer": "4"}, "record 7", fields=Fields("question", "answer"))
    ... except DataError as error:
    ...     print(error)
    record 7: field 'question' is empty
    """
    if not isinstance(record, dict):
        raise DataError(f"{where}: must be a JSON object, found {_json_kind(record)}")
    for name in fields.names:
        if name not in record:
            raise DataError(f"{where}: field {name!r} is missing")
        value = record[name]
        if not isinstance(value, str):
            raise DataError(f"{where}: field {name!r} must be a string, found {_json_kind(value)}")
        if not value and name not in fields.may_be_empty:
            raise DataError(f"{where}: field {name!r} is empty")
    found = find_control_token(record, control_tokens, fields.names)
    if found is not None:
        raise _control_token_error(where, f"field {found[0]!r}", found[1])


def find_control_token(record: dict, control_tokens: Iterable[str], fields: Sequence[str] = RECORD_FIELDS) -> tuple[str, str] | None:
    """The first ``(field, token)`` such that ``record[field]`` contains ``token``, or None.

    Introduced in notebook 03_label_masking. Fields are searched in ``fields`` order (by
    default :data:`RECORD_FIELDS`) and, within a field, the token that occurs first is named.

    >>> find_control_token({"instruct": "hi", "input": "", "label": "a<|im_end|>b"}, ["<|im_end|>"])
    ('label', '<|im_end|>')
    """
    tokens = [token for token in control_tokens if token]
    for name in fields:
        value = record.get(name)
        if not isinstance(value, str):
            continue
        hits = [(value.find(token), -len(token), token) for token in tokens if token in value]
        if hits:
            return name, min(hits)[2]
    return None


def _control_token_error(where: str, what: str, token: str) -> DataError:
    return DataError(
        f"{where}: {what} contains the control token {token!r}, which the tokenizer would "
        "encode as that one special id, not as text (an <|endoftext|> inside a label teaches the "
        "model to stop there, an <|im_start|> inside an input forges a chat turn). Remove it or "
        "write it differently."
    )


def _json_kind(value: object) -> str:
    """How JSON itself names the type of a parsed value (for error messages)."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _require_fast(collator: object, needs: str) -> None:
    """A clear error for a tokenizer without character offsets (a "slow", pure-Python one)."""
    if not getattr(collator.tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(collator).__name__} needs a fast tokenizer (tokenizer.is_fast is True: one backed by the "
            f"`tokenizers` library), for {needs}; {type(collator.tokenizer).__name__} has none. Load it with "
            "AutoTokenizer.from_pretrained(name): in transformers 5 it always gives the fast one (4.x: do not pass "
            "use_fast=False)."
        )


class _RecordChecks:
    """What every collator here does with the records it is handed."""

    tokenizer: Any
    prompt_response: Callable[[Any], tuple[str, str]]

    def check(self, record: object, where: str) -> None:
        """Raise :class:`DataError` (naming ``where``, the field and the token) unless
        ``prompt_response`` can read ``record`` and neither part holds a token of the
        tokenizer's added vocabulary.

        >>> from helpers import load_tokenizer
        >>> collator = SFTCollator(load_tokenizer(), prompt_response=lambda r: (r["q"], r["a"]))
        >>> try:
        ...     collator.check({"q": "2+2="}, "record 5")
        ... except DataError as error:
        ...     print(error)
        record 5: field 'a' is missing
        """
        control_tokens = self.tokenizer.get_added_vocab()
        if isinstance(self.prompt_response, Fields):
            check_record(record, where, control_tokens, self.prompt_response)
            return
        try:
            parts = self.prompt_response(record)
        except KeyError as exc:
            raise DataError(f"{where}: field {exc.args[0]!r} is missing") from exc
        if not (isinstance(parts, tuple) and len(parts) == 2 and all(isinstance(p, str) for p in parts)):
            raise DataError(f"{where}: prompt_response must return two strings (prompt, response), got {parts!r}")
        for what, text in zip(("the prompt", "the response"), parts):
            found = find_control_token({"text": text}, control_tokens, ("text",))
            if found is not None:
                raise _control_token_error(where, what, found[1])

    def _checked_batch(self, records: Sequence) -> None:
        if isinstance(records, dict):
            raise ValueError(
                f"records must be a list of records; {type(self).__name__} was handed a single "
                "record (a dict): wrap it in a list"
            )
        if len(records) == 0:
            raise ValueError(f"records is empty: {type(self).__name__} needs at least one record to make a batch")


@dataclass
class PretrainCollator(_RecordChecks):
    """Records -> ``input_ids``, ``attention_mask``, ``labels`` for causal-LM pretraining.

    Introduced in notebook 03_label_masking. Labels are a copy of ``input_ids`` with padding
    set to -100 according to ``mask_pad``; the one-token shift (position t predicts token
    t+1) happens inside the model's loss, not here. Rows are padded on the right to the
    longest row. A record longer than ``max_length`` (default: the tokenizer's
    ``model_max_length``) raises :class:`RecordTooLongError` instead of being truncated,
    since truncation would cut off the eos that teaches the model to stop.
    ``prompt_response`` reads a record (default :data:`POST_RECORD`; see the module docstring).

    >>> from helpers import load_tokenizer
    >>> collator = PretrainCollator(load_tokenizer(), prompt_response=Fields("question", "answer"))
    >>> batch = collator([{"question": "1+1=", "answer": "2"}, {"question": "2+2=", "answer": "4, 4"}])
    >>> batch["input_ids"].tolist()  # padded on the right with the pad id (here the eos, 151643)
    [[16, 10, 16, 28, 17, 151643, 151643, 151643, 151643], [17, 10, 17, 28, 19, 11, 220, 19, 151643]]
    >>> batch["labels"].tolist()  # every token trained but the padding
    [[16, 10, 16, 28, 17, 151643, -100, -100, -100], [17, 10, 17, 28, 19, 11, 220, 19, 151643]]
    """

    tokenizer: Any
    append_eos: bool = True  # end every text with eos so the model learns to stop
    mask_pad: Literal["position", "id", False] = "position"  # see the module docstring
    max_length: int | None = None  # longest allowed record in tokens; None: model_max_length
    prompt_response: Callable[[Any], tuple[str, str]] = POST_RECORD  # record -> (prompt, response)

    #: Whether labelling needs character offsets (a fast tokenizer): only to find the prompt's end.
    needs_offsets = False

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
        if not callable(self.prompt_response):
            raise ValueError(f"prompt_response must be a function record -> (prompt, response), got {self.prompt_response!r}")
        if self.needs_offsets:
            _require_fast(self, "the character offsets (return_offsets_mapping=True) that show where the prompt ends")
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token first")
        if self.append_eos and self.tokenizer.eos_token_id is None:
            raise ValueError("append_eos=True needs a tokenizer with an eos token")

    def text(self, record: dict) -> str:
        """The training text of one record: ``prompt + response (+ eos)``.

        Raises :class:`DataError` for a record that is not a valid record or
        whose text holds one of the tokenizer's added tokens.

        >>> from helpers import load_tokenizer
        >>> PretrainCollator(load_tokenizer()).text({"instruct": "写诗：", "input": "春", "label": "好。"})
        '写诗：春好。<|endoftext|>'
        """
        self.check(record, f"the record handed to {type(self).__name__}.text")
        return self._text(record)

    def _text(self, record: dict) -> str:
        eos = self.tokenizer.eos_token if self.append_eos else ""
        prompt, response = self.prompt_response(record)
        return prompt + response + eos

    def __call__(self, records: Sequence[dict]) -> dict[str, torch.Tensor]:
        self._checked_batch(records)
        rows = [self.encode(record, index) for index, record in enumerate(records)]
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

    def encode(self, record: dict, index: int | None = None) -> tuple[list[int], list[int]]:
        """Token ids and (before padding) labels of one record; ``index`` names it in errors.

        What a batch row holds before padding (``PackingCollator`` lays these end to end).

        >>> from helpers import load_records, load_tokenizer
        >>> ids, labels = SFTCollator(load_tokenizer()).encode(load_records()[1])
        >>> len(ids), labels.count(IGNORE_INDEX), ids[-1] == labels[-1] == 151643
        (31, 20, True)
        """
        where = f"the record handed to {type(self).__name__}.encode" if index is None else (
            f"record {index} handed to {type(self).__name__}")
        self.check(record, where)
        encoding = self.tokenizer(self._text(record), return_offsets_mapping=self.needs_offsets)
        ids = encoding["input_ids"]
        limit = self.max_length or self.tokenizer.model_max_length
        if len(ids) > limit:
            raise RecordTooLongError(
                f"{'the record' if index is None else f'record {index}'} is {len(ids)} tokens long, more than "
                f"max_length={limit}: truncating it would cut off its end and its eos, so the model would not "
                "learn to stop. Shorten or split the record, or raise max_length."
            )
        return ids, self.labels_for(record, ids, encoding["offset_mapping"] if self.needs_offsets else None)

    def labels_for(self, record: dict, ids: list[int], offsets: list[tuple[int, int]] | None) -> list[int]:
        """The labels of one record's ``ids`` (``offsets``: their character spans). Pretraining trains every token.

        >>> from helpers import load_tokenizer
        >>> PretrainCollator(load_tokenizer()).labels_for({}, [5, 6, 7], None)
        [5, 6, 7]
        """
        return list(ids)


class SFTCollator(PretrainCollator):
    """Like :class:`PretrainCollator`, but the prompt is not trained.

    Introduced in notebook 03_label_masking. The mask comes from the character offsets of
    the *joint* tokenisation: a token is masked when it ends at or before the prompt's last
    character (counting characters that NFC normalisation folded into it). Tokenising the
    prompt alone and masking that many tokens (the Alpaca-style shortcut) goes wrong when
    BPE merges characters across the prompt/response boundary. Offsets need a fast tokenizer:
    a slow one is refused with a ``ValueError`` saying so.

    A token that straddles the boundary (it starts in the prompt and ends in the response)
    is *trained*: the model cannot produce the response without emitting that token, so
    masking it would leave the response's first characters unlearned. The price is that a
    few prompt characters inside that one token are learned too. Special tokens the
    tokenizer adds in front (a bos, offsets (0, 0)) count as prompt.

    >>> from helpers import load_tokenizer
    >>> tokenizer = load_tokenizer()
    >>> batch = SFTCollator(tokenizer, prompt_response=Fields("question", "answer"))([{"question": "2+2=", "answer": "4"}])
    >>> [tokenizer.decode([t]) if t != IGNORE_INDEX else None for t in batch["labels"][0].tolist()]
    [None, None, None, None, '4', '<|endoftext|>']
    """

    needs_offsets = True

    def labels_for(self, record: dict, ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
        """-100 for every token of the prompt, the token id elsewhere (see the class docstring).

        >>> from helpers import load_tokenizer
        >>> tokenizer = load_tokenizer()
        >>> record = {"instruct": "Q: ", "input": "", "label": "A"}
        >>> encoding = tokenizer("Q: A", return_offsets_mapping=True)
        >>> SFTCollator(tokenizer).labels_for(record, encoding["input_ids"], encoding["offset_mapping"])
        [-100, -100, 362]
        """
        prompt_end = len(self.prompt_response(record)[0])
        # A token also owns any characters between its end and the next token's start:
        # characters that normalisation folded into it (NFC joins "e" + U+0301 into "é",
        # and the offsets then cover only the "e"). Without this, a response starting with
        # a combining mark would hide inside a prompt-looking token and never be trained.
        next_starts = [start for start, _ in offsets[1:]] + [0]
        return [
            IGNORE_INDEX if max(end, next_start) <= prompt_end else token_id
            for token_id, (_, end), next_start in zip(ids, offsets, next_starts)
        ]


_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass
class ChatSFTCollator(_RecordChecks):
    """Records -> chat-formatted ``input_ids``, ``attention_mask``, ``labels`` that train only the assistant.

    Introduced in notebook 06_lora_vs_full. Each record becomes a conversation (``system``, if
    given, then the user's prompt and the assistant's response, both from ``prompt_response``),
    rendered and tokenised by ``tokenizer.apply_chat_template(...,
    return_assistant_tokens_mask=True)``; every token outside the template's
    ``{% generation %}...{% endgeneration %}`` blocks (system and user turns, the assistant
    header, padding) gets label -100. ``chat_template`` (default: the tokenizer's own) must
    have those blocks: for Qwen2.5 use ``helpers/templates/qwen2.5_assistant_only.jinja``
    (``helpers.QWEN_TRAINING_TEMPLATE``), which renders the same text as Qwen's own template.
    Needs a fast tokenizer (the mask is mapped from characters to tokens).

    >>> from helpers import QWEN_TRAINING_TEMPLATE, load_records, load_tokenizer
    >>> tokenizer = load_tokenizer()
    >>> batch = ChatSFTCollator(tokenizer, chat_template=QWEN_TRAINING_TEMPLATE)(load_records()[1:3])
    >>> tokenizer.decode(batch["labels"][0][batch["labels"][0] != IGNORE_INDEX])
    '恩仇难两忘，何处是家乡？<|im_end|>'
    """

    tokenizer: Any
    chat_template: str | None = None  # Jinja source with {% generation %} blocks; None: tokenizer.chat_template
    prompt_response: Callable[[Any], tuple[str, str]] = POST_RECORD  # record -> (prompt, response)
    system: str | None = None  # a system message before each conversation; None: the template decides

    def __post_init__(self):
        _require_fast(self, "return_assistant_tokens_mask=True (it maps the assistant's characters to tokens)")
        template = self.chat_template if self.chat_template is not None else self.tokenizer.chat_template
        if not isinstance(template, str) or not _GENERATION_TAG.search(template):
            raise ValueError(
                f"{type(self).__name__} needs a chat template that marks what the assistant writes with "
                "{% generation %}...{% endgeneration %}, so that apply_chat_template can return the assistant's "
                "tokens; " + ("the tokenizer has no chat template" if template is None else "this one has no such block")
                + ". Pass chat_template= (for Qwen2.5: the text of templates/qwen2.5_assistant_only.jinja)."
            )
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token first")

    def messages(self, record: dict) -> list[dict[str, str]]:
        """One record as a chat: (system,) user = prompt, assistant = response.

        >>> from helpers import QWEN_TRAINING_TEMPLATE, load_tokenizer
        >>> collator = ChatSFTCollator(load_tokenizer(), chat_template=QWEN_TRAINING_TEMPLATE, system="Be brief.")
        >>> collator.messages({"instruct": "写诗：", "input": "", "label": "好。"})
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '写诗：'}, {'role': 'assistant', 'content': '好。'}]
        """
        prompt, response = self.prompt_response(record)
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]

    def __call__(self, records: Sequence[dict]) -> dict[str, torch.Tensor]:
        self._checked_batch(records)
        for index, record in enumerate(records):
            self.check(record, f"record {index} handed to {type(self).__name__}")
        encoding = self.tokenizer.apply_chat_template(
            [self.messages(record) for record in records], chat_template=self.chat_template,
            return_assistant_tokens_mask=True, return_dict=True, padding=True, return_tensors="pt",
        )
        labels = encoding["input_ids"].masked_fill(encoding["assistant_masks"] == 0, IGNORE_INDEX)
        return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"], "labels": labels}
