"""helpers.lora: the trainable-count formula, merging, the adapter round trip, the memory rule."""

import copy

import pytest
import torch

from helpers import (
    ATTENTION_PROJECTIONS,
    GB,
    LoraSettings,
    PretrainCollator,
    apply_lora,
    count_trainable_parameters,
    estimate_lora_training_memory,
    expected_lora_parameters,
    load_lora_adapter,
    load_model,
    lora_parameter_counts_on_meta,
    measure_training_state,
    qwen25_05b_config,
)

TINY_PARAMS = 9_847_360  # the tiny default model (tied embedding counted once)
QWEN25_05B_PARAMS = 494_032_768
IM_END = 151645


@pytest.fixture(scope="module")
def base(tokenizer):
    return load_model(None, tokenizer, seed=0)


def with_random_adapter(model, settings, seed=1):
    """A wrapped copy whose B matrices are not zero (a fresh adapter computes exactly the base)."""
    wrapped = apply_lora(copy.deepcopy(model), settings)
    torch.manual_seed(seed)
    for name, parameter in wrapped.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.05)
    return wrapped.eval()


@pytest.mark.parametrize("settings, expected", [
    # tiny model: hidden 64, 2 KV heads of 16 (k/v out 32), MLP 256, 2 layers
    # per layer r * [(64+64) q + (64+32) k + (64+32) v + (64+64) o + 3 x (64+256) MLP] = r * 1408
    (LoraSettings(r=8, lora_alpha=16), 8 * 1408 * 2),
    (LoraSettings(r=1, lora_alpha=2), 1408 * 2),
    (LoraSettings(r=8, target_modules=ATTENTION_PROJECTIONS), 8 * (128 + 96 + 96 + 128) * 2),
    (LoraSettings(r=8, trainable_token_indices=(151644, IM_END)), 8 * 1408 * 2 + 2 * 64),
    # tied: naming both layers still trains one shared copy of the rows
    (LoraSettings(r=8, trainable_token_indices=(151644, IM_END), token_layers=("embed_tokens", "lm_head")),
     8 * 1408 * 2 + 2 * 64),
])
def test_trainable_count_is_r_times_in_plus_out(base, settings, expected):
    assert expected_lora_parameters(base, settings) == expected
    wrapped = apply_lora(copy.deepcopy(base), settings)
    assert count_trainable_parameters(wrapped) == expected
    assert sum(p.numel() for p in wrapped.parameters()) == TINY_PARAMS + expected


def test_issue_numbers_r8_all_seven():
    assert expected_lora_parameters(load_model(), LoraSettings()) == 22_528  # 0.23 % of the tiny model
    assert f"{22_528 / (TINY_PARAMS + 22_528):.2%}" == "0.23%"


def test_bad_settings_are_refused(base):
    with pytest.raises(ValueError, match="names no nn.Linear"):
        apply_lora(copy.deepcopy(base), LoraSettings(target_modules=("q_proj", "qproj")))
    with pytest.raises(ValueError, match="positive integer"):
        LoraSettings(r=0)
    with pytest.raises(ValueError, match="not one string"):
        LoraSettings(target_modules="q_proj")


def test_a_fresh_adapter_changes_nothing(base):
    ids = torch.tensor([[151644, 872, 198, 100, 200, IM_END]])
    wrapped = apply_lora(copy.deepcopy(base), LoraSettings()).eval()
    with torch.no_grad():
        assert torch.equal(wrapped(ids).logits, base.eval()(ids).logits)  # B starts at zero


def test_merge_gives_the_same_logits_and_greedy_tokens(base):
    ids = torch.tensor([[151644, 872, 198, 100, 200, IM_END]])
    wrapped = with_random_adapter(base, LoraSettings())
    with torch.no_grad():
        adapted = wrapped(ids).logits
        unmerged_base = base.eval()(ids).logits
        merged = wrapped.merge_and_unload()
        merged_logits = merged(ids).logits
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert (adapted - unmerged_base).abs().max() > 0.1  # the adapter does change the output
    assert torch.allclose(merged_logits, adapted, atol=1e-4, rtol=0)
    assert torch.equal(merged_logits.argmax(-1), adapted.argmax(-1))


