"""The tiny Qwen2 model the series trains by default, and loading a real one.

Introduced in notebook 02_pad_eos_pitfalls (first trained there); notebooks 04 and 05 save
and reload it. The tiny model has Qwen2.5's architecture and Qwen2.5-0.5B's 151,936-row,
tied embedding (1.5B and 3B have the same; Qwen2.5-7B and larger have 152,064 rows and a
separate, untied output matrix) but a 64-wide, 2-layer body: 9.85 M parameters, almost all in
the embedding.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from .settings import check_model_source, load_or_explain
from .tokenizer import FIRST_ADDED_ID


@dataclass(frozen=True)
class TinyQwenConfig:
    """Shape of the default model. Only the body shrinks; vocabulary and conventions are Qwen2.5-0.5B's.

    >>> TinyQwenConfig().hidden_size, TinyQwenConfig(hidden_size=128).hidden_size
    (64, 128)
    """

    vocab_size: int = 151936  # Qwen2.5-0.5B/1.5B/3B's embedding rows (more than the tokenizer's
    #                           151,665 tokens); 7B and larger: 152,064
    hidden_size: int = 64  # Qwen2.5-0.5B: 896
    num_hidden_layers: int = 2  # Qwen2.5-0.5B: 24
    num_attention_heads: int = 4  # Qwen2.5-0.5B: 14
    num_key_value_heads: int = 2  # grouped-query attention, as in Qwen2.5-0.5B (2)
    intermediate_size: int = 256  # SwiGLU width; Qwen2.5-0.5B: 4864
    max_position_embeddings: int = 2048  # the poems are under 60 tokens
    rope_theta: float = 1_000_000.0  # Qwen2.5's rotary base
    rms_norm_eps: float = 1e-6  # Qwen2.5's
    tie_word_embeddings: bool = True  # the output layer reuses the embedding matrix, as in 0.5B-3B
    #                                   (7B and larger untie it: a second vocabulary-sized matrix)
    initializer_range: float = 0.125  # init std, about 1/sqrt(hidden_size). Qwen2.5's 0.02 suits
    #                                   its 896-wide body; at width 64 it starts the logits so
    #                                   flat that memorising the poems takes 3x the steps

    def to_qwen2_config(self) -> Qwen2Config:
        """The transformers config of this shape. It names no ``pad_token_id``, as Qwen2.5-0.5B's
        own ``config.json`` names none: Qwen2's embedding takes ``config.pad_token_id`` as its
        ``padding_idx``, which zeroes that row at init and blocks its input-side gradient, so a
        config with a pad id would build a different model for every choice of pad token.

        >>> config = TinyQwenConfig().to_qwen2_config()
        >>> config.vocab_size, config.num_hidden_layers, config.pad_token_id, config.tie_word_embeddings
        (151936, 2, None, True)
        """
        fields = asdict(self)
        rope_theta = fields.pop("rope_theta")
        return Qwen2Config(
            **fields,
            rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
            bos_token_id=FIRST_ADDED_ID,
            eos_token_id=FIRST_ADDED_ID,
            pad_token_id=None,
        )


def load_model(name_or_path: str | os.PathLike | None = None, tokenizer=None, seed: int = 0):
    """The causal LM the series trains.

    Introduced in notebook 02_pad_eos_pitfalls.

    - ``None``: a tiny random-init Qwen2 model (:class:`TinyQwenConfig`); the same ``seed``
      gives the same weights.
    - a local directory or hub id: ``AutoModelForCausalLM.from_pretrained`` (safetensors,
      no remote code) with ``dtype=torch.float32``. The default, ``dtype="auto"``, would keep
      the dtype the weights are stored in: bf16 for Qwen2.5-0.5B, so weights, gradients and
      AdamW states would all be bf16 and small updates would round away. In fp32 the Trainer's
      ``bf16=True`` (on a GPU) autocasts the matmuls and keeps fp32 master weights. A value that
      cannot work (no such directory, no config or safetensors weights, no hub reachable)
      raises :class:`helpers.settings.ModelSettingError` naming ``PVS_MODEL``.

    The tiny model's weights depend on ``seed`` alone, not on the tokenizer: its config names
    no pad id, so no embedding row is zeroed or frozen (see :meth:`TinyQwenConfig.to_qwen2_config`).
    With a ``tokenizer``, the *generation* config's pad and eos ids follow the tokenizer's, so
    ``generate`` pads and stops consistently with the data; ``model.config.pad_token_id`` is
    left alone, so a saved and reloaded checkpoint builds the same embedding.

    >>> model = load_model(seed=0)
    >>> sum(p.numel() for p in model.parameters())  # 9,723,904 of them are the 151,936 x 64 embedding
    9847360
    >>> torch.equal(model.lm_head.weight, load_model(seed=0).lm_head.weight)  # same seed, same weights
    True
    """
    if name_or_path is None:
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(TinyQwenConfig().to_qwen2_config())
    else:
        local = check_model_source(name_or_path, "model")
        model = load_or_explain(name_or_path, local, "model", AutoModelForCausalLM.from_pretrained,
                                use_safetensors=True, dtype=torch.float32)
    if tokenizer is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
