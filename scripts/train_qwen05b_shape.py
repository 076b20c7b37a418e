"""Full-parameter training of a Qwen2.5-0.5B-*shape* model: peak memory, tokens/s and MFU, option by option.

Not part of the notebooks (it wants a GPU). The weights of Qwen2.5-0.5B cannot be
downloaded where this series is built, and neither memory nor speed depends on their
values, so the model is built from the 0.5B configuration with random weights and trained
on the five poems, packed into rows of ``--seq-len`` tokens (pretraining style).

Precision (``--precision``), and the estimate each is compared with
(``helpers.memory.SCHEMES``):

- ``autocast-bf16`` (default on a GPU with bf16): fp32 weights, gradients and AdamW states,
  matrix products in bf16 under ``torch.autocast``. This is what ``Trainer(bf16=True)``
  does. Estimate: the ``fp32`` rule, 16 bytes per parameter (7.90 GB for 0.5B).
- ``bf16``: weights, gradients and AdamW states all in bf16, no fp32 copy. Estimate: the
  ``half`` rule, 8 bytes per parameter (3.95 GB: the post's fp16 line).
- ``fp32`` (default without a GPU): everything in fp32. Estimate: the ``fp32`` rule.

Speed and memory options (each can be switched on alone, and ``--matrix`` measures several
option sets side by side in one process):

- ``--fused-ce [liger|chunked]``: the output layer and the cross-entropy in one step, so the
  ``tokens x 151,936`` logits never exist whole (without it, transformers' loss makes an fp32
  copy of them, and autograd keeps vocabulary-sized tensors until the backward pass).
  ``liger`` is liger-kernel's ``LigerFusedLinearCrossEntropyLoss`` (Triton kernels, so a GPU
  only; ``pip install -r requirements-gpu.txt``); ``chunked`` is :class:`ChunkedLinearCrossEntropy`
  below, plain PyTorch that runs anywhere. Without a value: liger where it can run, else chunked.
- ``--compile [layers|full]``: ``torch.compile``. ``layers`` (the default) compiles each
  decoder layer: the layers share one compiled graph, so the compiler's work is one layer's.
  ``full`` compiles the model (or, with ``--fused-ce``, the decoder stack) whole.
- ``--fused-adamw``: ``torch.optim.AdamW(fused=True)``: each step's element-wise update in
  fused multi-tensor kernels (without it, PyTorch's default: the ``foreach`` implementation on
  a GPU, a loop over the parameters on a CPU).
- ``--attn sdpa|eager|flex_attention|flash_attention_2``: transformers' attention
  implementation (``flash_attention_2`` only where the ``flash_attn`` package is installed).
- ``--checkpointing``: activation (gradient) checkpointing: layers recompute their
  activations in the backward pass instead of keeping them.
- ``--lora``: LoRA adapters from ``helpers.lora`` instead of full-parameter training.

MFU (model FLOPs utilisation) = achieved FLOP/s / the card's dense bf16 peak
(:data:`PEAK_BF16_TFLOPS`: H100 SXM and H200 989 TFLOP/s, from NVIDIA's datasheets, which
print twice that "with sparsity"). Achieved FLOP/s = 6 x parameters x tokens/s: 2 FLOPs per
parameter and token in the forward pass, 4 in the backward pass; the output layer is counted
once (its weight is the tied embedding), embedding look-ups and attention scores are not.
``mfu_with_attention`` adds the attention scores, 12 x layers x seq_len x hidden FLOPs per
token (QK^T and AV, forward and backward, the full square: causal masking halves the work
that is needed, flash kernels skip it, and the convention still counts it). Activation
checkpointing's recomputation is not counted (it is not model work). With ``--lora`` the
frozen weights need no weight gradients: 4 x parameters instead of 6.

On CUDA the peak is ``torch.cuda.max_memory_allocated()`` over the run (statistics reset
after the model is built); the timed steps are bracketed by ``torch.cuda.synchronize()`` so
that tokens/s measures finished work, after untimed warm-up steps (kernel selection,
compilation, AdamW state creation). Without CUDA there is no such peak (null);
``process_max_rss_bytes`` is the whole process's resident memory, a rough upper bound only.

The last line printed is one JSON object with every number (machine-readable); ``--matrix``
prints one JSON line per option set as it finishes (prefixed ``MATRIX_ROW``), then a table
and a last JSON line with every row.

    python scripts/train_qwen05b_shape.py                      # 0.5B shape, GPU
    python scripts/train_qwen05b_shape.py --batch-size 64 --fused-ce --compile --fused-adamw
    python scripts/train_qwen05b_shape.py --matrix             # the option sets of DEFAULT_MATRIX
    python scripts/train_qwen05b_shape.py --matrix --matrix-set "--batch-size 8" --matrix-set="--fused-ce"
    python scripts/train_qwen05b_shape.py --tiny --steps 3     # seconds on a CPU (the tests)
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import importlib.util
import json
import platform
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from transformers import Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `helpers` when run as a script

from helpers import PretrainCollator, TinyQwenConfig, load_records, load_tokenizer  # noqa: E402
from helpers.memory import (  # noqa: E402
    GB, count_parameters, count_training_state, estimate_peak_memory, estimate_training_memory, qwen25_05b_config,
)

# count_training_state(model, optimizer): the bytes of weights, gradients and optimizer states,
# counted tensor by tensor (a count, equal to the rule by construction, not an allocator
# measurement: that is helpers.memory.measure_training_memory, which builds the model itself).

IGNORE_INDEX = -100

#: --precision -> (weight dtype, autocast dtype or None, estimate scheme)
PRECISIONS = {
    "autocast-bf16": (torch.float32, torch.bfloat16, "fp32"),
    "bf16": (torch.bfloat16, None, "half"),
    "fp32": (torch.float32, None, "fp32"),
}

#: Dense (no sparsity) bf16 tensor-core peak in TFLOP/s, by a piece of
#: ``torch.cuda.get_device_name()``; the first match wins, so variants come before the family.
#: NVIDIA's datasheets print these x2 "with sparsity" (H100 SXM 1,979, H100 PCIe 1,513). None:
#: a variant with other clocks whose figure is not recorded here (give --peak-tflops).
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("NVL", None),  # H100 NVL, H200 NVL: lower power limits than the SXM parts
    ("H100", 989.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989.0),  # SXM ("NVIDIA H200")
    ("A100", 312.0),
)

ATTENTION_CHOICES = ("sdpa", "eager", "flex_attention", "flash_attention_2")

#: The option sets ``--matrix`` measures when no ``--matrix-set`` is given, in this order (the
#: most telling first, so that a time budget cuts the least useful). ``{best}`` is ``--best-batch``.
DEFAULT_MATRIX = (
    "--batch-size 8",  # the baseline the README recorded: autocast, sdpa, full logits
    "--batch-size 8 --fused-ce --compile --fused-adamw",
    "--batch-size {best} --fused-ce --compile --fused-adamw",
    "--batch-size 8 --fused-ce --compile --fused-adamw --checkpointing",
    "--batch-size 8 --fused-ce --fused-adamw",
    "--batch-size 8 --fused-adamw",
    "--batch-size 8 --compile",
    "--batch-size 8 --fused-ce chunked --fused-adamw",
    "--batch-size {best} --fused-ce --fused-adamw",
    "--batch-size 32",  # the README's batch-32 record
    "--batch-size 8 --attn eager",
)


# ----------------------------------------------------------------------------------------------
# Fused output layer + cross-entropy, in plain PyTorch
# ----------------------------------------------------------------------------------------------

class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``labels``, never holding all the logits.

    The tokens are processed ``chunk_size`` at a time: one chunk's logits are computed, turned
    into that chunk's loss and, right away, into its gradients with respect to ``hidden`` and
    ``weight`` (softmax minus one-hot, divided by the number of counted tokens); then they are
    freed. Autograd keeps only those two gradients (the sizes of ``hidden`` and ``weight``)
    until the backward pass, which scales them by the incoming gradient. The same idea as
    liger-kernel's fused linear cross-entropy, without Triton.

    Matrix products run in ``compute_dtype`` (bf16 under autocast); the softmax, the loss and
    the weight-gradient sum in fp32 (or the inputs' dtype if wider). Labels equal to ``ignore_index`` count for nothing, as in
    ``F.cross_entropy(reduction="mean")``.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk_size: int, compute_dtype: torch.dtype,
                ignore_index: int = IGNORE_INDEX):
        wants_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.to(compute_dtype)
            w = weight.to(compute_dtype)
            exact = torch.promote_types(compute_dtype, torch.float32)  # softmax/loss/sums: fp32 at least
            counted = labels != ignore_index
            n_counted = counted.sum().clamp(min=1).to(exact)  # a tensor: no device sync
            loss_sum = torch.zeros((), dtype=exact, device=hidden.device)
            grad_hidden = torch.empty_like(hidden) if wants_grad else None
            grad_weight = torch.zeros_like(weight, dtype=exact) if wants_grad else None
            for start in range(0, h.shape[0], chunk_size):
                rows = slice(start, start + chunk_size)
                logits = (h[rows] @ w.T).to(exact)  # chunk x vocab: the only vocabulary-sized tensor
                targets = labels[rows].clamp(min=0).unsqueeze(1)  # ignored rows: any valid id, weighted 0
                lse = torch.logsumexp(logits, dim=1)
                weight_rows = counted[rows].to(exact)
                loss_sum += ((lse - logits.gather(1, targets).squeeze(1)) * weight_rows).sum()
                if wants_grad:
                    probs = logits.sub_(lse.unsqueeze(1)).exp_()  # softmax, in place
                    probs.scatter_add_(1, targets, -torch.ones_like(targets, dtype=probs.dtype))
                    probs.mul_((weight_rows / n_counted).unsqueeze(1))  # d(mean loss)/d(logits)
                    grad_logits = probs.to(compute_dtype)
                    del probs
                    grad_hidden[rows] = (grad_logits @ w).to(hidden.dtype)
                    grad_weight += grad_logits.T @ h[rows]
                    del grad_logits
                del logits  # before the next chunk's logits exist
        if wants_grad:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return loss_sum / n_counted

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None, None


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                                 chunk_size: int = 1024, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, labels)`` through :class:`ChunkedLinearCrossEntropy`.

    ``hidden`` is ``(tokens, hidden_size)``, ``weight`` ``(vocab, hidden_size)``, ``labels``
    ``(tokens,)``. Under ``torch.autocast`` the products use the autocast dtype, as ``@`` would.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden must be (tokens, H) and weight (vocab, H); got {tuple(hidden.shape)} "
                         f"and {tuple(weight.shape)}")
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels must be ({hidden.shape[0]},), got {tuple(labels.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    device_type = hidden.device.type
    compute_dtype = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
                     else hidden.dtype)
    return ChunkedLinearCrossEntropy.apply(hidden, weight, labels, chunk_size, compute_dtype, ignore_index)


@functools.lru_cache(maxsize=None)
def liger_unavailable_reason(device: torch.device) -> str | None:
    """Why liger-kernel's fused linear cross-entropy cannot run here, or None when it can.

    On CUDA it is also tried once on a small problem under bf16 autocast and compared with
    :func:`chunked_linear_cross_entropy`, so that a Triton/PyTorch mismatch shows up here,
    named, rather than as a failed training run.
    """
    if device.type != "cuda":
        return "liger-kernel needs CUDA (its kernels are Triton)"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install -r requirements-gpu.txt)"
    try:
        module = importlib.import_module("liger_kernel.transformers.fused_linear_cross_entropy")
    except Exception as error:  # a Triton/torch mismatch can surface at import
        return f"liger-kernel failed to import: {type(error).__name__}: {str(error)[:200]}"
    reason = fused_loss_disagreement(module.LigerFusedLinearCrossEntropyLoss, device)
    return None if reason is None else f"liger-kernel: {reason}"


def fused_loss_disagreement(loss_class, device: torch.device) -> str | None:
    """Why ``loss_class(ignore_index=-100)(weight, hidden, labels)`` cannot replace the plain loss, or None.

    Runs it on a small random problem under bf16 autocast and compares loss and gradients
    with :func:`chunked_linear_cross_entropy`.
    """
    try:
        generator = torch.Generator(device).manual_seed(0)
        hidden = torch.randn(64, 128, device=device, generator=generator, requires_grad=True)
        weight = torch.randn(1000, 128, device=device, generator=generator, requires_grad=True)
        labels = torch.randint(0, 1000, (64,), device=device, generator=generator)
        labels[:5] = IGNORE_INDEX
        with torch.autocast(device.type, dtype=torch.bfloat16):
            fused = loss_class(ignore_index=IGNORE_INDEX)(weight, hidden, labels)
            reference = chunked_linear_cross_entropy(hidden, weight, labels, chunk_size=16)
        fused_grads = torch.autograd.grad(fused, (hidden, weight))
        reference_grads = torch.autograd.grad(reference, (hidden, weight))
    except Exception as error:  # e.g. a Triton kernel that does not build here
        return f"it failed on this machine: {type(error).__name__}: {str(error)[:200]}"
    if not torch.allclose(fused.float(), reference, rtol=2e-2, atol=1e-2) or not all(
            torch.allclose(a.float(), b.float(), rtol=5e-2, atol=5e-3) for a, b in zip(fused_grads, reference_grads)):
        return f"it disagrees with the plain loss here (loss {fused.item():.4f} vs {reference.item():.4f})"
    return None


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

class OptionError(ValueError):
    """An option set that is invalid, or asks for something this machine lacks (``--matrix`` rows)."""


class _Parser(argparse.ArgumentParser):
    """``error()`` raises :class:`OptionError` instead of exiting when ``raise_errors`` is set."""

    raise_errors = False

    def error(self, message):
        if self.raise_errors:
            raise OptionError(message)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per row (default 512)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps (default 20)")
    parser.add_argument("--warmup-steps", type=int, default=3,
                        help="untimed steps first: kernel selection, compilation, AdamW state creation (default 3)")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                        help="default: autocast-bf16 on a GPU with bf16, else fp32")
    parser.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="the series' tiny model (9.85 M parameters) instead of the 0.5B shape: for tests on a CPU")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.add_argument_group("speed and memory options")
    options.add_argument("--fused-ce", nargs="?", const="auto", default=None, choices=("auto", "liger", "chunked"),
                         help="fused output layer + cross-entropy (no full logits); alone: liger where it runs, else chunked")
    options.add_argument("--ce-chunk-tokens", type=int, default=1024,
                         help="tokens per chunk of --fused-ce chunked (default 1024)")
    options.add_argument("--compile", nargs="?", const="layers", default=None, choices=("layers", "full"),
                         help="torch.compile each decoder layer (default) or the whole model")
    options.add_argument("--compile-backend", default="inductor",
                         help="torch.compile backend (default inductor; the CPU tests use aot_eager)")
    options.add_argument("--fused-adamw", action="store_true", help="torch.optim.AdamW(fused=True)")
    options.add_argument("--attn", choices=ATTENTION_CHOICES, default="sdpa",
                         help="attention implementation (default sdpa)")
    options.add_argument("--checkpointing", action="store_true", help="activation (gradient) checkpointing")
    options.add_argument("--lora", action="store_true", help="LoRA adapters (helpers.lora) instead of full-parameter")
    options.add_argument("--peak-tflops", type=float, default=None,
                         help="the card's dense bf16 peak for MFU (default: looked up from the device name)")
    matrix = parser.add_argument_group("several option sets in one run")
    matrix.add_argument("--matrix", action="store_true",
                        help="run each option set of --matrix-set (default: DEFAULT_MATRIX), one after another")
    matrix.add_argument("--matrix-set", action="append", default=None, metavar="OPTIONS",
                        help='one option set, e.g. "--batch-size 8 --fused-ce" (repeat; a single flag: --matrix-set=--fused-ce)')
    matrix.add_argument("--best-batch", type=int, default=64,
                        help="the batch size {best} stands for in DEFAULT_MATRIX (default 64)")
    matrix.add_argument("--time-budget", type=float, default=None,
                        help="seconds: option sets not started by then are skipped (reported; the first always runs)")
    return parser


def parse_args(argv=None, raise_errors: bool = False) -> argparse.Namespace:
    """The options; a bad one exits with a usage message (or raises :class:`OptionError`)."""
    parser = build_parser()
    parser.raise_errors = raise_errors
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(args.device)
    if args.precision is None:
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        args.precision = "autocast-bf16" if bf16_ok else "fp32"
    for name in ("seq_len", "batch_size", "steps", "ce_chunk_tokens", "best_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup_steps < 0:
        parser.error("--warmup-steps must be at least 0")
    if args.matrix_set and not args.matrix:
        parser.error("--matrix-set needs --matrix")
    if args.fused_ce == "liger" and (reason := liger_unavailable_reason(device)):
        parser.error(f"--fused-ce liger: {reason}; --fused-ce chunked runs anywhere")
    args.fused_ce_note = None
    if args.fused_ce == "auto":
        args.fused_ce_note = liger_unavailable_reason(device)  # why auto fell back to chunked, if it did
        args.fused_ce = "chunked" if args.fused_ce_note else "liger"
    if args.attn == "flash_attention_2" and not transformers.utils.is_flash_attn_2_available():
        parser.error("--attn flash_attention_2: the flash_attn package is not installed (or has no kernel "
                     "for this device); sdpa uses PyTorch's own flash kernel on a GPU")
    if args.attn == "flex_attention" and not transformers.utils.is_torch_flex_attn_available():
        parser.error("--attn flex_attention: this PyTorch has no flex attention")
    if args.lora and importlib.util.find_spec("helpers.lora") is None:
        parser.error("--lora: helpers/lora.py (apply_lora) is not in this checkout")
    return args


# ----------------------------------------------------------------------------------------------
# One option set
# ----------------------------------------------------------------------------------------------

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


def peak_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of the card called ``device_name`` (:data:`PEAK_BF16_TFLOPS`), or None."""
    for piece, tflops in PEAK_BF16_TFLOPS:
        if piece.lower() in device_name.lower():
            return tflops
    return None


