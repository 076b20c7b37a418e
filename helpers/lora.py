"""LoRA (low-rank adaptation) with ``peft``: wrapping a model, counting and sizing what it trains.

Introduced in notebook 06_lora_vs_full, which compares LoRA with full-parameter SFT on the
tiny model after its pretraining run; ``scripts/train_qwen05b_shape.py`` can wrap the
Qwen2.5-0.5B shape with the same :func:`apply_lora`.

LoRA freezes every weight of the model and adds, next to each targeted ``nn.Linear`` with
weight ``W`` (``out x in``), two small trainable matrices ``A`` (``r x in``) and ``B``
(``out x r``); the layer computes ``W x + (alpha / r) B A x``. ``B`` starts at zero, so the
wrapped model starts out computing exactly what the base model computes. Per targeted layer
that is ``r * (in + out)`` trainable numbers instead of ``in * out``.

Memory follows from what is trainable. A frozen weight has no gradient and no optimizer
state: it costs only its own bytes. Each adapter weight costs what a weight costs in
full-parameter training (notebook 04's rule): itself, its gradient and AdamW's two running
averages. Sizes are in bytes; ``GB`` is 10**9 bytes, as in :mod:`helpers.memory`.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch

#: The seven linear projections of every Qwen2 decoder layer: attention (query, key, value,
#: output) and the SwiGLU MLP (gate, up, down).
QWEN2_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: The four attention projections only.
ATTENTION_PROJECTIONS = QWEN2_PROJECTIONS[:4]

#: Bytes per number of the frozen weights and of the adapter (its weights, gradients, and each
#: of AdamW's two states), per precision scheme of :func:`estimate_lora_training_memory`.
#:
#: - ``fp32``: everything in 32-bit floats.
#: - ``bf16``: the frozen base weights in bf16; the adapter in fp32, because ``peft``'s
#:   ``get_peft_model(..., autocast_adapter_dtype=True)`` (the default) upcasts fp16/bf16
#:   adapter weights to fp32, and their gradients and AdamW states follow their dtype.
LORA_SCHEMES: dict[str, dict[str, int]] = {
    "fp32": {"frozen": 4, "adapter": 4},
    "bf16": {"frozen": 2, "adapter": 4},
}


@dataclass(frozen=True)
class LoraSettings:
    """What :func:`apply_lora` adds to a model (the fields of ``peft.LoraConfig`` the series uses).

    >>> settings = LoraSettings(r=4, target_modules=("q_proj", "v_proj"))
    >>> settings.r, settings.lora_alpha, settings.target_modules
    (4, 16, ('q_proj', 'v_proj'))
    >>> LoraSettings(r=0)
    Traceback (most recent call last):
    ...
    ValueError: LoraSettings.r must be a positive integer, got 0
    """

    r: int = 8  # rank of each update B A: the adapter's width
    lora_alpha: int = 16  # the update is scaled by lora_alpha / r (here 2)
    target_modules: tuple[str, ...] = QWEN2_PROJECTIONS  # names of the nn.Linear layers to adapt
    lora_dropout: float = 0.0  # dropout on the adapter's input; none, as the runs are short
    trainable_token_indices: tuple[int, ...] = ()  # embedding rows trained as well (peft's
    #   TrainableTokens: a trainable copy of just these rows; with tied embeddings the output
    #   layer uses the same rows), e.g. (151645,) for <|im_end|>
    token_layers: tuple[str, ...] = ()  # where those rows are trained. Empty: peft's list form, the
    #   input embedding only, which reaches the output layer only through tied weights (peft 0.21.2,
    #   set_additional_trainable_modules). On an untied model (Qwen2.5-7B and up) name both,
    #   ("embed_tokens", "lm_head"), or the output row that scores the token stays frozen

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoraSettings.r must be a positive integer, got {self.r!r}")
        if not self.target_modules:
            raise ValueError("LoraSettings.target_modules is empty: name at least one nn.Linear to adapt")
        if isinstance(self.target_modules, str):
            raise ValueError("LoraSettings.target_modules must be a tuple of module names, not one string")
        if isinstance(self.token_layers, str):
            raise ValueError("LoraSettings.token_layers must be a tuple of module names, not one string")
        if self.token_layers and not self.trainable_token_indices:
            raise ValueError("LoraSettings.token_layers names layers but trainable_token_indices is empty")

    def to_peft_config(self):
        """The equivalent ``peft.LoraConfig`` for a causal LM.

        >>> config = LoraSettings().to_peft_config()
        >>> config.r, config.lora_alpha, config.task_type, sorted(config.target_modules)[:3]
        (8, 16, 'CAUSAL_LM', ['down_proj', 'gate_proj', 'k_proj'])
        """
        from peft import LoraConfig

        return LoraConfig(
            task_type="CAUSAL_LM",
            r=self.r,
            lora_alpha=self.lora_alpha,
            target_modules=list(self.target_modules),
            lora_dropout=self.lora_dropout,
            trainable_token_indices=self._peft_token_indices(),
        )

    def _peft_token_indices(self):
        """``trainable_token_indices`` as peft takes it: a list (the input embedding), or a dict per layer."""
        if not self.trainable_token_indices:
            return None
        if self.token_layers:
            return {layer: list(self.trainable_token_indices) for layer in self.token_layers}
        return list(self.trainable_token_indices)

    def describe(self) -> str:
        """A short label, e.g. ``r=8, alpha 16, q/k/v/o/gate/up/down``.

        >>> LoraSettings().describe()
        'r=8, alpha 16, q/k/v/o/gate/up/down'
        >>> LoraSettings(r=4, target_modules=("q_proj", "v_proj"), trainable_token_indices=(151645,)).describe()
        'r=4, alpha 16, q/v + rows 151645'
        """
        names = "/".join(name.removesuffix("_proj") for name in self.target_modules)
        text = f"r={self.r}, alpha {self.lora_alpha}, {names}"
        if self.trainable_token_indices:
            text += " + rows " + ",".join(str(i) for i in self.trainable_token_indices)
        if self.token_layers:
            text += " of " + "/".join(self.token_layers)
        return text


@contextmanager
def _quiet_peft_wrapping():
    """``PeftModel.__init__`` in peft 0.21.2 reads ``model.is_gradient_checkpointing``, which
    transformers 5.23 deprecated (a ``FutureWarning`` on every wrap, see
    ``peft/peft_model.py``). The wrap itself is unaffected; only that one warning is hidden."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def targeted_linears(model: torch.nn.Module, settings: LoraSettings) -> dict[str, torch.nn.Linear]:
    """The ``nn.Linear`` layers of ``model`` that ``settings.target_modules`` names (by last name part).

    Introduced in notebook 06_lora_vs_full. Raises ``ValueError`` naming any target that
    matches no linear layer, instead of letting a typo adapt nothing.

    >>> from helpers import load_model
    >>> layers = targeted_linears(load_model(), LoraSettings())
    >>> len(layers), sorted(layers)[0]  # 7 projections x 2 layers of the tiny model
    (14, 'model.layers.0.mlp.down_proj')
    >>> targeted_linears(load_model(), LoraSettings(target_modules=("q_prj",)))
    Traceback (most recent call last):
    ...
    ValueError: LoraSettings.target_modules names no nn.Linear of this model: ['q_prj']
    """
    found = {
        name: module for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in settings.target_modules
    }
    matched = {name.rsplit(".", 1)[-1] for name in found}
    missing = [target for target in settings.target_modules if target not in matched]
    if missing:
        raise ValueError(f"LoraSettings.target_modules names no nn.Linear of this model: {missing}")
    return found


