"""Training one model per pad/eos pitfall and measuring how its generations end.

Introduced in notebook 02_pad_eos_pitfalls. A :class:`Variant` is one choice of pad token,
padding mask (``mask_pad``) and appended eos; :func:`train_variant` trains the series' model
on the records with it (same seed, same data, same steps for every variant) and
:func:`measure` asks the trained model to continue each record's prompt
``instruct + input``. :func:`results_table` puts the runs side by side.

What is measured, per variant, over the records' prompts:

- **stop**: generations that end on a stop id (eos by default) within the token budget;
- **exact recall**: generations whose raw text starts with the record's label exactly
  (the poem was memorised, whether or not the model then stops);
- **mean new tokens**: how long the generations are (a stop id included);
- **p(eos)**: the model's probability of eos right after the full training text
  ``instruct + input + label``, i.e. how much it learned that the poem is over;
- **tail**: the last raw ids of one generation, special tokens included.
"""

from __future__ import annotations

import copy
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import torch

from .collators import PretrainCollator
from .generation import Generation, generate, resolve_stop_ids
from .model import load_model
from .training import TrainConfig, TrainResult, train

#: The pad token the post adds (it gets id 151665 in the Qwen2.5 tokenizer).
NEW_PAD_TOKEN = "[PAD]"


@dataclass(frozen=True)
class Variant:
    """One way of padding and ending the training text: a row of notebook 02's table.

    Introduced in notebook 02_pad_eos_pitfalls. ``pad_token=None`` keeps the pad the
    tokenizer has (Qwen2.5's base tokenizer: ``<|endoftext|>``, the same token as eos);
    a string adds that token and pads with it. ``mask_pad`` and ``append_eos`` are passed
    to :class:`~helpers.PretrainCollator` unchanged.

    >>> variant = VARIANTS["C"]
    >>> variant.pad_token, variant.mask_pad, variant.append_eos
    ('[PAD]', 'id', True)
    >>> sorted(VARIANTS)
    ['A', 'B', 'C', 'D', 'E']
    """

    name: str
    pad_token: str | None
    mask_pad: Literal["position", "id", False]
    append_eos: bool
    summary: str  # one line for the notebook: what this variant is

    def collator(self, tokenizer) -> PretrainCollator:
        """The pretraining collator of this variant, for a tokenizer from :func:`variant_tokenizer`
        (introduced in notebook 02_pad_eos_pitfalls).

        >>> from helpers import load_tokenizer
        >>> variant = VARIANTS["D"]
        >>> collator = variant.collator(variant_tokenizer(variant, load_tokenizer()))
        >>> collator.mask_pad, collator.append_eos, collator.tokenizer.pad_token
        (False, False, '[PAD]')
        """
        return PretrainCollator(tokenizer, append_eos=self.append_eos, mask_pad=self.mask_pad)


#: The five variants of notebook 02_pad_eos_pitfalls, by name.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("A", None, "id", True, "pad == eos, padding masked by id (the post's collator): the eos label is masked too"),
        Variant("B", None, "position", True, "pad == eos, padding masked by position (attention_mask == 0)"),
        Variant("C", NEW_PAD_TOKEN, "id", True, "the post's fix: a new [PAD], masked, eos appended"),
        Variant("D", NEW_PAD_TOKEN, False, False, "the post's anecdote: [PAD] trained (not masked), no eos appended"),
        Variant("E", None, False, True, "pad == eos trained (not masked), eos appended"),
    )
}


def add_pad_token(tokenizer, pad_token: str = NEW_PAD_TOKEN):
    """A copy of ``tokenizer`` that pads with ``pad_token`` (added as a special token if new).

    Introduced in notebook 02_pad_eos_pitfalls. The original tokenizer is left as it was,
    so variants that keep the default pad can go on sharing it.

    >>> from helpers import load_tokenizer
    >>> tok = load_tokenizer()
    >>> padded = add_pad_token(tok)
    >>> padded.pad_token, padded.pad_token_id, len(padded)
    ('[PAD]', 151665, 151666)
    >>> tok.pad_token, len(tok)  # the original is unchanged
    ('<|endoftext|>', 151665)
    """
    padded = copy.deepcopy(tokenizer)
    padded.add_special_tokens({"pad_token": pad_token})
    return padded


