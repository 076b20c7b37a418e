"""How much memory full-parameter training needs: the rule of thumb, and measuring it.

Introduced in notebook 04_full_parameter_training (the rule of thumb) and its appendix
04_memory_measured (the measurements and the peak); ``scripts/train_qwen05b_shape.py``
compares the estimates with a GPU's peak memory.

Full-parameter training with AdamW keeps, for every parameter, the weight itself, its
gradient and AdamW's two running averages (``exp_avg`` and ``exp_avg_sq``): "parameters x
bytes x 4" in the post's words. How many bytes each copy takes depends on the precision
scheme (:data:`SCHEMES`). :func:`measure_training_memory` checks the rule at the allocator.
Activations (what the forward pass keeps for the backward pass) come on top: they grow with
batch size and sequence length, and with the model's depth, width and vocabulary;
:func:`estimate_peak_memory` models them, and the peak of a training step.

Sizes are in bytes; ``GB`` means 10**9 bytes, as in the post.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

GB = 10**9

#: Bytes per parameter of each copy that training keeps, per precision scheme.
#:
#: - ``fp32``: everything in 32-bit floats. Also what ``Trainer(bf16=True)`` keeps for a
#:   model loaded in fp32: that is autocast, which only computes in bf16 and leaves the
#:   weights, gradients and AdamW states in the model's own dtype; the bf16 weight copies it
#:   makes live until the backward pass has used them. (A model loaded in bf16 would train
#:   under the ``half`` row, autocast or not.)
#: - ``half``: everything in fp16 or bf16, no fp32 copy at all: the post's "fp16" line.
#:   Half the memory, but small updates vanish when added to 16-bit weights.
#: - ``mixed``: classic mixed precision: 16-bit weights and gradients for the forward and
#:   backward passes, plus an fp32 master copy of the weights and fp32 AdamW states for the
#:   update. As much as fp32 in total: mixed precision saves time and activation memory,
#:   not the memory of the model's training state.
SCHEMES: dict[str, dict[str, int]] = {
    "fp32": {"weights": 4, "gradients": 4, "optimizer states": 8},
    "half": {"weights": 2, "gradients": 2, "optimizer states": 4},
    "mixed": {"weights": 2, "master weights": 4, "gradients": 2, "optimizer states": 8},
}
#: The parts in display order (``master weights`` only exists in the ``mixed`` scheme).
PARTS = ("weights", "master weights", "gradients", "optimizer states")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of the training state (weights, gradients, optimizer) under one precision scheme.

    Returned by :func:`estimate_training_memory` (notebook 04_full_parameter_training).

    >>> estimate = MemoryEstimate(1000, "fp32", {"weights": 4000, "gradients": 4000, "optimizer states": 8000})
    >>> estimate.total, estimate.bytes_per_param
    (16000, 16)
    """

    n_params: int
    scheme: str
    parts: dict[str, int]  # part name -> bytes

    @property
    def total(self) -> int:
        """Bytes of all the parts together.

        >>> estimate_training_memory(1000, "half").total
        8000
        """
        return sum(self.parts.values())

    @property
    def bytes_per_param(self) -> int:
        """Bytes per parameter over all copies: the "x 16" of fp32 and mixed, "x 8" of half.

        >>> [estimate_training_memory(1, scheme).bytes_per_param for scheme in SCHEMES]
        [16, 8, 16]
        """
        return sum(SCHEMES[self.scheme].values())


