"""Training a causal LM on the records with the transformers ``Trainer``.

Introduced in notebook 02_pad_eos_pitfalls (which trains one model per pitfall); notebook
04_full_parameter_training prints the arguments it adds to the recipe and shows the
``Trainer`` call.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback, TrainingArguments


@dataclass(frozen=True)
class TrainConfig:
    """The default recipe: the tiny model memorises the five poems from random init.

    >>> config = TrainConfig()
    >>> config.num_train_epochs, config.per_device_train_batch_size, config.learning_rate
    (20, 2, 0.005)
    >>> TrainConfig(num_train_epochs=1).num_train_epochs
    1
    """

    num_train_epochs: int = 20  # passes over the five records; exact recall of all five comes
    #                              after 10 (30 steps: steps_to_exact_recall in benchmarks/results.json)
    per_device_train_batch_size: int = 2  # as in the post: 3 optimizer steps per epoch
    learning_rate: float = 5e-3  # high, because the tiny model starts from random weights;
    #                              a pretrained model gets the post's 5e-5 (PRETRAINED_RECIPE)
    lr_scheduler_type: str = "constant"  # no decay: the run is short
    warmup_steps: int = 0  # optimizer steps of linear warm-up
    weight_decay: float = 0.0  # AdamW's decoupled decay; memorisation needs none
    seed: int = 0  # shuffling order of the records (and dropout: Qwen2 has attention_dropout, 0.0 in the tiny config)
    print_loss: bool = True  # print each epoch's mean loss at fixed precision


@dataclass
class TrainResult:
    """What one training run produced.

    >>> result = TrainResult(model=torch.nn.Linear(1, 1))
    >>> result.epoch_losses, result.steps
    ([], 0)
    """

    model: torch.nn.Module  # the trained model (the object passed in, trained in place)
    epoch_losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    steps: int = 0  # optimizer steps taken
    seconds: float = 0.0  # wall time of trainer.train()


class EpochLossPrinter(TrainerCallback):
    """Collects (and optionally prints) the loss the Trainer logs once per epoch.

    >>> printer = EpochLossPrinter(print_loss=False)
    >>> printer.losses
    []
    """

    def __init__(self, print_loss: bool):
        self.print_loss = print_loss
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Record ``logs["loss"]`` (and print it with the epoch and step when asked).

        >>> from types import SimpleNamespace
        >>> printer = EpochLossPrinter(print_loss=True)
        >>> printer.on_log(None, SimpleNamespace(epoch=1.0, global_step=3), None, logs={"loss": 2.5})
        epoch   1  step    3  loss 2.500
        >>> printer.on_log(None, SimpleNamespace(epoch=1.0, global_step=3), None, logs={"lr": 0.1})
        >>> printer.losses
        [2.5]
        """
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
            if self.print_loss:
                print(f"epoch {round(state.epoch):3d}  step {state.global_step:4d}  loss {logs['loss']:.3f}")


def training_arguments(config: TrainConfig, output_dir: str) -> TrainingArguments:
    """The ``TrainingArguments`` of a run: CUDA (bf16 where supported) when present, else CPU.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as scratch:
    ...     args = training_arguments(TrainConfig(num_train_epochs=3), scratch)
    >>> args.num_train_epochs, args.per_device_train_batch_size, args.save_strategy == "no", args.report_to
    (3, 2, True, [])
    """
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_train_batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        seed=config.seed,
        logging_strategy="epoch",
        save_strategy="no",  # checkpoints are saved explicitly with save_pretrained
        report_to="none",
        disable_tqdm=True,  # progress bars are timings: the loss printer shows progress instead
        remove_unused_columns=False,  # the collator needs the raw record fields
        ddp_find_unused_parameters=False,  # Qwen2 uses every parameter (accelerate launch, DDP)
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        dataloader_pin_memory=on_gpu,
    )


def train(
    model, tokenizer, records, collator, config: TrainConfig = TrainConfig(), output_dir=None, callbacks=()
) -> TrainResult:
    """Train ``model`` in place on ``records`` batched by ``collator``; returns the losses.

    ``tokenizer`` is not handed to the ``Trainer`` (see the comment there); it is kept in the
    signature because the collator and the callers' generation use the same one.

    Introduced in notebook 02_pad_eos_pitfalls. ``output_dir`` only receives what the
    Trainer writes itself (nothing, with ``save_strategy="no"``); a temporary directory by
    default. ``callbacks`` are extra ``TrainerCallback``s (the benchmarks check recall with one).

    One epoch of three steps on the tiny model (well under a second):

    >>> from helpers import load_model, load_tokenizer
    >>> from helpers.collators import SFTCollator
    >>> from helpers.data import load_records
    >>> tok = load_tokenizer()
    >>> result = train(load_model(), tok, load_records(), SFTCollator(tok),
    ...                TrainConfig(num_train_epochs=1, print_loss=False))
    >>> result.steps, len(result.epoch_losses), result.model.training
    (3, 1, False)
    """
    printer = EpochLossPrinter(config.print_loss)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model,
            args=training_arguments(config, output_dir or scratch),
            train_dataset=records,
            data_collator=collator,
            # No processing_class: given a tokenizer, Trainer.train() copies its pad id into
            # model.config (transformers 5.23, trainer_utils.align_special_tokens, with a logged
            # warning). A checkpoint saved with that id rebuilds its embedding with padding_idx on
            # reload, freezing the pad row's input side in any further training (notebook 02).
            # The collator already holds the tokenizer; nothing else here needs it.
            callbacks=[printer, *callbacks],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
    # With bf16 (a GPU), accelerate wrapped model.forward in autocast for training: put the original
    # back, or later calls on the returned model would still run in bf16. (accelerate 1.15's
    # unwrap_model(keep_fp32_wrapper=False) would also strip transformers' decorators of forward.)
    original_forward = model.__dict__.pop("_original_forward", None)
    if original_forward is not None:
        model.forward = original_forward
    model.eval()
    return TrainResult(model=model, epoch_losses=printer.losses, steps=output.global_step, seconds=seconds)