def variant_tokenizer(variant: Variant, tokenizer):
    """``tokenizer`` itself when it already pads the way ``variant`` wants, else a fixed copy.

    Introduced in notebook 02_pad_eos_pitfalls. ``pad_token=None`` variants want the
    tokenizer's default (pad == eos for Qwen2.5); a tokenizer without any pad token gets
    eos as its pad, as Qwen2.5 does. Passing a tokenizer that already has the right pad
    avoids a copy (the notebook shares one ``[PAD]`` tokenizer between variants C and D).

    >>> from helpers import load_tokenizer
    >>> tok = load_tokenizer()
    >>> variant_tokenizer(VARIANTS["A"], tok) is tok  # already pads with eos
    True
    >>> padded = variant_tokenizer(VARIANTS["C"], tok)
    >>> padded.pad_token, variant_tokenizer(VARIANTS["D"], padded) is padded
    ('[PAD]', True)
    """
    if variant.pad_token is None:
        if tokenizer.pad_token is None or tokenizer.pad_token_id != tokenizer.eos_token_id:
            # `pad_token=None` means "the default, pad == eos" (the Qwen2.5 convention)
            fixed = copy.deepcopy(tokenizer)
            fixed.pad_token = tokenizer.eos_token
            return fixed
        return tokenizer
    if tokenizer.pad_token == variant.pad_token:
        return tokenizer
    return add_pad_token(tokenizer, variant.pad_token)


def ensure_embedding_rows(model, tokenizer, pad_to_multiple_of: int = 64) -> bool:
    """Grow the model's embedding matrix when the tokenizer has ids beyond its last row.

    Introduced in notebook 02_pad_eos_pitfalls. Never shrinks: Qwen2.5-0.5B, 1.5B and 3B (and
    the tiny model) have 151,936 rows for 151,665 tokens (7B and larger: 152,064 rows, untied),
    and ``resize_token_embeddings(len(tokenizer))`` would cut the spare rows. New rows are initialised from the mean of the old ones
    (transformers' ``mean_resizing=True``). Returns whether the matrix was resized.

    >>> from helpers import load_model, load_tokenizer
    >>> model = load_model()
    >>> ensure_embedding_rows(model, add_pad_token(load_tokenizer()))  # 151,666 ids fit in 151,936 rows
    False
    >>> ensure_embedding_rows(model, range(151_937))  # anything with len() > rows: grown to a multiple of 64
    True
    >>> model.get_input_embeddings().num_embeddings
    152000
    """
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= rows:
        return False
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of)
    return True


@dataclass
class Measurement:
    """Greedy generations for a list of records' prompts, scored against their labels.

    Introduced in notebook 02_pad_eos_pitfalls; :func:`measure` builds one.

    >>> from helpers.generation import Generation
    >>> generations = [Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)]
    >>> m = Measurement(generations, recalled=[True, False], eos_probabilities=[0.75, 0.25],
    ...                 max_new_tokens=3, stop_token_ids=[151643])
    >>> m.n, m.stops, m.recalls, m.mean_new_tokens, m.mean_eos_probability
    (2, 1, 1, 2.5, 0.5)
    """

    generations: list[Generation]  # one per record, in record order
    recalled: list[bool]  # per record: the raw generated text starts with the label exactly
    eos_probabilities: list[float]  # per record: p(eos) right after instruct + input + label
    max_new_tokens: int  # the generation budget
    stop_token_ids: list[int]  # the ids generation stopped on

    @property
    def n(self) -> int:
        """How many generations (records) were measured.

        >>> from helpers.generation import Generation
        >>> generations = [Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)]
        >>> m = Measurement(generations, recalled=[True, False], eos_probabilities=[0.75, 0.25],
        ...                 max_new_tokens=3, stop_token_ids=[151643])
        >>> m.n
        2
        """
        return len(self.generations)

    @property
    def stops(self) -> int:
        """How many generations ended on a stop id within the budget.

        >>> from helpers.generation import Generation
        >>> generations = [Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)]
        >>> m = Measurement(generations, recalled=[True, False], eos_probabilities=[0.75, 0.25],
        ...                 max_new_tokens=3, stop_token_ids=[151643])
        >>> m.stops
        1
        """
        return sum(g.stopped_on_eos for g in self.generations)

    @property
    def recalls(self) -> int:
        """How many generations reproduced their record's label exactly (stop or not).

        >>> from helpers.generation import Generation
        >>> generations = [Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)]
        >>> m = Measurement(generations, recalled=[True, False], eos_probabilities=[0.75, 0.25],
        ...                 max_new_tokens=3, stop_token_ids=[151643])
        >>> m.recalls
        1
        """
        return sum(self.recalled)

    @property
    def mean_new_tokens(self) -> float:
        """Mean number of new tokens per generation (a final stop id included).

        >>> from helpers.generation import Generation
        >>> generations = [Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)]
        >>> m = Measurement(generations, recalled=[True, False], eos_probabilities=[0.75, 0.25],
        ...                 max_new_tokens=3, stop_token_ids=[151643])
        >>> m.mean_new_tokens  # (3 + 2) / 2
        2.5
        """
        return sum(len(g.token_ids) for g in self.generations) / self.n

    @property
    def mean_eos_probability(self) -> float:
        """Mean of the per-record probabilities of eos after the full training text.

        >>> from helpers.generation import Generation
        >>> generations = [Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)]
        >>> m = Measurement(generations, recalled=[True, False], eos_probabilities=[0.75, 0.25],
        ...                 max_new_tokens=3, stop_token_ids=[151643])
        >>> m.mean_eos_probability
        0.5
        """
        return sum(self.eos_probabilities) / len(self.eos_probabilities)

    def tail(self, index: int, length: int = 6) -> list[int]:
        """The last ``length`` raw ids of generation ``index``.

        >>> from helpers.generation import Generation
        >>> generations = [Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)]
        >>> m = Measurement(generations, recalled=[True, False], eos_probabilities=[0.75, 0.25],
        ...                 max_new_tokens=3, stop_token_ids=[151643])
        >>> m.tail(0, length=2)
        [1773, 151643]
        """
        return self.generations[index].token_ids[-length:]