def estimate_training_memory(n_params: int, scheme: str = "fp32") -> MemoryEstimate:
    """The rule of thumb: ``n_params`` x bytes per copy, for each copy that training keeps.

    Introduced in notebook 04_full_parameter_training. ``scheme`` is a key of
    :data:`SCHEMES`. Activations are not included (see :func:`estimate_peak_memory`).

    >>> estimate_training_memory(1000).parts
    {'weights': 4000, 'gradients': 4000, 'optimizer states': 8000}
    >>> estimate_training_memory(1000, "mixed").parts
    {'weights': 2000, 'master weights': 4000, 'gradients': 2000, 'optimizer states': 8000}
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, got {scheme!r}")
    return MemoryEstimate(
        n_params=n_params,
        scheme=scheme,
        parts={part: n_params * size for part, size in SCHEMES[scheme].items()},
    )


def qwen25_05b_config() -> Qwen2Config:
    """The configuration of Qwen2.5-0.5B (its shape only: weights cannot be downloaded here).

    Introduced in notebook 04_full_parameter_training: hidden size 896, 24 layers, 14
    attention heads, 2 key/value heads, MLP width 4864, 151,936 embedding rows, tied input
    and output embeddings.

    >>> config = qwen25_05b_config()
    >>> config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.tie_word_embeddings
    (896, 24, 4864, True)
    """
    return Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        max_position_embeddings=32768,
        max_window_layers=24,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151643,
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (a tied embedding counts once).

    Introduced in notebook 04_full_parameter_training.

    >>> count_parameters(torch.nn.Linear(4, 2))
    10
    >>> from helpers import load_model
    >>> count_parameters(load_model())  # the tiny model, its embedding shared with the LM head
    9847360
    """
    return sum(p.numel() for p in model.parameters())  # parameters() skips shared tensors


def count_parameters_on_meta(config: Qwen2Config) -> int:
    """Parameter count of a Qwen2 model of ``config``, built on the ``meta`` device.

    Introduced in notebook 04_full_parameter_training. ``meta`` tensors have a shape but
    no storage, so even a multi-billion-parameter model is "built" instantly and in no
    memory.

    >>> count_parameters_on_meta(qwen25_05b_config())  # Qwen2.5-0.5B: about 0.49 billion
    494032768
    """
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    return count_parameters(model)


@dataclass(frozen=True)
class StateBytes:
    """Bytes of the tensors a model and its optimizer hold, counted tensor by tensor.

    Returned by :func:`count_training_state`. A count, not a measurement: gradients and
    AdamW's averages have their parameter's shape by construction, so this agrees with the
    rule of thumb whatever the rule gets wrong. :func:`measure_training_memory` measures.

    >>> state = StateBytes({"weights": 40, "gradients": 40, "optimizer states": 88},
    ...                    {"exp_avg": 40, "exp_avg_sq": 40, "step": 8})
    >>> state.total
    168
    """

    parts: dict[str, int]  # "weights", "gradients", "optimizer states" -> bytes
    optimizer_state_bytes: dict[str, int]  # e.g. {"exp_avg": ..., "exp_avg_sq": ..., "step": ...}

    @property
    def total(self) -> int:
        """Bytes of all the parts together.

        >>> StateBytes({"weights": 40, "gradients": 40}, {}).total
        80
        """
        return sum(self.parts.values())


def _unique_bytes(tensors) -> int:
    """Bytes of the distinct tensors among ``tensors`` (shared ones counted once)."""
    seen: dict[tuple[int, int], int] = {}
    for tensor in tensors:
        if tensor is None or tensor.device.type == "meta":
            continue
        seen[(tensor.data_ptr(), tensor.numel())] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def count_training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> StateBytes:
    """Bytes of the weights, gradients and optimizer state that ``model`` and ``optimizer`` hold now.

    Not used by the notebooks (notebooks/appendix/04_memory_measured measures with
    :func:`measure_training_memory`); the tests and scripts use it as bookkeeping: it shows
    which tensors there are (AdamW's ``exp_avg``, ``exp_avg_sq`` and its per-tensor ``step``
    counters) but cannot check the rule of thumb (see :class:`StateBytes`). It counts tensors
    on every device: ``scripts/train_qwen05b_shape.py``'s ``measured_state_bytes`` is this
    count, and its 290 ``step`` counters (1,160 bytes for the 0.5B shape) are CPU tensors
    unless AdamW runs fused or capturable, where no CUDA allocator sees them. Call it after
    an ``optimizer.step()`` (AdamW creates its state on the first) and before ``zero_grad()``.

    >>> layer = torch.nn.Linear(4, 2)  # 10 fp32 numbers: 40 bytes
    >>> optimizer = torch.optim.AdamW(layer.parameters())
    >>> layer(torch.ones(1, 4)).sum().backward()
    >>> optimizer.step()
    >>> state = count_training_state(layer, optimizer)
    >>> state.parts
    {'weights': 40, 'gradients': 40, 'optimizer states': 88}
    >>> state.optimizer_state_bytes  # two averages, and one 4-byte step counter per tensor
    {'exp_avg': 40, 'exp_avg_sq': 40, 'step': 8}
    """
    params = list(model.parameters())
    by_key: dict[str, list[torch.Tensor]] = {}
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                by_key.setdefault(key, []).append(value)
    state_bytes = {key: _unique_bytes(tensors) for key, tensors in sorted(by_key.items())}
    return StateBytes(
        parts={
            "weights": _unique_bytes(params),
            "gradients": _unique_bytes(p.grad for p in params),
            "optimizer states": sum(state_bytes.values()),
        },
        optimizer_state_bytes=state_bytes,
    )


