"""helpers.memory: the "parameters x bytes x 4" rule against the allocator, and the model of the peak."""

import matplotlib

matplotlib.use("Agg")  # no display in tests

import json
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from helpers import (
    GB,
    TinyQwenConfig,
    PretrainCollator,
    count_parameters,
    count_parameters_on_meta,
    count_training_state,
    estimate_peak_memory,
    estimate_training_memory,
    load_model,
    measure_training_memory,
    plot_estimate_vs_measured,
    qwen25_05b_config,
    saved_activation_bytes,
)

TINY_PARAMS = 9_847_360  # the tiny default model (tied embedding counted once)
QWEN25_05B_PARAMS = 494_032_768
ROOT = Path(__file__).resolve().parent.parent


def within(measured: int, estimated: int, tolerance: float = 0.02) -> bool:
    return abs(measured - estimated) <= tolerance * estimated


def test_qwen25_05b_count_on_the_meta_device():
    config = qwen25_05b_config()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (896, 24, 14)
    assert (config.num_key_value_heads, config.intermediate_size, config.vocab_size) == (2, 4864, 151936)
    assert config.tie_word_embeddings
    assert count_parameters_on_meta(config) == QWEN25_05B_PARAMS


def test_qwen25_05b_estimates_are_the_posts_8_and_4_gb():
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


def adamw(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)


@pytest.fixture(scope="module")
def measured_tiny(tokenizer, records):
    batch = PretrainCollator(tokenizer)(records[:2])
    return measure_training_memory(lambda: load_model(tokenizer=tokenizer, seed=0), batch, adamw), batch


def test_allocator_measurement_agrees_with_the_fp32_rule_to_0_01_percent(measured_tiny):
    measured, _ = measured_tiny
    estimate = estimate_training_memory(TINY_PARAMS, "fp32")
    assert "profiler" in measured.method  # on the CPU: the profiler's allocation events
    for part in ("weights", "gradients", "optimizer states"):
        assert within(measured.parts[part], estimate.parts[part], 1e-4), part
    # what the rule leaves out, to the byte: RoPE's two buffers of 8 fp32 inverse
    # frequencies, and AdamW's fp32 step counter per parameter tensor (26 of them)
    assert measured.parts["weights"] - estimate.parts["weights"] == 2 * 8 * 4
    assert measured.parts["gradients"] == estimate.parts["gradients"]
    assert measured.parts["optimizer states"] - estimate.parts["optimizer states"] == 26 * 4
    assert count_training_state(measured.model, measured.optimizer).optimizer_state_bytes["step"] == 26 * 4


def test_the_measurement_sees_what_the_rule_does_not(tokenizer, records):
    """An extra buffer in the model and a kept copy of every gradient both show up."""
    batch = PretrainCollator(tokenizer)(records[:2])

    def model_with_extras():
        model = load_model(tokenizer=tokenizer, seed=0)
        model.register_buffer("scratch", torch.zeros(250_000))  # 1 MB the rule does not know of
        kept = []
        for p in model.parameters():
            p.register_post_accumulate_grad_hook(lambda p: kept.append(p.grad.clone()))
        return model

    measured = measure_training_memory(model_with_extras, batch, adamw)
    estimate = estimate_training_memory(TINY_PARAMS, "fp32")
    assert measured.parts["weights"] - estimate.parts["weights"] == 10**6 + 2 * 8 * 4
    assert measured.parts["gradients"] == 2 * estimate.parts["gradients"]  # the copies doubled them
    assert not within(measured.total, estimate.total, 0.02)


def test_a_bf16_model_measures_as_the_half_rule(tokenizer, records):
    batch = PretrainCollator(tokenizer)(records[:2])
    measured = measure_training_memory(lambda: load_model(tokenizer=tokenizer, seed=0).to(torch.bfloat16), batch, adamw)
    assert within(measured.total, estimate_training_memory(TINY_PARAMS, "half").total, 1e-4)
    assert not within(measured.total, estimate_training_memory(TINY_PARAMS, "fp32").total, 0.02)