def flops_per_token(n_params: int, config, seq_len: int, lora: bool = False) -> tuple[int, int]:
    """(model FLOPs per trained token without attention scores, the attention scores' FLOPs).

    6 x parameters (4 with LoRA: no weight gradients for frozen weights); attention scores
    12 x layers x seq_len x hidden (see the module docstring).
    """
    dense = (4 if lora else 6) * n_params
    attention = 12 * config.num_hidden_layers * seq_len * config.hidden_size
    return dense, attention


#: The option set ``helpers.memory.estimate_peak_memory`` models: transformers' own loss over the
#: full logits, sdpa attention, no compilation, no recomputation, every weight trained.
_MODELLED = {"fused_ce": None, "compile": None, "checkpointing": False, "lora": False, "attn": "sdpa"}


def modelled_peak(args: argparse.Namespace, config, n_params: int) -> dict:
    """The peak that ``helpers.memory.estimate_peak_memory`` models for this run, part by part.

    ``None`` for option sets it does not model (the fused loss, compilation and checkpointing
    each change what is alive at the peak).
    """
    if any(getattr(args, key) != value for key, value in _MODELLED.items()):
        return {"modelled_peak_bytes": None, "modelled_peak_parts": None}
    estimate = estimate_peak_memory(config, batch_size=args.batch_size, seq_len=args.seq_len,
                             precision=args.precision, n_params=n_params)
    return {"modelled_peak_bytes": estimate.total, "modelled_peak_parts": dict(estimate.parts)}