#: The phases :func:`measure_training_memory` measures, and the part of the training state
#: each one leaves behind.
PHASES = {"load": "weights", "forward + backward": "gradients", "optimizer step": "optimizer states"}


@dataclass(frozen=True)
class MeasuredMemory:
    """What the allocator handed out during the first training step, phase by phase.

    Returned by :func:`measure_training_memory` (notebooks/appendix/04_memory_measured).
    ``parts[part]`` is the net number of bytes a phase allocated and still holds at its end
    (everything that phase allocated and freed again cancels out): the load leaves the
    weights, forward + backward the gradients, the first optimizer step AdamW's state.
    ``peaks[phase]`` is the most the phase held *above* what existed when it started:
    for forward + backward, the activations and temporaries at their highest.

    >>> measured = MeasuredMemory("by hand", {"weights": 40, "gradients": 40, "optimizer states": 88},
    ...                           {"load": 40, "forward + backward": 60, "optimizer step": 88}, None, None)
    >>> measured.total
    168
    """

    method: str  # how the bytes were measured (see measure_training_memory)
    parts: dict[str, int]  # "weights", "gradients", "optimizer states" -> bytes
    peaks: dict[str, int]  # phase (a key of PHASES) -> highest bytes above its start
    model: torch.nn.Module = field(repr=False, compare=False)  # the model, after its first step
    optimizer: torch.optim.Optimizer = field(repr=False, compare=False)

    @property
    def total(self) -> int:
        """Bytes of all the parts together.

        >>> MeasuredMemory("by hand", {"weights": 40, "gradients": 40}, {}, None, None).total
        80
        """
        return sum(self.parts.values())


@contextmanager
def _stderr_silenced():
    """Send file descriptor 2 to the null device: PyTorch's profiler (Kineto) writes a
    timestamped status line there when it starts and when it stops."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _measure_phases_cpu(phases: dict) -> tuple[dict[str, int], dict[str, int]]:
    """Net bytes and peak bytes of each phase, from the memory events of PyTorch's profiler."""
    from torch.profiler import ProfilerActivity, profile, record_function

    if not torch.autograd.kineto_available():
        raise RuntimeError("measure_training_memory on the CPU needs PyTorch's profiler (Kineto), "
                           "which this PyTorch build lacks")
    profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _stderr_silenced():
        profiler.start()
    try:
        for phase, run in phases.items():
            with record_function(f"measure_training_memory: {phase}"):
                run()
    finally:
        with _stderr_silenced():
            profiler.stop()
    events = profiler.profiler.kineto_results.events()
    spans = {event.name().split(": ", 1)[1]: (event.start_ns(), event.start_ns() + event.duration_ns())
             for event in events if event.name().startswith("measure_training_memory: ")}
    allocations = sorted((event.start_ns(), event.nbytes()) for event in events if event.name() == "[memory]")
    net, peak = {}, {}
    for phase, (start, end) in spans.items():
        held = highest = 0
        for time_ns, n_bytes in allocations:  # positive: allocated, negative: freed
            if start <= time_ns <= end:
                held += n_bytes
                highest = max(highest, held)
        net[phase], peak[phase] = held, highest
    return net, peak


def _measure_phases_cuda(phases: dict, device: torch.device) -> tuple[dict[str, int], dict[str, int]]:
    """Net bytes and peak bytes of each phase, from the CUDA caching allocator's statistics."""
    net, peak = {}, {}
    for phase, run in phases.items():
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)  # the peak restarts from what is allocated now
        run()
        torch.cuda.synchronize(device)
        net[phase] = torch.cuda.memory_allocated(device) - start
        peak[phase] = torch.cuda.max_memory_allocated(device) - start
    return net, peak