def test_count_before_the_first_step_has_no_gradient_or_optimizer_state(tokenizer):
    model = load_model(tokenizer=tokenizer, seed=0)
    counted = count_training_state(model, torch.optim.AdamW(model.parameters()))
    assert counted.parts == {"weights": 4 * TINY_PARAMS, "gradients": 0, "optimizer states": 0}


def test_measured_peak_of_forward_backward_matches_the_peak_model_within_1_percent(measured_tiny):
    """First step: above the weights, the three vocabulary-sized tensors and the activations."""
    measured, batch = measured_tiny
    rows, length = batch["input_ids"].shape
    model = estimate_peak_memory(TinyQwenConfig().to_qwen2_config(), rows, length, "fp32", optimizer_states=False)
    above_weights = model.total - model.parts["weights"]
    assert within(measured.peaks["forward + backward"], above_weights, 0.01)
    three = model.parts["3 fp32 vocabulary-sized tensors"]
    assert three == 3 * rows * length * 151936 * 4 and three > 0.95 * above_weights


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA allocator's statistics need a GPU")
def test_cuda_measurement_sees_the_rule_plus_the_allocators_rounding(tokenizer, records):
    batch = {k: v.cuda() for k, v in PretrainCollator(tokenizer)(records[:1]).items()}  # one row: no padding
    measured = measure_training_memory(lambda: load_model(tokenizer=tokenizer, seed=0).cuda(), batch, adamw)
    estimate = estimate_training_memory(TINY_PARAMS, "fp32")
    assert "cuda" in measured.method
    rounding = 512  # the caching allocator's block granularity
    # A tensor over 10 MiB is cut from a segment rounded up to 2 MiB and keeps an uncut rest under
    # 1 MiB (kMinLargeAlloc / kRoundLarge / kSmallSize): the embedding, 38,895,616 bytes, holds
    # 39,845,888 (seen on an H200: +954,624 bytes for the weights in all).
    embedding = 151936 * 64 * 4
    uncut_rest = -embedding % (2 << 20)
    assert uncut_rest < (1 << 20)
    extra = measured.parts["weights"] - estimate.parts["weights"]
    assert uncut_rest <= extra <= uncut_rest + 28 * rounding  # 26 parameters + 2 buffers
    # exp_avg and exp_avg_sq of the embedding are such tensors too (when not served from a freed block)
    extra_states = measured.parts["optimizer states"] - estimate.parts["optimizer states"]
    assert 0 <= extra_states <= 2 * uncut_rest + 3 * 26 * rounding
    # forward + backward also keeps whatever cuBLAS takes for its workspace at the first product
    assert measured.parts["gradients"] >= estimate.parts["gradients"]
    rows, length = batch["input_ids"].shape
    model = estimate_peak_memory(TinyQwenConfig().to_qwen2_config(), rows, length, "fp32", optimizer_states=False)
    assert measured.peaks["forward + backward"] >= 0.99 * (model.total - model.parts["weights"])


def small_config(layers, tied=True):
    return Qwen2Config(vocab_size=1000, hidden_size=128, num_hidden_layers=layers, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=512, max_window_layers=layers,
                       tie_word_embeddings=tied)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "autocast-bf16"])