def prompt_of(record: dict) -> str:
    """The prompt a trained model continues: ``instruct + input`` (the label is the answer).

    Introduced in notebook 02_pad_eos_pitfalls.

    >>> prompt_of({"instruct": "Add: ", "input": "1+1=", "label": "2"})
    'Add: 1+1='
    """
    return record["instruct"] + record["input"]


@torch.no_grad()
def next_token_probability(model, tokenizer, text: str, token_id: int) -> float:
    """The model's probability that ``token_id`` comes right after ``text``.

    Introduced in notebook 02_pad_eos_pitfalls.

    >>> from helpers import load_model, load_tokenizer
    >>> tok = load_tokenizer()
    >>> p = next_token_probability(load_model(), tok, "Hello", tok.eos_token_id)
    >>> isinstance(p, float), 0.0 < p < 1.0
    (True, True)
    """
    ids = tokenizer(text, return_tensors="pt")["input_ids"].to(model.device)
    logits = model(input_ids=ids).logits[0, -1].float()
    return torch.softmax(logits, dim=-1)[token_id].item()


def measure(model, tokenizer, records: Sequence[dict], max_new_tokens: int, stop_token_ids=None) -> Measurement:
    """Greedy-continue every record's prompt and score how the generations end.

    Introduced in notebook 02_pad_eos_pitfalls. ``stop_token_ids`` defaults to the
    tokenizer's eos (as in :func:`~helpers.generate`). Exact recall compares the raw decoded
    text (special tokens kept) with the label, so a pad or eos emitted inside the poem does
    not count as a recall.

    >>> from helpers import load_model, load_records, load_tokenizer
    >>> tok = load_tokenizer()
    >>> m = measure(load_model(), tok, load_records()[:2], max_new_tokens=2)
    >>> m.n, m.max_new_tokens, m.stop_token_ids, all(len(g.token_ids) <= 2 for g in m.generations)
    (2, 2, [151643], True)
    """
    stop_ids = resolve_stop_ids(stop_token_ids, tokenizer)
    generations, recalled, eos_probabilities = [], [], []
    for record in records:
        generation = generate(model, tokenizer, prompt_of(record), max_new_tokens=max_new_tokens, stop_token_ids=stop_ids)
        generations.append(generation)
        label = unicodedata.normalize("NFC", record["label"])  # the tokenizer NFC-normalises its input
        recalled.append(tokenizer.decode(generation.token_ids).startswith(label))
        full_text = prompt_of(record) + record["label"]
        eos_probabilities.append(next_token_probability(model, tokenizer, full_text, tokenizer.eos_token_id))
    return Measurement(generations, recalled, eos_probabilities, max_new_tokens, stop_ids)