def measure_training_memory(build_model, batch: dict, build_optimizer, autocast_dtype=None) -> MeasuredMemory:
    """Measure, at the allocator, what loading a model and its first training step allocate.

    Introduced in notebooks/appendix/04_memory_measured. ``build_model()`` must create the
    model on ``batch``'s device (its allocation is measured); ``build_optimizer(model)``
    creates the optimizer. Then one step: forward and backward (under ``torch.autocast``
    with ``autocast_dtype`` if given), then ``optimizer.step()``. Nothing is counted from
    the model's parameters: the bytes come from the allocator, so a rule of thumb can be
    checked against them (and an extra buffer, a copy, a kept tensor all show up).

    - CUDA: ``torch.cuda.memory_allocated`` before and after each phase and
      ``max_memory_allocated`` during it. The caching allocator rounds every block up to a
      multiple of 512 bytes (``kMinBlockSize``). A block over 10 MiB (``kMinLargeAlloc``) is cut
      from a segment sized in 2 MiB steps (``kRoundLarge``) and keeps the rest of that segment
      when the rest is under 1 MiB (``kSmallSize``); one of 1 to 10 MiB is cut from a shared
      20 MiB segment, one up to 1 MiB from a 2 MiB one (c10/core/AllocatorConfig.h,
      c10/cuda/CUDACachingAllocator.cpp). Memory taken outside it (the CUDA context) is not seen.
    - CPU: the memory events of ``torch.profiler`` (``profile_memory=True``): every
      allocation and free of PyTorch's CPU allocator, to the byte requested. Not seen: what
      libraries (BLAS, oneDNN) or Python allocate by themselves, and malloc's own rounding.

    One step of the tiny model on the CPU (well under a second):

    >>> from helpers import load_model
    >>> batch = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "labels": torch.tensor([[1, 2, 3, 4]])}
    >>> measured = measure_training_memory(load_model, batch, lambda model: torch.optim.AdamW(model.parameters()))
    >>> n = count_parameters(measured.model)
    >>> list(measured.parts), measured.method.startswith("torch.profiler")
    (['weights', 'gradients', 'optimizer states'], True)
    >>> measured.parts["gradients"] >= 4 * n, measured.parts["optimizer states"] >= 8 * n
    (True, True)
    """
    device = batch["input_ids"].device
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"measure_training_memory measures on 'cpu' or 'cuda', not {device.type!r}")
    made: dict = {}

    def load():
        made["model"] = build_model()
        made["optimizer"] = build_optimizer(made["model"])  # AdamW allocates its state lazily, on step()

    def forward_backward():
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = made["model"](**batch).loss
        loss.backward()

    def optimizer_step():
        made["optimizer"].step()

    phases = dict(zip(PHASES, (load, forward_backward, optimizer_step)))
    if device.type == "cuda":
        net, peak = _measure_phases_cuda(phases, device)
        method = "torch.cuda.memory_allocated (CUDA caching allocator)"
    else:
        net, peak = _measure_phases_cpu(phases)
        method = "torch.profiler memory events (PyTorch's CPU allocator)"
    return MeasuredMemory(method=method, parts={part: net[phase] for phase, part in PHASES.items()},
                          peaks=peak, model=made["model"], optimizer=made["optimizer"])


#: ``estimate_peak_memory``'s precisions (the names ``scripts/train_qwen05b_shape.py`` uses):
#: bytes per number of the weights and of each AdamW state, and whether autocast computes in bf16.
PRECISIONS = {
    "fp32": {"bytes": 4, "autocast": False},
    "bf16": {"bytes": 2, "autocast": False},  # weights and AdamW states in bf16, no fp32 copy
    "autocast-bf16": {"bytes": 4, "autocast": True},  # fp32 weights, bf16 matrix products
}


@dataclass(frozen=True)
class PeakMemoryEstimate:
    """The modelled peak of a training step, part by part.

    Returned by :func:`estimate_peak_memory` (notebooks/appendix/04_memory_measured).

    >>> PeakMemoryEstimate("fp32", 2, 16, {"weights": 400, "layer activations": 100}).total
    500
    """

    precision: str  # a key of PRECISIONS
    batch_size: int  # rows per step
    seq_len: int  # tokens per row
    parts: dict[str, int]  # part name -> bytes held at the peak

    @property
    def total(self) -> int:
        """Bytes of all the parts together.

        >>> PeakMemoryEstimate("bf16", 1, 8, {"weights": 200, "optimizer states": 400}).total
        600
        """
        return sum(self.parts.values())