def test_peak_model_counts_what_autograd_saves(precision, tied):
    """The model's activation parts (one vocabulary tensor: the saved log-probabilities) are
    what autograd really keeps, to a few bytes, at every depth."""
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 32))
    for layers in (1, 3):
        config = small_config(layers, tied)
        model = Qwen2ForCausalLM(config).train()
        if precision == "bf16":
            model.to(torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast-bf16"):
            saved = saved_activation_bytes(model, {"input_ids": ids, "labels": ids})
        parts = estimate_peak_memory(config, 2, 32, precision).parts
        modelled = (parts.get("bf16 weight copies", 0) + parts["3 fp32 vocabulary-sized tensors"] // 3
                    + parts["layer activations"] + parts["other activations"])
        assert 0 <= saved - modelled <= 8, (layers, saved, modelled)


def gpu_log(name):
    return json.loads((ROOT / "benchmarks" / "gpu" / f"{name}.log").read_text().strip().splitlines()[-1])


@pytest.mark.parametrize("log, batch, precision", [
    ("q05b_b8_autocast-bf16", 8, "autocast-bf16"), ("q05b_b32_autocast", 32, "autocast-bf16"), ("q05b_b8_bf16", 8, "bf16"),
])
def test_peak_model_within_1_percent_of_the_h200_logs(log, batch, precision):
    measured = gpu_log(log)
    assert (measured["batch_size"], measured["seq_len"], measured["precision"]) == (batch, 512, precision)
    model = estimate_peak_memory(qwen25_05b_config(), batch, 512, precision, n_params=QWEN25_05B_PARAMS)
    assert within(model.total, measured["peak_allocated_bytes"], 0.01)
    assert model.total < measured["peak_allocated_bytes"]  # what it leaves out (workspaces) only adds


def test_peak_breakdown_of_the_05b_shape_at_batch_8():
    parts = estimate_peak_memory(qwen25_05b_config(), 8, 512, n_params=QWEN25_05B_PARAMS).parts
    gb = {name: round(value / GB, 2) for name, value in parts.items()}
    assert gb["3 fp32 vocabulary-sized tensors"] == 7.47  # 3 x 8 x 512 x 151,936 x 4 B = 3 x 2.49 GB
    assert gb["bf16 weight copies"] == 0.99 and gb["gradients"] == 0
    assert gb["weights"] + gb["optimizer states"] == 5.93  # 12 bytes/parameter: no gradients yet
    above_state = sum(parts.values()) - parts["weights"] - parts["optimizer states"]
    assert 0.42 < parts["layer activations"] / above_state < 0.45
    # linear in the batch
    double = estimate_peak_memory(qwen25_05b_config(), 16, 512, n_params=QWEN25_05B_PARAMS).parts
    assert double["layer activations"] == 2 * parts["layer activations"]


def test_peak_model_refuses_unknown_precisions_and_empty_batches():
    with pytest.raises(ValueError, match="precision must be one of"):
        estimate_peak_memory(qwen25_05b_config(), 8, 512, "fp8", n_params=1)
    with pytest.raises(ValueError, match="batch_size and seq_len"):
        estimate_peak_memory(qwen25_05b_config(), 0, 512, n_params=1)


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


def test_plot_has_an_estimate_and_a_measured_bar_per_part_plus_the_peak(measured_tiny):
    import matplotlib.pyplot as plt

    measured, _ = measured_tiny
    ax = plot_estimate_vs_measured(estimate_training_memory(TINY_PARAMS), measured)
    assert len(ax.patches) == 2 * 3 + 1
    assert round(ax.patches[-1].get_height(), 3) == round(measured.peaks["forward + backward"] / 1e6, 3)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "weights", "gradients", "optimizer states", "forward + backward\npeak"]
    plt.close(ax.figure)


def test_a_padding_mask_keeps_the_mask_and_repeated_keys_and_values(tokenizer, records):
    """With an attention_mask, transformers' sdpa path on a CPU keeps a float (batch, 1, length,
    length) mask per layer and calls repeat_kv (use_gqa_in_sdpa is False with a mask): keys and
    values at every query head's width replace the key/value heads' own (notebook 04, section 6)."""
    model = load_model(tokenizer=tokenizer, seed=0)
    batch = PretrainCollator(tokenizer)(records[:2])
    rows, length = batch["input_ids"].shape
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    with_mask = saved_activation_bytes(model, batch)
    without = saved_activation_bytes(model, {k: v for k, v in batch.items() if k != "attention_mask"})
    per_layer = (with_mask - without) // config.num_hidden_layers
    mask = rows * 1 * length * length * 4
    repeated = 2 * rows * (config.num_attention_heads - config.num_key_value_heads) * length * head_dim * 4
    assert (rows, length) == (2, 48) and config.num_key_value_heads < config.num_attention_heads
    assert (per_layer, mask) == (43_008, 18_432) and per_layer == mask + repeated