def expected_lora_parameters(model: torch.nn.Module, settings: LoraSettings) -> int:
    """Trainable numbers ``settings`` adds to ``model``, from the shapes alone.

    Introduced in notebook 06_lora_vs_full: ``r * (in + out)`` per targeted linear layer
    (A is ``r x in``, B is ``out x r``), plus one embedding row (``hidden_size`` numbers) per
    trainable token index, times the layers of ``token_layers`` on an untied model (peft trains one
    shared copy when the weights are tied or ``token_layers`` is empty). Compare with
    :func:`count_trainable_parameters` after wrapping.

    >>> from helpers import load_model
    >>> model = load_model()
    >>> expected_lora_parameters(model, LoraSettings())
    22528
    >>> expected_lora_parameters(model, LoraSettings(r=4, target_modules=("q_proj", "v_proj")))
    1792
    """
    total = sum(settings.r * (layer.in_features + layer.out_features)
                for layer in targeted_linears(model, settings).values())
    if settings.trainable_token_indices:
        output = model.get_output_embeddings()
        tied = output is not None and output.weight is model.get_input_embeddings().weight
        copies = len(settings.token_layers) if settings.token_layers and not tied else 1  # tied: one shared copy
        total += copies * len(settings.trainable_token_indices) * model.get_input_embeddings().embedding_dim
    return total


