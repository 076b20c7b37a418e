"""Packing: batching without padding, the way pretraining does it and the way SFT can.

Standalone: needs torch, a fast transformers tokenizer and ``collators.py`` (standalone too);
copy the two files together into another project.

Introduced in notebook 07_packing. Every earlier notebook pads each row to the longest
record; the padded positions cost compute and carry no loss. Two ways around that:

- :func:`pack_into_blocks` is pretraining's stream: every document followed by a separator
  (eos), all concatenated and cut into fixed-size blocks. A block may start in the middle
  of a document, attention crosses document boundaries, and the separator is the only sign
  of where one document ends and the next begins.
- :class:`PackingCollator` packs whole records into one row *without* letting them see each
  other: ``position_ids`` restart at 0 for every record, and the first label of every
  record is -100, so no record's last token is asked to predict the next record's first.
  On the same weights its loss equals the padded collators' loss.

The isolation is not done by this module: transformers (5.x) derives it from the
restarting ``position_ids`` when it builds the attention mask, and (with the sdpa/eager
attention used in this series) only when the forward pass gets no ``attention_mask`` and
builds no KV cache; the flash-attention path finds packed records from ``position_ids``
without checking for a cache, and only in a single-row batch
(``modeling_flash_attention_utils._is_packed_sequence`` returns False when ``batch_size != 1``).
Call the model with
``use_cache=False`` (the ``Trainer`` does: it sets ``model.config.use_cache`` to
``TrainingArguments.use_cache``, False by default); with the model's default
``use_cache=True`` a cache is created and every record attends to the records before it.

>>> from helpers import load_records, load_tokenizer
>>> batch = PackingCollator(load_tokenizer(), sft=True)(load_records()[:2])
>>> batch["input_ids"].shape, batch["position_ids"][0, 46:51].tolist()  # record 1 starts at 48
(torch.Size([1, 79]), [46, 47, 0, 1, 2])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Callable, Iterable, Sequence

import torch

try:  # inside the helpers package
    from .collators import IGNORE_INDEX, POST_RECORD, PretrainCollator, SFTCollator
except ImportError:  # copied next to collators.py
    from collators import IGNORE_INDEX, POST_RECORD, PretrainCollator, SFTCollator


def pack_into_blocks(token_id_lists: Iterable[Sequence[int]], block_size: int, separator_id: int) -> list[list[int]]:
    """Pretraining's stream: each document + ``separator_id``, concatenated, cut every ``block_size`` ids.

    Introduced in notebook 07_packing. Returns the blocks in order; every block holds
    ``block_size`` ids except possibly the last, which holds the rest (nothing is dropped,
    duplicated or reordered: joining the blocks gives back the stream). Many pretraining
    pipelines drop that shorter last block instead; here it is kept so that no id is lost.

    >>> pack_into_blocks([[1, 2, 3], [4, 5], [6]], block_size=4, separator_id=0)
    [[1, 2, 3, 0], [4, 5, 0, 6], [0]]
    """
    if isinstance(block_size, bool) or not isinstance(block_size, Integral) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if isinstance(separator_id, bool) or not isinstance(separator_id, Integral):
        raise ValueError(f"separator_id must be an integer token id, got {separator_id!r}")
    stream: list[int] = []
    for index, document in enumerate(token_id_lists):
        ids = document.tolist() if hasattr(document, "tolist") else list(document)
        if not all(isinstance(i, Integral) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"token_id_lists[{index}] must hold integer token ids")
        stream.extend(int(i) for i in ids)
        stream.append(int(separator_id))
    return [stream[start : start + block_size] for start in range(0, len(stream), block_size)]


@dataclass
class PackingCollator:
    """Records -> one packed row: ``input_ids``, ``labels`` and ``position_ids``, shape ``(1, total)``.

    Introduced in notebook 07_packing. Each record is tokenised and labelled exactly as
    :class:`~helpers.PretrainCollator` (``sft=False``) or :class:`~helpers.SFTCollator`
    (``sft=True``) does it (``instruct + input + label + eos``; with ``sft=True`` the prompt's
    labels are -100, from the same character offsets), then the records are laid end to end:

    - ``position_ids`` restart at 0 at each record, which is how transformers finds the
      records' boundaries and keeps each record from attending to the others;
    - each record's first label is -100: after the model's one-token shift that label would
      make the previous record's last token (its eos) predict this record's first token, a
      target that no padded row has.

    There is no padding and no ``attention_mask``: a 2D ``attention_mask``, even all ones,
    stops transformers from looking for packed records. Run the model with
    ``use_cache=False`` (see the module docstring).

    transformers' ``DataCollatorWithFlattening`` builds the same row from examples that are
    already tokenized and labelled (each record as the padded collator encodes it alone);
    ``tests/test_packing.py`` checks that the two agree on ``input_ids``, ``labels`` and
    ``position_ids``. This class tokenizes the records itself, as the other collators do.
    ``prompt_response`` reads a record as in the other collators (default: the post's fields).

    >>> from helpers import Fields, load_tokenizer
    >>> collator = PackingCollator(load_tokenizer(), sft=True, prompt_response=Fields("question", "answer"))
    >>> batch = collator([{"question": "1+1=", "answer": "2"}, {"question": "2+2=", "answer": "4"}])
    >>> batch["position_ids"].tolist()
    [[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]]
    >>> batch["labels"].tolist()  # the answers and their eos are trained
    [[-100, -100, -100, -100, 17, 151643, -100, -100, -100, -100, 19, 151643]]
    """

    tokenizer: Any
    sft: bool = False  # True: mask each record's prompt (instruct + input) as SFTCollator does
    prompt_response: Callable[[Any], tuple[str, str]] = POST_RECORD  # record -> (prompt, response)
    _record_collator: PretrainCollator = field(init=False, repr=False)

    def __post_init__(self):
        collator_class = SFTCollator if self.sft else PretrainCollator
        # the padded collator of the same objective: its per-record tokens and labels are reused as they are
        self._record_collator = collator_class(self.tokenizer, prompt_response=self.prompt_response)

    def __call__(self, records: Sequence[dict]) -> dict[str, torch.Tensor]:
        if len(records) == 0:
            raise ValueError("PackingCollator got no records to pack")
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for index, record in enumerate(records):
            ids, record_labels = self._record_collator.encode(record, index)
            input_ids.extend(ids)
            labels.extend([IGNORE_INDEX, *record_labels[1:]])
            position_ids.extend(range(len(ids)))
        return {
            "input_ids": torch.tensor([input_ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([position_ids]),
        }