def test_adapter_round_trip(base, tmp_path):
    ids = torch.tensor([[151644, 872, 198, 100, 200, IM_END]])
    settings = LoraSettings(r=4, lora_alpha=8, trainable_token_indices=(IM_END,))
    wrapped = with_random_adapter(base, settings)
    wrapped.save_pretrained(tmp_path)
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    # the adapter file holds the adapter only: 4 bytes per trainable number plus a small header
    n_bytes = (tmp_path / "adapter_model.safetensors").stat().st_size
    assert 4 * count_trainable_parameters(wrapped) <= n_bytes < 4 * count_trainable_parameters(wrapped) + 10_000
    reloaded = load_lora_adapter(copy.deepcopy(base), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, wrapped(ids).logits)
    assert count_trainable_parameters(reloaded) == 0  # reloaded for inference: frozen


def test_loading_from_a_wrong_directory_names_it(base, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora_adapter(copy.deepcopy(base), tmp_path)


def test_lora_memory_estimate_vs_measured(tokenizer, records, base):
    """One AdamW step: gradients and optimizer state exist for the adapter only, as estimated."""
    settings = LoraSettings()
    wrapped = apply_lora(copy.deepcopy(base), settings).train()
    optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-3)
    wrapped(**PretrainCollator(tokenizer)(records[:2])).loss.backward()
    optimizer.step()
    measured = measure_training_state(wrapped, optimizer)
    n_trainable = count_trainable_parameters(wrapped)
    estimate = estimate_lora_training_memory(TINY_PARAMS, n_trainable, "fp32")
    assert measured.params_with_gradient == 2 * 2 * 7  # A and B of 7 projections in 2 layers
    assert measured.gradients == estimate.parts["gradients"] == 4 * 22_528
    assert measured.optimizer_state_bytes["exp_avg"] == measured.optimizer_state_bytes["exp_avg_sq"] == 4 * 22_528
    assert abs(measured.total - estimate.training_state) <= 0.02 * estimate.training_state
    # AdamW's step counters, which the rule leaves out: one 4-byte scalar per trained tensor (notebook 06, section 6)
    assert measured.optimizer_state_bytes["step"] == 4 * 28
    assert measured.total == estimate.training_state + measured.optimizer_state_bytes["step"]


def test_measurement_sees_a_frozen_weight_that_got_a_gradient(tokenizer, records, base):
    """The measurement can disagree with the estimate: it counts every .grad, not what should exist."""
    wrapped = apply_lora(copy.deepcopy(base), LoraSettings()).train()
    embedding = wrapped.get_input_embeddings().weight
    embedding.requires_grad_(True)  # a mistake: the frozen embedding now trains
    optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-3)
    wrapped(**PretrainCollator(tokenizer)(records[:2])).loss.backward()
    optimizer.step()
    measured = measure_training_state(wrapped, optimizer)
    estimate = estimate_lora_training_memory(TINY_PARAMS, 22_528, "fp32")
    assert measured.total > 10 * estimate.training_state


def test_qwen25_05b_lora_estimate():
    frozen, trainable = lora_parameter_counts_on_meta(qwen25_05b_config(), LoraSettings())
    # per layer 8 * [(896+896) x 2 + (896+128) x 2 + (896+4864) x 3] = 183,296; 24 layers
    assert (frozen, trainable) == (QWEN25_05B_PARAMS, 24 * 183_296)
    fp32 = estimate_lora_training_memory(frozen, trainable, "fp32")
    bf16 = estimate_lora_training_memory(frozen, trainable, "bf16")
    assert f"{fp32.total / GB:.2f}" == "2.05" and f"{bf16.total / GB:.2f}" == "1.06"
    assert bf16.parts["frozen weights"] == 2 * QWEN25_05B_PARAMS
    assert bf16.parts["optimizer states"] == fp32.parts["optimizer states"] == 8 * trainable


