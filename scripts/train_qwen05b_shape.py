"""Full-parameter training of a Qwen2.5-0.5B-*shape* model: peak memory vs the estimate, tokens/s.

Not part of the notebooks (it wants a GPU). The weights of Qwen2.5-0.5B cannot be
downloaded where this series is built, and neither memory nor speed depends on their
values, so the model is built from the 0.5B configuration with random weights and trained
on the five poems, packed into rows of ``--seq-len`` tokens (pretraining style).

Precision (``--precision``), and the estimate each is compared with
(``helpers.memory.SCHEMES``):

- ``autocast-bf16`` (default on a GPU with bf16): fp32 weights, gradients and AdamW states,
  matrix products in bf16 under ``torch.autocast``. This is what ``Trainer(bf16=True)``
  does. Estimate: the ``fp32`` rule, 16 bytes per parameter (7.90 GB for 0.5B); the bf16
  weight copies autocast makes are temporaries and count with the activations.
- ``bf16``: weights, gradients and AdamW states all in bf16, no fp32 copy. Estimate: the
  ``half`` rule, 8 bytes per parameter (3.95 GB: the seed's fp16 line).
- ``fp32`` (default without a GPU): everything in fp32. Estimate: the ``fp32`` rule.

On CUDA the peak is ``torch.cuda.max_memory_allocated()`` over the whole run (statistics
reset after the model is built), and the timed steps are bracketed by
``torch.cuda.synchronize()`` so that tokens/s measures finished work. Without CUDA there is
no such peak (null); ``process_max_rss_bytes`` is the whole process's resident memory
(Python and libraries included), a rough upper bound only.

The last line printed is one JSON object with every number (machine-readable).

    python scripts/train_qwen05b_shape.py                      # 0.5B shape, GPU
    python scripts/train_qwen05b_shape.py --seq-len 1024 --batch-size 4 --steps 30
    python scripts/train_qwen05b_shape.py --tiny --steps 3     # seconds on a CPU (the tests)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from contextlib import nullcontext

import torch
import transformers
from transformers import Qwen2ForCausalLM

from helpers import PretrainCollator, TinyQwenConfig, load_records, load_tokenizer
from helpers.memory import (
    GB,
    count_parameters,
    estimate_training_memory,
    measure_training_memory,
    qwen25_05b_config,
)

#: --precision -> (weight dtype, autocast dtype or None, estimate scheme)
PRECISIONS = {
    "autocast-bf16": (torch.float32, torch.bfloat16, "fp32"),
    "bf16": (torch.bfloat16, None, "half"),
    "fp32": (torch.float32, None, "fp32"),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per row (default 512)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps (default 20)")
    parser.add_argument("--warmup-steps", type=int, default=3,
                        help="untimed steps first: kernel selection, allocator warm-up, AdamW state creation (default 3)")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                        help="default: autocast-bf16 on a GPU with bf16, else fp32")
    parser.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="the series' tiny model (9.85 M parameters) instead of the 0.5B shape: for tests on a CPU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.precision is None:
        bf16_ok = args.device.startswith("cuda") and torch.cuda.is_bf16_supported()
        args.precision = "autocast-bf16" if bf16_ok else "fp32"
    for name in ("seq_len", "batch_size", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup_steps < 0:
        parser.error("--warmup-steps must be at least 0")
    return args


def packed_batches(tokenizer, batch_size: int, seq_len: int):
    """Endless batches of the five poems, concatenated (each ending in eos) and cut into rows."""
    text_of = PretrainCollator(tokenizer).text  # instruct + input + label + eos
    stream = [i for record in load_records() for i in tokenizer(text_of(record))["input_ids"]]
    need = batch_size * seq_len
    stream = stream * (need // len(stream) + 2)  # long enough for a full batch from any offset below
    offset, limit = 0, len(stream) - need
    while True:
        ids = torch.tensor(stream[offset: offset + need]).view(batch_size, seq_len)
        yield {"input_ids": ids, "labels": ids.clone()}  # the model shifts labels by one itself
        offset = (offset + need) % limit


def process_max_rss_bytes() -> int | None:
    """Peak resident memory of this whole process (Python, libraries, CPU tensors), if known."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    weight_dtype, autocast_dtype, scheme = PRECISIONS[args.precision]
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls in TF32 (speed; bf16 paths unaffected)

    tokenizer = load_tokenizer()
    config = TinyQwenConfig().to_qwen2_config() if args.tiny else qwen25_05b_config()
    torch.manual_seed(args.seed)
    with device:  # initialise the weights where they will live (fast on a GPU)
        model = Qwen2ForCausalLM(config)
    model.to(dtype=weight_dtype)
    model.train()
    n_params = count_parameters(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=on_cuda)
    estimate = estimate_training_memory(n_params, scheme)
    batches = packed_batches(tokenizer, args.batch_size, args.seq_len)
    autocast = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else nullcontext

    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B shape'}, {n_params:,} parameters, random init")
    print(f"device: {torch.cuda.get_device_name(device) if on_cuda else platform.processor() or 'cpu'}, "
          f"precision: {args.precision}, attention: {model.config._attn_implementation}")
    print(f"batch {args.batch_size} x {args.seq_len} tokens, {args.warmup_steps} warm-up + {args.steps} timed steps")

    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    losses = []

    def step():
        optimizer.zero_grad(set_to_none=True)
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with autocast():
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(args.warmup_steps):
        losses.append(step().item())
    if on_cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    timed = [step() for _ in range(args.steps)]  # no .item() inside: it would synchronize every step
    if on_cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    losses += [loss.item() for loss in timed]

    measured = measure_training_memory(model, optimizer)  # gradients are still there: zero_grad comes first in step()
    peak = torch.cuda.max_memory_allocated(device) if on_cuda else None
    tokens = args.steps * args.batch_size * args.seq_len
    result = {
        "model": "tiny" if args.tiny else "qwen2.5-0.5b-shape",
        "n_params": n_params,
        "device": torch.cuda.get_device_name(device) if on_cuda else "cpu",
        "precision": args.precision,
        "estimate_scheme": scheme,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "estimate_bytes": estimate.total,
        "measured_state_bytes": measured.total,
        "measured_state_parts": measured.parts,
        "peak_allocated_bytes": peak,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(device) if on_cuda else None,
        "activations_and_temporaries_bytes": None if peak is None else peak - measured.total,
        "process_max_rss_bytes": process_max_rss_bytes(),  # CPU memory of the whole process
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "tf32_matmul": bool(on_cuda and torch.backends.cuda.matmul.allow_tf32),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    print(f"training state: estimate {estimate.total / GB:.3f} GB ({scheme} rule, "
          f"{estimate.bytes_per_param} bytes/param), measured {measured.total / GB:.3f} GB")
    if peak is not None:
        print(f"peak allocated {peak / GB:.3f} GB = training state + {(peak - measured.total) / GB:.3f} GB "
              "of activations and temporaries")
    print(f"{tokens / seconds:,.0f} tokens/s ({seconds / args.steps * 1000:.1f} ms/step), "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
