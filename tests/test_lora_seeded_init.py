"""Notebook 06's run_row seeds before apply_lora: LoRA's A matrices start random (B at zero), so
a run is only repeatable (and its appendix's rerun the same run) when the seed comes first."""

import copy

import torch

from helpers import LoraSettings, apply_lora, load_model


def lora_a_weights(model):
    return [p.detach().clone() for name, p in model.named_parameters() if "lora_A" in name]


def lora_b_weights(model):
    return [p.detach().clone() for name, p in model.named_parameters() if "lora_B" in name]


def test_lora_a_is_drawn_from_the_random_state_and_seeding_first_repeats_it(tokenizer):
    base = load_model(None, tokenizer, seed=0)
    torch.manual_seed(0)
    first = lora_a_weights(apply_lora(copy.deepcopy(base), LoraSettings()))
    torch.manual_seed(0)
    again = lora_a_weights(apply_lora(copy.deepcopy(base), LoraSettings()))
    torch.manual_seed(0)
    torch.rand(1)  # earlier random draws (as before notebook 06's fix) change A
    shifted = lora_a_weights(apply_lora(copy.deepcopy(base), LoraSettings()))
    assert len(first) == 14 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, shifted))
    assert all(torch.count_nonzero(b) == 0 for b in lora_b_weights(apply_lora(copy.deepcopy(base), LoraSettings())))
