"""helpers.generate: plain greedy whatever a checkpoint stores, and clear errors for bad arguments."""

import numpy as np
import pytest
import torch
from transformers import GenerationConfig

from helpers import generate, load_model
from helpers.generation import greedy_config, resolve_stop_ids, stored_generation_settings_ignored
from post_facts import EOS_ID

PROMPT = "请你给哪吒写一首诗："
BUDGET = 12


@pytest.fixture(scope="module")
def model(tokenizer):
    return load_model(tokenizer=tokenizer, seed=0).eval()


@pytest.fixture(scope="module")
def plain_ids(model, tokenizer):
    """The untrained tiny model's greedy continuation, computed by hand: argmax, append, repeat."""
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(BUDGET):
            next_id = int(model(input_ids=ids).logits[0, -1].argmax())
            new.append(next_id)
            ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)
    return new


def stored_settings(first_id):
    """What a checkpoint's generation_config.json may hold: sampling, penalties, a suppressed token."""
    return dict(do_sample=True, temperature=5.0, top_k=3, repetition_penalty=10.0, no_repeat_ngram_size=2,
                suppress_tokens=[first_id], num_beams=2)


def test_generate_is_greedy(model, tokenizer, plain_ids):
    result = generate(model, tokenizer, PROMPT, max_new_tokens=BUDGET, stop_token_ids=[])
    assert result.token_ids == plain_ids and not result.stopped_on_eos


def test_stored_generation_settings_do_not_change_generate(tokenizer, plain_ids):
    model = load_model(tokenizer=tokenizer, seed=0).eval()
    stored = model.generation_config
    for key, value in stored_settings(plain_ids[0]).items():
        setattr(stored, key, value)

    # the mechanism: a fresh GenerationConfig passed to model.generate inherits them (unset = None)
    inputs = tokenizer(PROMPT, return_tensors="pt")
    torch.manual_seed(0)
    with torch.no_grad():
        leaky = model.generate(**inputs, generation_config=greedy_config(BUDGET, [], tokenizer.pad_token_id))
    leaky_ids = leaky[0, inputs["input_ids"].shape[1]:].tolist()
    assert leaky_ids[0] != plain_ids[0]  # suppressed: the stored settings did reach generate

    for seed in (0, 1):  # sampling would make the random seed matter
        torch.manual_seed(seed)
        assert generate(model, tokenizer, PROMPT, max_new_tokens=BUDGET, stop_token_ids=[]).token_ids == plain_ids
    assert model.generation_config is stored and stored.repetition_penalty == 10.0  # put back unchanged


def test_stored_settings_ignored_through_a_peft_wrapper(tokenizer, plain_ids):
    peft = pytest.importorskip("peft")
    model = load_model(tokenizer=tokenizer, seed=0)
    for key, value in stored_settings(plain_ids[0]).items():
        setattr(model.generation_config, key, value)
    # LoRA's B matrices start at zero, so the wrapped model computes the same logits
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"])).eval()
    assert generate(wrapped, tokenizer, PROMPT, max_new_tokens=BUDGET, stop_token_ids=[]).token_ids == plain_ids
    assert model.generation_config.repetition_penalty == 10.0


def test_settings_are_put_back_after_an_error(tokenizer):
    model = load_model(tokenizer=tokenizer, seed=0)
    stored = model.generation_config
    with pytest.raises(RuntimeError, match="boom"), stored_generation_settings_ignored(model):
        assert model.generation_config is not stored and model.generation_config.repetition_penalty is None
        raise RuntimeError("boom")
    assert model.generation_config is stored


def test_stop_ids_default_to_eos_and_stop_generation(model, tokenizer, plain_ids):
    assert resolve_stop_ids(None, tokenizer) == [EOS_ID]
    assert resolve_stop_ids((np.int64(5), torch.tensor(7)), tokenizer) == [5, 7]
    first = plain_ids[0]
    result = generate(model, tokenizer, PROMPT, max_new_tokens=BUDGET, stop_token_ids=[first])
    assert result.token_ids == [first] and result.stopped_on_eos
    budget_only = generate(model, tokenizer, PROMPT, max_new_tokens=3, stop_token_ids=[])
    assert budget_only.token_ids == plain_ids[:3] and not budget_only.stopped_on_eos


@pytest.mark.parametrize("bad", ["<|endoftext|>", ["<|endoftext|>"], 151643, [1.5], [True], [-1], [None]])
def test_bad_stop_token_ids_are_refused(model, tokenizer, bad):
    with pytest.raises(ValueError, match="stop_token_ids"):
        generate(model, tokenizer, PROMPT, max_new_tokens=2, stop_token_ids=bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8", True, None])
def test_bad_max_new_tokens_is_refused(model, tokenizer, bad):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, tokenizer, PROMPT, max_new_tokens=bad)


def test_greedy_config_names_one_beam_and_no_sampling():
    config = greedy_config(5, [EOS_ID], EOS_ID)
    assert (config.do_sample, config.num_beams, config.max_new_tokens, config.eos_token_id) == (False, 1, 5, [EOS_ID])
    assert config.repetition_penalty is None  # unset: this is why generate must empty the model's config
    assert GenerationConfig().repetition_penalty is None