def saved_bytes_per_token_per_layer(config: Qwen2Config, precision: str = "autocast-bf16") -> int:
    """Bytes one decoder layer keeps for the backward pass, per token (sdpa attention, no
    ``attention_mask``: rows without padding).

    Introduced in notebooks/appendix/04_memory_measured; counted from Qwen2's code in
    transformers 5 and pinned by a test against :func:`saved_activation_bytes`. Per layer:
    two RMSNorms (each keeps its fp32 input and normalised values, and its output where a
    layer reads it), the attention's query, key and value after RoPE (key and value at the
    key/value heads' width: no repetition without a mask), its output and the softmax's log-sum-exp, and the
    MLP's four intermediate tensors of width ``intermediate_size``. Under autocast each of the
    five projections reading a norm's fp32 output also keeps its own bf16 copy of it.

    >>> from helpers.model import TinyQwenConfig
    >>> config = TinyQwenConfig().to_qwen2_config()
    >>> saved_bytes_per_token_per_layer(config, "fp32"), saved_bytes_per_token_per_layer(config)
    (6424, 4112)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    hidden, mlp = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    lse = 4 * config.num_attention_heads  # one fp32 log-sum-exp per head
    if precision == "fp32":
        return 32 * hidden + 8 * kv + 16 * mlp + lse + 8
    if precision == "bf16":
        return 20 * hidden + 4 * kv + 8 * mlp + lse + 8
    return 30 * hidden + 4 * kv + 8 * mlp + lse


def estimate_peak_memory(config: Qwen2Config, batch_size: int, seq_len: int, precision: str = "autocast-bf16",
                         n_params: int | None = None, optimizer_states: bool = True) -> PeakMemoryEstimate:
    """Model of the peak allocated memory of one full-parameter AdamW step, for a Qwen2 shape.

    Introduced in notebooks/appendix/04_memory_measured; ``scripts/train_qwen05b_shape.py``
    prints it beside the GPU's measured peak. Rows of ``seq_len`` tokens without padding,
    sdpa attention, the loss computed by transformers (which upcasts the logits to fp32),
    ``zero_grad(set_to_none=True)`` before the step. The peak comes early in the backward
    pass, in the cross-entropy's backward, when:

    - the weights and AdamW's two averages exist (``optimizer_states=False``: the first
      step, before AdamW has created them); **no gradients yet**: they appear layer by
      layer as the backward pass goes on, and the activations it frees are larger;
    - three fp32 tensors of batch x length x vocabulary coexist: the log-probabilities the
      loss saved, their gradient, and the gradient of the logits being computed;
    - every layer's saved activations are still there
      (:func:`saved_bytes_per_token_per_layer`), plus the final norm's, the LM head's input,
      the targets and RoPE's cos/sin;
    - under autocast, the bf16 copies of the weights that the matrix products saved.

    ``n_params`` defaults to the count of ``config`` built on the meta device. Not modelled:
    memory that kernels or libraries hold outside the autograd graph (on the H200 log of the
    tiny model, about 0.07 GB), and the allocator's rounding.

    >>> from helpers.model import TinyQwenConfig
    >>> peak = estimate_peak_memory(TinyQwenConfig().to_qwen2_config(), batch_size=2, seq_len=16, precision="fp32")
    >>> peak.parts["weights"], peak.parts["gradients"], peak.parts["layer activations"]
    (39389440, 0, 411136)
    >>> peak.total
    176950144
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be at least 1, got {batch_size} and {seq_len}")
    n_params = count_parameters_on_meta(config) if n_params is None else n_params
    size = PRECISIONS[precision]["bytes"]
    autocast = PRECISIONS[precision]["autocast"]
    hidden, layers = config.hidden_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    tokens = batch_size * seq_len
    norm_params = (2 * layers + 1) * hidden
    untied_embedding = 0 if config.tie_word_embeddings else config.vocab_size * hidden  # a lookup, not a product
    # per token: the final norm's (and the LM head's input), the int64 input ids the embedding
    # keeps and the int64 targets the loss keeps
    final = {"fp32": 12 * hidden + 4, "bf16": 8 * hidden + 4, "autocast-bf16": 10 * hidden + 4}[precision] + 16
    rope = 2 * seq_len * head_dim * (2 if precision == "bf16" else 4)  # cos and sin, shared by the rows
    parts = {
        "weights": size * n_params,
        "gradients": 0,
        "optimizer states": 2 * size * n_params if optimizer_states else 0,
    }
    if autocast:
        parts["bf16 weight copies"] = 2 * (n_params - norm_params - untied_embedding)
    parts["3 fp32 vocabulary-sized tensors"] = 3 * tokens * config.vocab_size * 4
    parts["layer activations"] = tokens * layers * saved_bytes_per_token_per_layer(config, precision)
    parts["other activations"] = tokens * final + rope
    return PeakMemoryEstimate(precision=precision, batch_size=batch_size, seq_len=seq_len, parts=parts)


