"""How much memory full-parameter training needs: the rule of thumb, and measuring it.

Introduced in notebook 04_full_parameter_training; ``scripts/train_qwen05b_shape.py``
compares the same estimate with a GPU's peak memory.

Full-parameter training with AdamW keeps, for every parameter, the weight itself, its
gradient and AdamW's two running averages (``exp_avg`` and ``exp_avg_sq``): "parameters x
bytes x 4" in the seed's words. How many bytes each copy takes depends on the precision
scheme (:data:`SCHEMES`). Activations (what the forward pass keeps for the backward pass)
come on top and grow with batch size and sequence length, not with the parameter count.

Sizes are in bytes; ``GB`` means 10**9 bytes, as in the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

GB = 10**9

#: Bytes per parameter of each copy that training keeps, per precision scheme.
#:
#: - ``fp32``: everything in 32-bit floats. Also what ``Trainer(bf16=True)`` keeps: that is
#:   autocast, which leaves the weights (the master copy), gradients and AdamW states in
#:   fp32 and only computes in bf16; the bf16 weight copies it makes are temporaries.
#: - ``half``: everything in fp16 or bf16, no fp32 copy at all: the seed's "fp16" line.
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
    """

    n_params: int
    scheme: str
    parts: dict[str, int]  # part name -> bytes

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def bytes_per_param(self) -> int:
        return sum(SCHEMES[self.scheme].values())


@dataclass(frozen=True)
class MeasuredMemory:
    """Bytes of the training state really allocated, counted tensor by tensor.

    Returned by :func:`measure_training_memory` (notebook 04_full_parameter_training).
    """

    parts: dict[str, int]  # "weights", "gradients", "optimizer states" -> bytes
    optimizer_state_bytes: dict[str, int]  # e.g. {"exp_avg": ..., "exp_avg_sq": ..., "step": ...}

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def estimate_training_memory(n_params: int, scheme: str = "fp32") -> MemoryEstimate:
    """The rule of thumb: ``n_params`` x bytes per copy, for each copy that training keeps.

    Introduced in notebook 04_full_parameter_training. ``scheme`` is a key of
    :data:`SCHEMES`. Activations are not included: they depend on the batch, not on the
    parameter count.
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
    """
    return sum(p.numel() for p in model.parameters())  # parameters() skips shared tensors


def count_parameters_on_meta(config: Qwen2Config) -> int:
    """Parameter count of a Qwen2 model of ``config``, built on the ``meta`` device.

    Introduced in notebook 04_full_parameter_training. ``meta`` tensors have a shape but
    no storage, so even a multi-billion-parameter model is "built" instantly and in no
    memory.
    """
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    return count_parameters(model)


def _unique_bytes(tensors) -> int:
    """Bytes of the distinct tensors among ``tensors`` (shared ones counted once)."""
    seen: dict[tuple[int, int], int] = {}
    for tensor in tensors:
        if tensor is None or tensor.device.type == "meta":
            continue
        key = (tensor.data_ptr(), tensor.numel())
        seen[key] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def measure_training_memory(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> MeasuredMemory:
    """Bytes of the weights, gradients and optimizer state that ``model`` and ``optimizer`` hold now.

    Introduced in notebook 04_full_parameter_training. Call it after at least one
    ``optimizer.step()`` (AdamW creates its state lazily, on the first step) and before
    ``zero_grad()`` (which frees the gradients).
    """
    params = list(model.parameters())
    by_key: dict[str, list[torch.Tensor]] = {}
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                by_key.setdefault(key, []).append(value)
    state_bytes = {key: _unique_bytes(tensors) for key, tensors in sorted(by_key.items())}
    return MeasuredMemory(
        parts={
            "weights": _unique_bytes(params),
            "gradients": _unique_bytes(p.grad for p in params),
            "optimizer states": sum(state_bytes.values()),
        },
        optimizer_state_bytes=state_bytes,
    )


def saved_activation_bytes(model: torch.nn.Module, batch: dict) -> int:
    """Bytes of the tensors autograd keeps from one forward pass for the backward pass.

    Introduced in notebook 04_full_parameter_training. These are the "activations" that
    come on top of the training state: they scale with batch size x sequence length (and,
    for the logits, with the vocabulary size). Parameters that autograd also keeps are not
    counted (they are already in the weights), nor are tensors that share storage counted
    twice. The forward pass runs in ``model``'s current mode and no gradients are stored.
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


def plot_estimate_vs_measured(estimate: MemoryEstimate, measured: MeasuredMemory, activations: int | None = None,
                              ax=None, unit: int = 10**6):
    """Grouped bars: the estimate's bytes next to the measured bytes, part by part.

    Introduced in notebook 04_full_parameter_training. ``activations`` (bytes, e.g. from
    :func:`saved_activation_bytes`) adds a measured-only bar: the rule of thumb leaves them
    out. ``unit`` divides the bytes (MB by default). Returns the matplotlib ``Axes``.
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
           label="measured", color="tab:orange")
    labels = list(parts)
    if activations is not None:
        ax.bar([len(parts) + width / 2], [activations / unit], width, color="tab:orange", hatch="//",
               edgecolor="white", label="measured, not in the rule")
        labels.append("activations")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("MB" if unit == 10**6 else f"bytes / {unit}")
    ax.legend()
    return ax