def describe_options(args: argparse.Namespace) -> str:
    """The option set in a few words, for the table."""
    parts = [f"b{args.batch_size}"]
    if args.fused_ce:
        parts.append(f"fused-ce:{args.fused_ce}")
    if args.compile:
        parts.append(f"compile:{args.compile}")
    if args.fused_adamw:
        parts.append("fused-adamw")
    if args.attn != "sdpa":
        parts.append(f"attn:{args.attn}")
    if args.checkpointing:
        parts.append("checkpointing")
    if args.lora:
        parts.append("lora")
    if args.precision != "autocast-bf16":
        parts.append(args.precision)
    return " ".join(parts)


def build_model(args: argparse.Namespace, device: torch.device, weight_dtype: torch.dtype):
    """The random-init model of the requested shape, with --attn, --checkpointing, --lora applied."""
    config = TinyQwenConfig().to_qwen2_config() if args.tiny else qwen25_05b_config()
    config._attn_implementation = args.attn
    torch.manual_seed(args.seed)
    with device:  # initialise the weights where they will live (fast on a GPU)
        model = Qwen2ForCausalLM(config)
    model.to(dtype=weight_dtype)
    model.train()
    if args.checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.23
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if args.lora:
        from helpers.lora import apply_lora  # noqa: PLC0415 (optional: checked in parse_args)

        apply_lora(model)  # injects adapters in place and freezes the rest
    return model


