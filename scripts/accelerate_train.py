"""The notebooks' training run, launched on several processes with ``accelerate launch``.

For users who outgrow one GPU. It runs the recipe of notebook 04_full_parameter_training
through the same code (``helpers.train``: the same ``Trainer`` and ``TrainingArguments``, the
recipe from ``helpers.checkpoints.recipe``), so no training code is repeated here: the
``Trainer`` notices that ``accelerate launch`` started it on several processes and runs
data-parallel by itself.

What stays as in the notebook, and what does not, with N processes:

- The global batch. Each process takes ``per_device_train_batch_size`` records per step,
  so the script sets it to the recipe's batch divided by N: the global batch, the optimizer
  steps per epoch and the learning rate stay the recipe's. When N does not divide the
  recipe's batch, each process takes the smallest whole share, the global batch grows (fewer
  steps per epoch), the learning rate is *not* rescaled, and the script says so on stderr.
- The loss. The ``Trainer`` divides each process's summed token losses by the number of
  target tokens in the whole global batch (``average_tokens_across_devices``, on by default
  in transformers 5) and scales it by N, which DDP's gradient averaging undoes: the
  gradient is that of the mean over the global batch's tokens, as on one process.
- Not bit-identical. accelerate shards the batches itself (its ``even_batches`` loops back
  to the start of the epoch's order to fill a short last batch, so with 5 records and a
  global batch of 2 the last step of an epoch trains on 2 records, not 1), and sums run in
  another order. Losses and weights come out close to the notebook's, not equal.

What the launch config chooses:

- ``scripts/accelerate/ddp.yaml``: DDP. Every process holds the whole model, its
  gradients and its AdamW states (the 16 bytes/parameter of notebook 04), plus DDP's
  gradient buckets: the flat buffers the all-reduce works in, as large as the gradients
  (4 bytes/parameter in fp32), kept beside them because ``gradient_as_bucket_view`` is False
  (torch's default, which accelerate's ``DistributedDataParallelKwargs`` and the ``Trainer``
  keep). About 20 bytes/parameter per GPU before activations. Each process trains on its own
  share of every batch and the gradients are averaged across processes.
- ``scripts/accelerate/fsdp.yaml``: FSDP2. Weights, gradients and AdamW states are sharded,
  so each of N GPUs holds about 1/N of those 16 bytes/parameter: for models whose training
  state does not fit one GPU. With bf16 (the ``Trainer``'s ``bf16=True`` on a GPU that
  supports it), accelerate 1.15 gives FSDP2 ``MixedPrecisionPolicy(param_dtype=bf16,
  reduce_dtype=bf16, output_dtype=bf16)``: the layers compute with gathered bf16 copies of
  the weights, each sharded module's floating-point outputs are cast to bf16, and the
  gradients are reduce-scattered in bf16, not in fp32.

    accelerate launch --config_file scripts/accelerate/ddp.yaml scripts/accelerate_train.py --objective sft
    accelerate launch --config_file scripts/accelerate/fsdp.yaml --num_processes 4 scripts/accelerate_train.py

Without a GPU (the tests), set ``ACCELERATE_USE_CPU=true`` and use the same configs: the
processes then train on the CPU and talk over gloo. Not ``accelerate launch --cpu``: in
accelerate 1.15 (``commands/launch.py``, ``launch_command``) ``--cpu`` always goes to the
simple launcher, which starts one process whatever ``--num_processes`` says; it runs several
only through ``mpirun``/``mpiexec``, and only when ``--mpirun_hostfile`` is given.

The model is the series' setting (``$PVS_MODEL``, else the tiny default). The main
process saves the trained model and tokenizer to ``--output-dir`` (if given; under FSDP2 it
first gathers the full weights onto rank 0's CPU, :func:`gathered_state_dict`, and hands them
to ``save_pretrained``, so the checkpoint is one ordinary ``model.safetensors``) and prints
one JSON line with the results (under DDP every process first checks that all replicas
ended with the same weights).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import replace

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from helpers import load_model, load_records, load_tokenizer, model_setting
from helpers.checkpoints import COLLATORS, recipe, save_checkpoint
from helpers.training import train


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", choices=sorted(COLLATORS), default="sft",
                        help="pretraining or SFT labels (default sft)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's num_train_epochs")
    parser.add_argument("--seed", type=int, default=0, help="initial weights of the tiny default model")
    parser.add_argument("--output-dir", default=None, help="save model + tokenizer here (main process)")
    return parser.parse_args(argv)


def per_process_batch(global_batch: int, world_size: int) -> int:
    """Records per process and step that keep the global batch at ``global_batch``.

    When ``world_size`` does not divide it: the smallest whole share that covers it (the
    global batch then grows to that share x ``world_size``).
    """
    if global_batch < 1 or world_size < 1:
        raise ValueError(f"global_batch and world_size must be at least 1, got {global_batch} and {world_size}")
    return -(-global_batch // world_size)  # ceiling division


def is_sharded(model) -> bool:
    """True when FSDP2 has sharded the model (its parameters became DTensors)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def gathered_state_dict(model) -> dict:
    """The full weights of an FSDP2-sharded model, on the CPU of rank 0 (empty elsewhere).

    A collective: every process must call it.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def weights_digest(state_dict: dict) -> str:
    """A short hash of every weight: equal on all processes when the DDP replicas agree."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def distributed_type() -> str:
    """How accelerate actually ran (``MULTI_GPU``, ``MULTI_CPU``, ``FSDP``, ``NO``)."""
    from accelerate.state import AcceleratorState

    if not AcceleratorState._shared_state:
        return "NO"
    return str(AcceleratorState().distributed_type).rsplit(".", 1)[-1]


