"""helpers.memory: the "parameters x bytes x 4" rule against the bytes of real tensors."""

import matplotlib

matplotlib.use("Agg")  # no display in tests

import pytest
import torch

from helpers import (
    GB,
    PretrainCollator,
    count_parameters,
    count_parameters_on_meta,
    estimate_training_memory,
    load_model,
    measure_training_memory,
    plot_estimate_vs_measured,
    qwen25_05b_config,
    saved_activation_bytes,
)

TINY_PARAMS = 9_847_360  # the tiny default model (tied embedding counted once)
QWEN25_05B_PARAMS = 494_032_768


def within(measured: int, estimated: int, tolerance: float = 0.02) -> bool:
    return abs(measured - estimated) <= tolerance * estimated


def one_adamw_step(tokenizer, records, dtype=torch.float32, fused=False):
    model = load_model(tokenizer=tokenizer, seed=0).to(dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    model(**PretrainCollator(tokenizer)(records[:2])).loss.backward()
    optimizer.step()
    return model, optimizer


def test_qwen25_05b_count_on_the_meta_device():
    config = qwen25_05b_config()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (896, 24, 14)
    assert (config.num_key_value_heads, config.intermediate_size, config.vocab_size) == (2, 4864, 151936)
    assert config.tie_word_embeddings
    assert count_parameters_on_meta(config) == QWEN25_05B_PARAMS


def test_qwen25_05b_estimates_are_the_seeds_8_and_4_gb():
    fp32 = estimate_training_memory(QWEN25_05B_PARAMS, "fp32")
    half = estimate_training_memory(QWEN25_05B_PARAMS, "half")
    mixed = estimate_training_memory(QWEN25_05B_PARAMS, "mixed")
    assert fp32.total == 16 * QWEN25_05B_PARAMS and f"{fp32.total / GB:.2f}" == "7.90"
    assert half.total == 8 * QWEN25_05B_PARAMS and f"{half.total / GB:.2f}" == "3.95"
    # mixed precision: 2 (weights) + 4 (fp32 master) + 2 (grads) + 8 (fp32 AdamW): no saving
    assert mixed.parts["master weights"] == 4 * QWEN25_05B_PARAMS and mixed.total == fp32.total


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="scheme must be one of"):
        estimate_training_memory(10, "fp8")


@pytest.mark.parametrize("fused", [False, True])
def test_fp32_estimate_within_2_percent_of_measured_after_one_step(tokenizer, records, fused):
    model, optimizer = one_adamw_step(tokenizer, records, fused=fused)
    assert count_parameters(model) == TINY_PARAMS
    measured = measure_training_memory(model, optimizer)
    estimate = estimate_training_memory(count_parameters(model), "fp32")
    assert within(measured.total, estimate.total)
    for part in ("weights", "gradients", "optimizer states"):
        assert within(measured.parts[part], estimate.parts[part]), part
    # the tied embedding/output matrix is one tensor: counted once, not twice
    assert measured.parts["weights"] == 4 * TINY_PARAMS
    assert set(measured.optimizer_state_bytes) == {"exp_avg", "exp_avg_sq", "step"}
    assert measured.optimizer_state_bytes["exp_avg"] == measured.optimizer_state_bytes["exp_avg_sq"] == 4 * TINY_PARAMS


def test_half_estimate_within_2_percent_of_a_bf16_model(tokenizer, records):
    model, optimizer = one_adamw_step(tokenizer, records, dtype=torch.bfloat16)
    measured = measure_training_memory(model, optimizer)
    assert within(measured.total, estimate_training_memory(TINY_PARAMS, "half").total)
    assert not within(measured.total, estimate_training_memory(TINY_PARAMS, "fp32").total)


def test_before_the_first_step_there_is_no_gradient_or_optimizer_state(tokenizer):
    model = load_model(tokenizer=tokenizer, seed=0)
    optimizer = torch.optim.AdamW(model.parameters())
    measured = measure_training_memory(model, optimizer)
    assert measured.parts == {"weights": 4 * TINY_PARAMS, "gradients": 0, "optimizer states": 0}


def test_saved_activations_hold_the_log_probabilities_and_grow_with_the_batch(tokenizer, records):
    model = load_model(tokenizer=tokenizer, seed=0)
    sizes = {}
    for n in (1, 2):
        batch = PretrainCollator(tokenizer)(records[:n])
        rows, cols = batch["input_ids"].shape
        log_probs = rows * cols * model.config.vocab_size * 4
        sizes[n] = saved_activation_bytes(model, batch)
        assert log_probs < sizes[n] < 1.5 * log_probs  # the vocabulary-wide log-softmax dominates
    assert sizes[2] > sizes[1]
    assert all(p.grad is None for p in model.parameters())  # measured without a backward pass


def test_plot_has_an_estimate_and_a_measured_bar_per_part_plus_activations(tokenizer, records):
    import matplotlib.pyplot as plt

    model, optimizer = one_adamw_step(tokenizer, records)
    measured = measure_training_memory(model, optimizer)
    ax = plot_estimate_vs_measured(estimate_training_memory(TINY_PARAMS), measured, activations=5 * 10**6)
    heights = sorted(round(bar.get_height(), 3) for bar in ax.patches)
    assert len(ax.patches) == 2 * 3 + 1
    assert heights[0] == 5.0  # the activations bar, in MB
    assert [t.get_text() for t in ax.get_xticklabels()] == ["weights", "gradients", "optimizer states", "activations"]
    plt.close(ax.figure)