def loss_function(model, args: argparse.Namespace):
    """``batch -> loss`` for the option set: the model's own loss, or a fused output layer + CE."""
    if args.fused_ce is None:
        forward = model
        if args.compile == "full":
            forward = torch.compile(model, backend=args.compile_backend)

        def plain(batch):
            return forward(**batch, use_cache=False).loss

        return plain

    body = model.model  # the decoder stack: hidden states, no logits
    if args.compile == "full":
        body = torch.compile(body, backend=args.compile_backend)
    weight = model.lm_head.weight  # the tied embedding
    if args.fused_ce == "liger":
        from liger_kernel.transformers.fused_linear_cross_entropy import (  # noqa: PLC0415
            LigerFusedLinearCrossEntropyLoss,
        )

        liger = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX)

        def ce(hidden, labels):
            return liger(weight, hidden, labels)
    else:
        def ce(hidden, labels):
            return chunked_linear_cross_entropy(hidden, weight, labels, chunk_size=args.ce_chunk_tokens)

    def fused(batch):
        hidden = body(input_ids=batch["input_ids"], use_cache=False).last_hidden_state
        # the shift transformers' loss makes: position t predicts token t + 1
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        labels = batch["labels"][:, 1:].reshape(-1)
        return ce(hidden, labels)

    return fused