def apply_lora(model: torch.nn.Module, settings: LoraSettings = LoraSettings()):
    """Freeze ``model`` and add LoRA adapters as ``settings`` says; returns the ``peft.PeftModel``.

    Introduced in notebook 06_lora_vs_full; ``scripts/train_qwen05b_shape.py --lora`` uses it
    too. ``model`` is modified in place (its targeted layers are replaced by LoRA layers),
    so wrap a copy when the base must stay untouched. Works on the ``meta`` device.

    >>> from helpers import load_model
    >>> wrapped = apply_lora(load_model(), LoraSettings())
    >>> type(wrapped).__name__, count_trainable_parameters(wrapped)
    ('PeftModelForCausalLM', 22528)
    """
    from peft import get_peft_model

    targeted_linears(model, settings)  # clear error for a target that matches nothing
    with _quiet_peft_wrapping():
        return get_peft_model(model, settings.to_peft_config())


def load_lora_adapter(base_model: torch.nn.Module, directory: str | os.PathLike):
    """``PeftModel.from_pretrained(base_model, directory)``: a saved adapter on top of its base.

    Introduced in notebook 06_lora_vs_full. ``base_model`` must be the model the adapter was
    trained on (the adapter stores only its own weights); it is modified in place. The
    returned model is in eval mode with the adapter frozen (peft's ``is_trainable=False``).

    >>> import tempfile
    >>> from helpers import load_model
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     apply_lora(load_model(), LoraSettings()).save_pretrained(directory)
    ...     loaded = load_lora_adapter(load_model(), directory)
    >>> type(loaded).__name__, count_trainable_parameters(loaded), loaded.training
    ('PeftModelForCausalLM', 0, False)
    """
    from peft import PeftModel

    if not (os.path.isdir(directory) and os.path.isfile(os.path.join(directory, "adapter_config.json"))):
        raise FileNotFoundError(f"{directory}: no adapter_config.json here, not a saved LoRA adapter")
    with _quiet_peft_wrapping():
        return PeftModel.from_pretrained(base_model, directory)


