"""The two checkpoints of the series: where they live, how they are trained, saved and loaded.

Introduced in notebook 04_full_parameter_training, which trains a pretraining (预训练) model
and an SFT (有监督微调) model from the same initial weights and saves both; notebook
05_inference loads them, or, when they are missing, trains them itself through the same
functions, so each notebook also runs on its own.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from transformers.utils import logging as hf_logging

from .collators import PretrainCollator, SFTCollator
from .model import load_model
from .settings import model_setting
from .tokenizer import load_tokenizer
from .training import TrainConfig, TrainResult, train

#: Where the checkpoints go, relative to ``notebooks/`` (the directory the notebooks run in).
DEFAULT_OUTPUTS = Path("../outputs")
#: The two training objectives and the collator that defines each.
COLLATORS = {"pretrain": PretrainCollator, "sft": SFTCollator}
#: Learning rate for a model that is already pretrained (``$PVS_MODEL`` set): the tiny
#: default trains from random weights with a far higher one (``TrainConfig.learning_rate``).
PRETRAINED_LEARNING_RATE = 1e-5
#: Files a directory needs to count as a complete checkpoint (model + tokenizer).
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "tokenizer.json")


@dataclass
class Checkpoint:
    """A trained model with the tokenizer it was trained with, and the directory it came from.

    Returned by :func:`load_checkpoint` (notebook 04_full_parameter_training) and
    :func:`load_or_train` (notebook 05_inference).
    """

    model: object
    tokenizer: object
    path: Path


def checkpoint_dirs(root: str | os.PathLike = DEFAULT_OUTPUTS) -> dict[str, Path]:
    """``{"pretrain": root/pretrain, "sft": root/sft}``.

    Introduced in notebook 04_full_parameter_training.
    """
    return {objective: Path(root) / objective for objective in COLLATORS}


def recipe(model_name: str | None = None) -> TrainConfig:
    """The training recipe for the model the series uses.

    Introduced in notebook 04_full_parameter_training. The tiny default (``model_name``
    None) trains from random weights with :class:`TrainConfig`'s defaults; a pretrained model
    (``$PVS_MODEL``) gets the same recipe with :data:`PRETRAINED_LEARNING_RATE`, since a
    learning rate that high would wreck what it already knows.
    """
    config = TrainConfig()
    return config if model_name is None else replace(config, learning_rate=PRETRAINED_LEARNING_RATE)


def train_both(tokenizer, records, config: TrainConfig | None = None, model_name=None, seed: int = 0) -> dict[str, TrainResult]:
    """Train one model per objective (pretraining, SFT), each from the same initial weights.

    Introduced in notebook 04_full_parameter_training. Both runs load their model with
    ``load_model(model_name, tokenizer, seed=seed)`` (the same weights) and train with
    :func:`helpers.training.train` and the same ``config`` (default: :func:`recipe`), so
    the collator is the only difference. ``model_name`` defaults to ``model_setting()``.
    """
    model_name = model_setting() if model_name is None else model_name
    config = recipe(model_name) if config is None else config
    results = {}
    for objective, collator in COLLATORS.items():
        if config.print_loss:
            print(f"--- {objective} ---")
        model = load_model(model_name, tokenizer, seed=seed)
        results[objective] = train(model, tokenizer, records, collator(tokenizer), config)
    return results


@contextmanager
def _no_progress_bars():
    """Hide transformers' per-file progress bars ("Writing model shards", "Loading weights"):
    a checkpoint this small is one file read or written at once, and the bars' timings would
    make the notebooks' stored outputs differ from run to run."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_checkpoint(model, tokenizer, directory: str | os.PathLike, state_dict=None) -> list[str]:
    """Save ``model`` and ``tokenizer`` with ``save_pretrained``; returns the file names written.

    Introduced in notebook 04_full_parameter_training. The weights go to
    ``model.safetensors``; ``directory`` is created if needed. ``state_dict`` replaces the
    model's own (``scripts/accelerate_train.py`` passes the gathered weights of an
    FSDP-sharded model).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _no_progress_bars():
        model.save_pretrained(directory, state_dict=state_dict)
    tokenizer.save_pretrained(directory)
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def has_checkpoint(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a complete model + tokenizer checkpoint.

    Introduced in notebook 05_inference.
    """
    return all((Path(directory) / name).is_file() for name in REQUIRED_FILES)


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Reload a saved checkpoint with ``from_pretrained`` (tokenizer first, then the model).

    Introduced in notebook 04_full_parameter_training. The model is returned in eval mode.
    """
    tokenizer = load_tokenizer(directory)
    with _no_progress_bars():
        model = load_model(directory, tokenizer)
    model.eval()
    return Checkpoint(model=model, tokenizer=tokenizer, path=Path(directory))


def load_or_train(root: str | os.PathLike = DEFAULT_OUTPUTS, records=None, seed: int = 0) -> tuple[dict[str, Checkpoint], str]:
    """Both checkpoints from ``root``; trains and saves them first when either is missing.

    Introduced in notebook 05_inference. Returns ``(checkpoints, how)`` where ``how`` is
    ``"loaded"`` or ``"trained"``. Training goes through :func:`train_both` with the model
    named by ``model_setting()`` and its :func:`recipe`: the run notebook
    04_full_parameter_training makes.
    """
    dirs = checkpoint_dirs(root)
    how = "loaded"
    if not all(has_checkpoint(d) for d in dirs.values()):
        from .data import load_records

        tokenizer = load_tokenizer(model_setting())
        results = train_both(tokenizer, load_records() if records is None else records, seed=seed)
        for objective, result in results.items():
            save_checkpoint(result.model, tokenizer, dirs[objective])
        how = "trained"
    return {objective: load_checkpoint(d) for objective, d in dirs.items()}, how