@dataclass
class VariantRun:
    """One variant trained and measured: a row of the results table, and the model behind it.

    Introduced in notebook 02_pad_eos_pitfalls. Built by :func:`train_variant`; by hand here:

    >>> from helpers import TrainResult, load_tokenizer
    >>> from helpers.generation import Generation
    >>> m = Measurement([Generation("好。", [52801, 1773, 151643], True)], [True], [0.75], 3, [151643])
    >>> run = VariantRun(VARIANTS["A"], load_tokenizer(), None, TrainResult(None, [9.87, 0.03], 6), m)
    >>> run.label, run.records
    ('A', [])
    """

    variant: Variant
    tokenizer: Any  # the tokenizer the variant trained with (its pad token is the variant's)
    model: torch.nn.Module
    training: TrainResult
    measurement: Measurement
    records: list[dict] = field(default_factory=list, repr=False)  # what it trained on and was measured with
    label: str = ""  # the row's name in the table; the variant's name when empty

    def __post_init__(self):
        self.label = self.label or self.variant.name

    def remeasured(self, label: str, **measure_kwargs) -> "VariantRun":
        """The same trained model measured again (e.g. with other stop ids), as a new table row.

        >>> from helpers import load_model, load_records, load_tokenizer
        >>> tok = load_tokenizer()
        >>> model, records = load_model(), load_records()[:1]
        >>> run = VariantRun(VARIANTS["A"], tok, model, TrainResult(model), measure(model, tok, records, 2), records)
        >>> again = run.remeasured("A, 1 token", max_new_tokens=1)
        >>> again.label, again.measurement.max_new_tokens, run.label
        ('A, 1 token', 1, 'A')
        """
        kwargs = {"max_new_tokens": self.measurement.max_new_tokens, **measure_kwargs}
        again = measure(self.model, self.tokenizer, self.records, **kwargs)
        return replace(self, measurement=again, label=label)


def train_variant(
    variant: Variant,
    tokenizer,
    records: Sequence[dict],
    *,
    max_new_tokens: int,
    config: TrainConfig = TrainConfig(),
    model_name=None,
    seed: int = 0,
    model=None,
) -> VariantRun:
    """Train the series' model on ``records`` padded and ended as ``variant`` says, then measure it.

    Introduced in notebook 02_pad_eos_pitfalls. Every variant starts from the same weights
    (``load_model(model_name, tokenizer, seed=seed)``: the tiny model's weights do not depend
    on the tokenizer, so not on the pad token) and trains with the same ``config``
    (the default recipe unless given), so the variants differ only in their batches.
    ``tokenizer`` is the base tokenizer or, for variants that add a pad token, one that
    already has it (see :func:`variant_tokenizer`). ``model``: train this one instead of
    loading a fresh model (its generation pad and eos ids are set to the tokenizer's, as
    ``load_model`` does; ``model.config`` is left alone). The embedding grows when the
    tokenizer outgrew it (:func:`ensure_embedding_rows`), never shrinks.

    With a tiny budget (one optimizer step, two new tokens: about a second); the notebook's
    runs take the default recipe:

    >>> from helpers import load_records, load_tokenizer
    >>> run = train_variant(VARIANTS["C"], load_tokenizer(), load_records()[:2], max_new_tokens=2,
    ...                     config=TrainConfig(num_train_epochs=1, print_loss=False))
    >>> run.label, run.tokenizer.pad_token, run.training.steps, run.measurement.n
    ('C', '[PAD]', 1, 2)
    """
    tokenizer = variant_tokenizer(variant, tokenizer)
    if model is None:
        model = load_model(model_name, tokenizer, seed=seed)
    else:  # as load_model does: pad and stop consistently with the data
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    ensure_embedding_rows(model, tokenizer)
    training = train(model, tokenizer, records, variant.collator(tokenizer), config)
    measurement = measure(model, tokenizer, records, max_new_tokens)
    return VariantRun(variant, tokenizer, model, training, measurement, records=list(records))


TABLE_COLUMNS = ("variant", "pad token", "mask_pad", "eos appended", "stop ids", "stop",
                 "exact recall", "mean new tokens", "p(eos)")