def count_trainable_parameters(model: torch.nn.Module) -> int:
    """Numbers with ``requires_grad=True`` (what the optimizer updates).

    Introduced in notebook 06_lora_vs_full.

    >>> layer = torch.nn.Linear(4, 2)
    >>> count_trainable_parameters(layer)
    10
    >>> _ = layer.bias.requires_grad_(False)
    >>> count_trainable_parameters(layer)
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class LoraMemoryEstimate:
    """Bytes of LoRA's training state under one scheme of :data:`LORA_SCHEMES`.

    Returned by :func:`estimate_lora_training_memory` (notebook 06_lora_vs_full).

    >>> estimate = LoraMemoryEstimate(1000, 10, "fp32", {"frozen weights": 4000, "adapter weights": 40,
    ...                                                  "gradients": 40, "optimizer states": 80})
    >>> estimate.total, estimate.training_state
    (4160, 120)
    """

    n_frozen: int  # numbers that are not trained: no gradient, no optimizer state
    n_trainable: int  # adapter numbers: weight + gradient + AdamW's two states each
    scheme: str
    parts: dict[str, int]  # "frozen weights", "adapter weights", "gradients", "optimizer states" -> bytes

    @property
    def total(self) -> int:
        """Bytes of all the parts together.

        >>> estimate_lora_training_memory(1000, 10).total
        4160
        """
        return sum(self.parts.values())

    @property
    def training_state(self) -> int:
        """Gradients + optimizer states: what training adds on top of the weights.

        >>> estimate_lora_training_memory(1000, 10).training_state
        120
        """
        return self.parts["gradients"] + self.parts["optimizer states"]


def estimate_lora_training_memory(n_frozen: int, n_trainable: int, scheme: str = "fp32") -> LoraMemoryEstimate:
    """Notebook 04's rule applied to LoRA: frozen numbers cost their weight only, trainable ones
    cost weight + gradient + two AdamW states.

    Introduced in notebook 06_lora_vs_full. ``scheme`` is a key of :data:`LORA_SCHEMES`.
    Activations are not included (they depend on the batch; with LoRA the frozen layers still
    keep theirs, since the gradient must flow through them to earlier adapters).

    >>> estimate_lora_training_memory(1000, 10).parts
    {'frozen weights': 4000, 'adapter weights': 40, 'gradients': 40, 'optimizer states': 80}
    >>> estimate_lora_training_memory(1000, 10, "bf16").total
    2160
    """
    if scheme not in LORA_SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(LORA_SCHEMES)}, got {scheme!r}")
    if n_frozen < 0 or n_trainable < 0:
        raise ValueError(f"parameter counts must be >= 0, got n_frozen={n_frozen}, n_trainable={n_trainable}")
    sizes = LORA_SCHEMES[scheme]
    return LoraMemoryEstimate(
        n_frozen=n_frozen,
        n_trainable=n_trainable,
        scheme=scheme,
        parts={
            "frozen weights": n_frozen * sizes["frozen"],
            "adapter weights": n_trainable * sizes["adapter"],
            "gradients": n_trainable * sizes["adapter"],
            "optimizer states": 2 * n_trainable * sizes["adapter"],
        },
    )


@dataclass(frozen=True)
class MeasuredTrainingState:
    """Bytes of the gradients and optimizer state that really exist, tensor by tensor.

    Returned by :func:`measure_training_state` (notebook 06_lora_vs_full).

    >>> state = MeasuredTrainingState(gradients=40, params_with_gradient=2,
    ...                               optimizer_state_bytes={"exp_avg": 40, "exp_avg_sq": 40, "step": 8})
    >>> state.optimizer_states, state.total
    (88, 128)
    """

    gradients: int  # bytes of every .grad tensor of the model's parameters (frozen ones included)
    params_with_gradient: int  # how many parameter tensors have a .grad
    optimizer_state_bytes: dict[str, int]  # state key ("exp_avg", "exp_avg_sq", "step") -> bytes

    @property
    def optimizer_states(self) -> int:
        """Bytes of every optimizer state tensor together.

        >>> MeasuredTrainingState(0, 0, {"exp_avg": 40, "exp_avg_sq": 40}).optimizer_states
        80
        """
        return sum(self.optimizer_state_bytes.values())

    @property
    def total(self) -> int:
        """Gradients + optimizer states.

        >>> MeasuredTrainingState(40, 2, {"exp_avg": 40, "exp_avg_sq": 40}).total
        120
        """
        return self.gradients + self.optimizer_states


def measure_training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> MeasuredTrainingState:
    """Count the gradient tensors of *all* of ``model``'s parameters and every tensor in
    ``optimizer.state``, each distinct tensor once.

    Introduced in notebook 06_lora_vs_full. It does not use ``requires_grad`` or the estimate:
    a frozen weight that still got a gradient, or optimizer state for it, would show up here.
    Call it after ``optimizer.step()`` (AdamW creates its state on the first step) and before
    ``zero_grad()`` (which frees the gradients). These are tensor sizes, not allocator
    statistics: allocator overhead and temporaries are not included.

    >>> layer = torch.nn.Linear(4, 2)  # 10 fp32 numbers: 40 bytes
    >>> optimizer = torch.optim.AdamW(layer.parameters())
    >>> layer(torch.ones(1, 4)).sum().backward()
    >>> optimizer.step()
    >>> state = measure_training_state(layer, optimizer)
    >>> state.gradients, state.params_with_gradient, state.optimizer_state_bytes["exp_avg"]
    (40, 2, 40)
    """
    def unique_bytes(tensors) -> int:
        seen = {(t.data_ptr(), t.numel(), t.dtype): t.numel() * t.element_size() for t in tensors}
        return sum(seen.values())

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    by_key: dict[str, list[torch.Tensor]] = {}
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                by_key.setdefault(key, []).append(value)
    return MeasuredTrainingState(
        gradients=unique_bytes(grads),
        params_with_gradient=len(grads),
        optimizer_state_bytes={key: unique_bytes(tensors) for key, tensors in sorted(by_key.items())},
    )


def lora_parameter_counts_on_meta(config, settings: LoraSettings = LoraSettings(), dtype=torch.float32) -> tuple[int, int]:
    """``(frozen, trainable)`` parameter counts of a Qwen2 model of ``config`` wrapped by :func:`apply_lora`.

    Introduced in notebook 06_lora_vs_full. The model is built on the ``meta`` device (shapes,
    no storage), so this works for Qwen2.5-0.5B's shape without its weights. ``dtype`` is the
    base weights' dtype; the returned counts do not depend on it.

    >>> from helpers.model import TinyQwenConfig
    >>> lora_parameter_counts_on_meta(TinyQwenConfig().to_qwen2_config())
    (9847360, 22528)
    """
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(config).to(dtype)
    wrapped = apply_lora(model, settings)
    trainable = count_trainable_parameters(wrapped)
    total = sum(p.numel() for p in wrapped.parameters())
    return total - trainable, trainable