def allocator_constants():
    header = Path(torch.__file__).parent / "include" / "c10" / "core" / "AllocatorConfig.h"
    if not header.exists():
        pytest.skip("this torch build ships no C++ headers")
    import re

    return {name: int(value) for name, value in
            re.findall(r"constexpr size_t (k\w+) = (\d+);", header.read_text())}


def test_cuda_allocator_rounding_constants_in_the_installed_torch():
    """What notebook 04 and measure_training_memory say about the caching allocator: blocks of
    512 bytes; a tensor over 10 MiB gets a segment rounded to 2 MiB steps; an uncut rest is kept
    when it is at most 1 MiB (so the tiny model's embedding holds 950,272 bytes more on a GPU)."""
    constants = allocator_constants()
    assert constants["kMinBlockSize"] == 512 and constants["kSmallSize"] == 1 << 20
    assert constants["kMinLargeAlloc"] == 10 << 20 and constants["kRoundLarge"] == 2 << 20
    embedding = 151936 * 64 * 4
    assert embedding > constants["kMinLargeAlloc"] and -embedding % constants["kRoundLarge"] == 950_272


def matrix_rows():
    lines = (ROOT / "benchmarks" / "gpu" / "matrix-h200.log").read_text().splitlines()
    return [json.loads(line.removeprefix("MATRIX_ROW ")) for line in lines if line.startswith("MATRIX_ROW ")]


def test_h200_matrix_peaks_reserved_and_the_state_count_as_notebook_04_states():
    rows = {row["option_set"]: row for row in matrix_rows()}
    b8, b32 = rows["--batch-size 8"], rows["--batch-size 32"]
    assert b8["transformers"] == b32["transformers"] == "5.23.0"
    assert (round(b8["peak_allocated_bytes"] / GB, 2), round(b8["peak_reserved_bytes"] / GB, 2)) == (21.05, 24.13)
    assert (round(b32["peak_allocated_bytes"] / GB, 2), round(b32["peak_reserved_bytes"] / GB, 2)) == (63.11, 64.33)
    for row in (b8, b32):
        model = estimate_peak_memory(qwen25_05b_config(), row["batch_size"], 512, n_params=QWEN25_05B_PARAMS)
        assert within(model.total, row["peak_allocated_bytes"], 0.01)
    # measured_state_bytes is a tensor count: 16 bytes per parameter + one 4-byte step per tensor
    with torch.device("meta"):
        n_tensors = len(list(Qwen2ForCausalLM(qwen25_05b_config()).parameters()))
    assert n_tensors == 290 and b8["measured_state_bytes"] == 16 * QWEN25_05B_PARAMS + 4 * n_tensors
    assert b8["measured_state_parts"]["optimizer states"] == 2 * 1_976_131_072 + 1_160


def test_attention_flops_at_512_tokens_raise_the_best_mfu_from_34_4_to_35_9_percent():
    best = max(matrix_rows(), key=lambda row: row["mfu"])
    config = qwen25_05b_config()
    six_n = 6 * QWEN25_05B_PARAMS
    attention = 12 * config.num_hidden_layers * 512 * config.hidden_size
    assert (best["flops_per_token"], best["attention_flops_per_token"], best["seq_len"]) == (six_n, attention, 512)
    assert f"{attention / six_n:.2%}" == "4.46%"
    assert (f"{best['mfu']:.1%}", f"{best['mfu_with_attention']:.1%}") == ("34.4%", "35.9%")
    assert abs(best["mfu_with_attention"] / best["mfu"] - (1 + attention / six_n)) < 1e-12