def results_table(runs: Sequence[VariantRun], tail_index: int | None = 1, tail_length: int = 6, *,
                  stop_ids: bool = True) -> str:
    """A fixed-width text table, one row per run; the last column is the tail of the raw ids
    generated for record ``tail_index`` (``None``: no such column). ``stop_ids=False`` leaves
    out the stop-ids column, for a table whose runs all stop on the same ids.

    Introduced in notebook 02_pad_eos_pitfalls. ``stop`` and ``exact recall`` are counts out
    of the number of records; ``p(eos)`` is the mean probability of eos after the full
    training text, at two decimals (stable across CPUs after training).

    >>> from helpers import TrainResult, load_tokenizer
    >>> from helpers.generation import Generation
    >>> m = Measurement([Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)],
    ...                 [True, False], [0.75, 0.25], 3, [151643])
    >>> run = VariantRun(VARIANTS["A"], load_tokenizer(), None, TrainResult(None, [9.87, 0.03], 6), m)
    >>> print(results_table([run], tail_length=2))
    variant  pad token             mask_pad  eos appended  stop ids  stop  exact recall  mean new tokens  p(eos)  tail of record 1's ids
    -------  --------------------  --------  ------------  --------  ----  ------------  ---------------  ------  ----------------------
    A        <|endoftext|> 151643  'id'      yes           151643    1/2   1/2           2.5              0.50    52801 52801
    """
    header = TABLE_COLUMNS + (() if tail_index is None else (f"tail of record {tail_index}'s ids",))
    rows = []
    skip = set() if stop_ids else {TABLE_COLUMNS.index("stop ids")}
    for run in runs:
        m, tok, v = run.measurement, run.tokenizer, run.variant
        rows.append((
            run.label,
            f"{tok.pad_token} {tok.pad_token_id}",
            repr(v.mask_pad) if v.mask_pad else "False (trained)",
            "yes" if v.append_eos else "no",
            ",".join(str(i) for i in m.stop_token_ids),
            f"{m.stops}/{m.n}",
            f"{m.recalls}/{m.n}",
            f"{m.mean_new_tokens:.1f}",
            f"{m.mean_eos_probability:.2f}",
        ) + (() if tail_index is None else (" ".join(str(i) for i in m.tail(tail_index, tail_length)),)))
    header, *rows = [tuple(cell for i, cell in enumerate(line) if i not in skip) for line in (header, *rows)]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


#: The bounds :func:`loss_ceiling` rounds up to: far apart, so a last-digit change moves the
#: printed bound only for a loss that lies right at one of them.
LOSS_CEILINGS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def loss_ceiling(loss: float) -> float:
    """The smallest of :data:`LOSS_CEILINGS` above ``loss`` (``inf`` beyond the last one).

    Introduced in notebook 02_pad_eos_pitfalls: a trained loss printed as "below 0.1" reads
    the same on every CPU, where "0.064" reads "0.065" on another.

    >>> loss_ceiling(0.064), loss_ceiling(3.0), loss_ceiling(100.0)
    (0.1, 5.0, inf)
    """
    return next((ceiling for ceiling in LOSS_CEILINGS if loss < ceiling), float("inf"))


def describe_run(run: VariantRun, tail_length: int = 6) -> str:
    """A few lines about one run: its loss, its scores, and how each generation ended.

    Introduced in notebook 02_pad_eos_pitfalls. The losses are printed coarsely (the first
    epoch's at one decimal, the last one as a bound from :func:`loss_ceiling`): after 60 steps
    their last digits differ between CPUs. Each record's line gives the number of new tokens, whether a stop id ended it, whether the poem was
    recalled, and the last raw ids.

    >>> from helpers import TrainResult, load_tokenizer
    >>> from helpers.generation import Generation
    >>> m = Measurement([Generation("好。", [52801, 1773, 151643], True), Generation("好好", [52801, 52801], False)],
    ...                 [True, False], [0.75, 0.25], 3, [151643])
    >>> run = VariantRun(VARIANTS["A"], load_tokenizer(), None, TrainResult(None, [9.87, 0.03], 6), m)
    >>> print(describe_run(run, tail_length=2))
    variant A: pad == eos, padding masked by id (the post's collator): the eos label is masked too
      loss: epoch 1 9.9 -> epoch 2 below 0.05 (6 steps)
      stop 1/2, exact recall 1/2, mean new tokens 2.5, p(eos) after the poem 0.50
      record 0:  3 new tokens, stopped, recall yes, last ids [1773, 151643]
      record 1:  2 new tokens, no stop, recall no , last ids [52801, 52801]
    """
    m, losses = run.measurement, run.training.epoch_losses
    lines = [
        f"variant {run.label}: {run.variant.summary}",
        f"  loss: epoch 1 {losses[0]:.1f} -> epoch {len(losses)} below {loss_ceiling(losses[-1]):g} ({run.training.steps} steps)",
        f"  stop {m.stops}/{m.n}, exact recall {m.recalls}/{m.n}, mean new tokens {m.mean_new_tokens:.1f}, "
        f"p(eos) after the poem {m.mean_eos_probability:.2f}",
    ]
    for index, (generation, recalled) in enumerate(zip(m.generations, m.recalled)):
        ending = "stopped" if generation.stopped_on_eos else "no stop"
        lines.append(
            f"  record {index}: {len(generation.token_ids):2d} new tokens, {ending}, "
            f"recall {'yes' if recalled else 'no '}, last ids {m.tail(index, tail_length)}"
        )
    return "\n".join(lines)