def run(args: argparse.Namespace, quiet: bool = False) -> dict:
    """Build, train ``warmup_steps + steps`` steps and measure one option set; return the numbers."""
    say = (lambda *a, **k: None) if quiet else print
    wall_start = time.perf_counter()
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    weight_dtype, autocast_dtype, scheme = PRECISIONS[args.precision]
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls in TF32 (speed; bf16 paths unaffected)

    tokenizer = load_tokenizer()
    model = build_model(args, device, weight_dtype)
    if args.compile == "layers":
        for layer in model.model.layers:
            layer.compile(backend=args.compile_backend)
    n_params = count_parameters(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, fused=True if args.fused_adamw else None)
    estimate = None if args.lora else estimate_training_memory(n_params, scheme)
    batches = packed_batches(tokenizer, args.batch_size, args.seq_len)
    autocast = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else nullcontext
    compute_loss = loss_function(model, args)
    device_name = torch.cuda.get_device_name(device) if on_cuda else (platform.processor() or "cpu")

    say(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B shape'}, {n_params:,} parameters "
        f"({n_trainable:,} trained), random init")
    say(f"device: {device_name}, precision: {args.precision}, attention: {model.config._attn_implementation}")
    say(f"options: {describe_options(args)}; batch {args.batch_size} x {args.seq_len} tokens, "
        f"{args.warmup_steps} warm-up + {args.steps} timed steps")

    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    losses = []

    def step():
        optimizer.zero_grad(set_to_none=True)
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with autocast():
            loss = compute_loss(batch)
        loss.backward()
        optimizer.step()
        return loss.detach()

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

    measured = count_training_state(model, optimizer)  # gradients are still there: zero_grad comes first in step()
    peak = torch.cuda.max_memory_allocated(device) if on_cuda else None
    tokens = args.steps * args.batch_size * args.seq_len
    tokens_per_second = tokens / seconds
    dense_flops, attention_flops = flops_per_token(n_params, model.config, args.seq_len, lora=args.lora)
    peak_tflops = args.peak_tflops or (peak_bf16_tflops(device_name) if on_cuda else None)

    def mfu(flops):
        return None if peak_tflops is None else flops * tokens_per_second / (peak_tflops * 1e12)

    result = {
        "model": "tiny" if args.tiny else "qwen2.5-0.5b-shape",
        "n_params": n_params,
        "n_trainable_params": n_trainable,
        "device": device_name if on_cuda else "cpu",
        "precision": args.precision,
        "options": describe_options(args),
        "fused_ce": args.fused_ce,
        "fused_ce_note": args.fused_ce_note,
        "compile": args.compile,
        "fused_adamw": args.fused_adamw,
        "attn": model.config._attn_implementation,
        "checkpointing": args.checkpointing,
        "lora": args.lora,
        "estimate_scheme": None if args.lora else scheme,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "estimate_bytes": None if estimate is None else estimate.total,
        "measured_state_bytes": measured.total,
        "measured_state_parts": measured.parts,
        "peak_allocated_bytes": peak,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(device) if on_cuda else None,
        "peak_over_state": None if peak is None else peak / measured.total,
        **modelled_peak(args, model.config, n_params),
        "process_max_rss_bytes": process_max_rss_bytes(),  # CPU memory of the whole process
        "seconds": seconds,
        "wall_seconds": time.perf_counter() - wall_start,  # build + warm-up (compilation) + timed steps
        "tokens_per_second": tokens_per_second,
        "flops_per_token": dense_flops,
        "attention_flops_per_token": attention_flops,
        "peak_tflops": peak_tflops,
        "mfu": mfu(dense_flops),
        "mfu_with_attention": mfu(dense_flops + attention_flops),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "tf32_matmul": bool(on_cuda and torch.backends.cuda.matmul.allow_tf32),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if estimate is not None:
        say(f"training state: estimate {estimate.total / GB:.3f} GB ({scheme} rule, "
            f"{estimate.bytes_per_param} bytes/param), counted {measured.total / GB:.3f} GB (tensor by tensor)")
    else:
        say(f"training state: counted {measured.total / GB:.3f} GB (LoRA: the full-parameter rule does not apply)")
    if peak is not None:
        # The peak is NOT "training state + activations": at the peak (early in the backward
        # pass) most gradients do not exist yet, while vocabulary-sized loss tensors and
        # autocast's bf16 weight copies do. So only the ratio is printed, and the breakdown of
        # helpers.memory.estimate_peak_memory where it models this option set.
        say(f"peak allocated {peak / GB:.3f} GB = {peak / measured.total:.2f} x the training state")
        if result["modelled_peak_bytes"] is not None:
            parts = ", ".join(f"{name} {size / GB:.2f}" for name, size in result["modelled_peak_parts"].items())
            say(f"modelled peak {result['modelled_peak_bytes'] / GB:.3f} GB: {parts} (GB)")
    mfu_text = "" if result["mfu"] is None else (
        f", MFU {100 * result['mfu']:.1f} % ({100 * result['mfu_with_attention']:.1f} % with attention scores; "
        f"{peak_tflops:g} TFLOP/s peak)")
    say(f"{tokens_per_second:,.0f} tokens/s ({seconds / args.steps * 1000:.1f} ms/step){mfu_text}, "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    del timed, optimizer, model, compute_loss
    return result


# ----------------------------------------------------------------------------------------------
# Several option sets
# ----------------------------------------------------------------------------------------------

def free_device_memory(device: torch.device) -> None:
    """Drop what the last option set left: compiled graphs, cached allocator blocks, peak statistics."""
    gc.collect()
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def matrix_option_sets(args: argparse.Namespace) -> list[str]:
    sets = args.matrix_set if args.matrix_set else list(DEFAULT_MATRIX)
    return [s.replace("{best}", str(args.best_batch)) for s in sets]


def base_argv(argv: list[str]) -> list[str]:
    """``argv`` without the matrix options: what every option set starts from."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in ("--matrix",):
            continue
        if name in ("--matrix-set", "--best-batch", "--time-budget"):
            skip = "=" not in token
            continue
        out.append(token)
    return out


def format_table(rows: list[dict]) -> str:
    """One line per option set: tokens/s, MFU, peak and training state in GB."""
    def number(value, fmt):
        return "-" if value is None else format(value, fmt)

    header = ("option set", "tokens/s", "MFU %", "MFU+attn %", "peak GB", "state GB", "peak/state", "note")
    lines = [header]
    for row in rows:
        if row.get("error") or row.get("skipped"):
            lines.append((row["option_set"], "-", "-", "-", "-", "-", "-", row.get("error") or row["skipped"]))
            continue
        lines.append((
            row["options"],
            number(row["tokens_per_second"], ",.0f"),
            number(None if row["mfu"] is None else 100 * row["mfu"], ".1f"),
            number(None if row["mfu_with_attention"] is None else 100 * row["mfu_with_attention"], ".1f"),
            number(None if row["peak_allocated_bytes"] is None else row["peak_allocated_bytes"] / GB, ".2f"),
            number(row["measured_state_bytes"] / GB, ".3f"),
            number(row["peak_over_state"], ".2f"),
            "",
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)


def run_matrix(args: argparse.Namespace, argv: list[str]) -> dict:
    """Each option set in turn, in this process, memory freed in between; a table and one JSON line."""
    device = torch.device(args.device)
    start = time.perf_counter()
    rows = []
    for option_set in matrix_option_sets(args):
        elapsed = time.perf_counter() - start
        if args.time_budget is not None and rows and elapsed > args.time_budget:  # the first always runs
            row = {"option_set": option_set, "skipped": f"time budget ({args.time_budget:g} s) spent"}
        else:
            try:
                row_args = parse_args(base_argv(argv) + shlex.split(option_set), raise_errors=True)
            except OptionError as error:
                row = {"option_set": option_set, "error": f"not run: {error}"}
            else:
                try:
                    row = {"option_set": option_set, **run(row_args, quiet=True)}
                except Exception as error:  # one failing option set (out of memory, a compile error) is a row
                    row = {"option_set": option_set, "error": f"{type(error).__name__}: {str(error)[:300]}"}
        free_device_memory(device)
        rows.append(row)
        print("MATRIX_ROW " + json.dumps(row), flush=True)
    print(format_table(rows))
    result = {"matrix": rows, "seconds": time.perf_counter() - start}
    print(json.dumps(result), flush=True)
    return result


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.matrix:
        return run_matrix(args, argv)
    result = run(args)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