def saved_activation_bytes(model: torch.nn.Module, batch: dict) -> int:
    """Bytes of the tensors autograd keeps from one forward pass for the backward pass.

    Introduced in notebooks/appendix/04_memory_measured. These are the "activations" that
    come on top of the training state: they grow with the batch size and the sequence length
    (linearly in the length with sdpa attention on rows without padding), and with the
    model's depth, width and vocabulary size. With a padding ``attention_mask``, transformers
    passes one bool (batch, 1, length, length) mask to every layer; on a CPU, PyTorch's SDPA
    kernel converts it to a float copy in each layer, which autograd keeps. transformers also
    repeats the keys and values to every query head instead of the key/value heads' own (it
    calls ``repeat_kv`` when a mask is present: ``use_gqa_in_sdpa``); eager attention keeps
    length x length scores per head. Parameters that autograd also keeps are not counted (they are
    already in the weights), nor are tensors that share storage counted twice. The forward pass runs in ``model``'s current mode and no gradients are stored.

    >>> layer = torch.nn.Linear(4, 2)
    >>> saved_activation_bytes(layer, {"input": torch.ones(3, 4)})  # its fp32 input, 3 x 4 x 4 bytes
    48
    """
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in param_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(**batch)
    del output  # frees the graph (and what it saved) without a backward pass
    return sum(saved.values())


def plot_estimate_vs_measured(estimate: MemoryEstimate, measured: MeasuredMemory, ax=None, unit: int = 10**6):
    """Grouped bars: the rule's bytes next to the allocator's, part by part, plus the peak.

    Introduced in notebooks/appendix/04_memory_measured. A last, measured-only bar is the
    peak that forward + backward held above the weights (``measured.peaks``): activations and
    temporaries, which the rule leaves out. ``unit`` divides the bytes (MB by default).
    Returns the matplotlib ``Axes``.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> estimate = estimate_training_memory(10)
    >>> measured = MeasuredMemory("by hand", {"weights": 40, "gradients": 40, "optimizer states": 88},
    ...                           {"load": 40, "forward + backward": 60, "optimizer step": 88}, None, None)
    >>> ax = plot_estimate_vs_measured(estimate, measured, unit=1)
    >>> len(ax.containers), [t.get_text() for t in ax.get_xticklabels()][:3]
    (3, ['weights', 'gradients', 'optimizer states'])
    >>> plt.close(ax.figure)
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.8))
    parts = [p for p in PARTS if p in estimate.parts or p in measured.parts]
    width = 0.38
    xs = list(range(len(parts)))
    ax.bar([x - width / 2 for x in xs], [estimate.parts.get(p, 0) / unit for p in parts], width,
           label=f"estimate ({estimate.scheme} rule)", color="tab:blue")
    ax.bar([x + width / 2 for x in xs], [measured.parts.get(p, 0) / unit for p in parts], width,
           label="measured (allocator)", color="tab:orange")
    ax.bar([len(parts) + width / 2], [measured.peaks["forward + backward"] / unit], width, color="tab:orange",
           hatch="//", edgecolor="white", label="measured, not in the rule")
    ax.set_xticks(range(len(parts) + 1), [*parts, "forward + backward\npeak"])
    ax.set_ylabel("MB" if unit == 10**6 else f"bytes / {unit}")
    ax.legend()
    return ax