def test_bf16_base_gets_fp32_adapters():
    """The premise of LORA_SCHEMES['bf16']: peft upcasts a bf16 model's adapter to fp32."""
    with torch.device("meta"):
        from transformers import Qwen2ForCausalLM

        model = Qwen2ForCausalLM(qwen25_05b_config()).to(torch.bfloat16)
    wrapped = apply_lora(model, LoraSettings(r=2))
    dtypes = {p.dtype for p in wrapped.parameters() if p.requires_grad}
    frozen = {p.dtype for p in wrapped.parameters() if not p.requires_grad}
    assert dtypes == {torch.float32} and frozen == {torch.bfloat16}


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="scheme must be one of"):
        estimate_lora_training_memory(10, 1, "fp8")


# --- trainable_token_indices reaches the output layer only through tied weights (notebook 06) ---

def _untied_tiny_model():
    import dataclasses

    from transformers import Qwen2ForCausalLM

    from helpers.model import TinyQwenConfig

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(dataclasses.replace(TinyQwenConfig(), tie_word_embeddings=False).to_qwen2_config())
    assert model.lm_head.weight is not model.get_input_embeddings().weight
    return model


def _trainable_names(wrapped):
    return sorted(name for name, p in wrapped.named_parameters() if p.requires_grad and "lora_" not in name)


def test_trainable_tokens_reach_the_tied_output_layer(base):
    from peft.utils.other import TrainableTokensWrapper

    wrapped = apply_lora(copy.deepcopy(base), LoraSettings(trainable_token_indices=(151644, IM_END)))
    inner = wrapped.base_model.model
    assert isinstance(inner.lm_head, TrainableTokensWrapper)  # tied to the embedding's rows
    assert _trainable_names(wrapped) == ["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta.default"]


def test_trainable_tokens_leave_an_untied_output_row_frozen(tokenizer):
    """peft 0.21.2 set_additional_trainable_modules: a list of ids wraps the embedding only; the output
    layer is tied to it only when tie_word_embeddings. Untied (Qwen2.5-7B and up), <|im_end|>'s output
    row gets no gradient; naming lm_head as well (a dict) trains it."""
    from peft.utils.other import TrainableTokensWrapper

    ids = torch.tensor([[151644, 872, 198, 100, 200, IM_END]])
    listed = apply_lora(_untied_tiny_model(), LoraSettings(trainable_token_indices=(151644, IM_END)))
    assert type(listed.base_model.model.lm_head) is torch.nn.Linear
    assert not listed.base_model.model.lm_head.weight.requires_grad
    assert all("lm_head" not in name for name in _trainable_names(listed))
    listed(input_ids=ids, labels=ids).loss.backward()  # <|im_end|> is a target: its output row would get a gradient
    assert listed.base_model.model.lm_head.weight.grad is None

    both = LoraSettings(trainable_token_indices=(151644, IM_END), token_layers=("embed_tokens", "lm_head"))
    assert both.to_peft_config().trainable_token_indices == {"embed_tokens": [151644, IM_END], "lm_head": [151644, IM_END]}
    expected = expected_lora_parameters(_untied_tiny_model(), both)
    named = apply_lora(_untied_tiny_model(), both)
    assert isinstance(named.base_model.model.lm_head, TrainableTokensWrapper)
    assert any("lm_head" in name for name in _trainable_names(named))
    named(input_ids=ids, labels=ids).loss.backward()
    lm_head_delta = named.base_model.model.lm_head.token_adapter.trainable_tokens_delta["default"]
    assert lm_head_delta.grad is not None and lm_head_delta.grad.abs().sum() > 0  # the stop's output row trains
    assert count_trainable_parameters(named) == expected == 22_528 + 2 * 2 * 64
    with pytest.raises(ValueError, match="trainable_token_indices is empty"):
        LoraSettings(token_layers=("lm_head",))