def main(argv=None) -> None:
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch (torchrun)
    setting = model_setting()
    tokenizer = load_tokenizer(setting)
    records = load_records()
    config = recipe(setting)
    config = replace(config, print_loss=rank == 0)  # every process logs the same averaged loss: print it once
    if args.epochs is not None:
        config = replace(config, num_train_epochs=args.epochs)
    global_batch = config.per_device_train_batch_size  # the recipe's batch: one process in the notebook
    config = replace(config, per_device_train_batch_size=per_process_batch(global_batch, world_size))
    if config.per_device_train_batch_size * world_size != global_batch and rank == 0:
        print(f"note: {world_size} processes cannot share the recipe's batch of {global_batch}: the global batch "
              f"is {config.per_device_train_batch_size * world_size}, so fewer steps per epoch, and the learning "
              "rate is not rescaled", file=sys.stderr)
    model = load_model(setting, tokenizer, seed=args.seed)
    result = train(model, tokenizer, records, COLLATORS[args.objective](tokenizer), config)

    if dist.is_initialized() and dist.get_world_size() != world_size:
        raise SystemExit(f"WORLD_SIZE says {world_size} processes, torch.distributed has {dist.get_world_size()}")
    ran_as = distributed_type()
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and ran_as != "FSDP" and rank == 0:
        print(f"note: the config asks for FSDP, but accelerate ran {ran_as}: it shards only across "
              "accelerator processes (GPUs), so CPU processes train as plain DDP", file=sys.stderr)
    if is_sharded(result.model):
        state_dict = gathered_state_dict(result.model)  # full weights on rank 0 only
        digests = [weights_digest(state_dict)] if rank == 0 else []
    else:
        state_dict = None
        digests = [weights_digest(result.model.state_dict())]
        if world_size > 1:  # DDP: every process holds a full replica; they must agree
            gathered = [None] * world_size
            dist.all_gather_object(gathered, digests[0])
            digests = gathered
    if len(set(digests)) > 1:
        raise SystemExit(f"rank {rank}: DDP replicas disagree after training: {digests}")
    if rank == 0:
        if args.output_dir:
            save_checkpoint(result.model, tokenizer, args.output_dir, state_dict=state_dict)
        print(json.dumps({
            "objective": args.objective,
            "world_size": world_size,
            "distributed_type": ran_as,
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "device": str(next(result.model.parameters()).device),
            "epochs": config.num_train_epochs,
            "per_device_train_batch_size": config.per_device_train_batch_size,
            "global_train_batch_size": config.per_device_train_batch_size * world_size,
            "steps": result.steps,
            "epoch_losses": result.epoch_losses,
            "weights_digest_per_rank": digests,
            "seconds": result.seconds,
        }), flush=True)
    if dist.is_initialized():
        dist.barrier()


if __name__ == "__main__":
    main()
