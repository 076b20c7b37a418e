"""A ChatML fine-tune must save its stop ids (notebook 06, section 3).

``load_model`` stores the tokenizer's eos, ``<|endoftext|>`` (151643), as
``generation_config.eos_token_id``. A model trained on ChatML ends its answers with
``<|im_end|>`` (151645), so a plain ``model.generate`` on the saved model runs past it unless
``[151645, 151643]`` is stored before ``save_pretrained``. Pinned on a tiny model built to
predict ``<|im_end|>`` after every token, so that only the stored stop ids decide the length.
"""

import torch
from transformers import AutoModelForCausalLM

from helpers import load_model

IM_END, ENDOFTEXT = 151645, 151643
BUDGET = 6


def always_im_end(tokenizer):
    """The tiny model with every decoder layer silenced and all embedding rows equal, except
    <|im_end|>'s, twice as long: the tied output layer then scores <|im_end|> highest everywhere."""
    model = load_model(None, tokenizer, seed=0).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embedding = model.get_input_embeddings().weight
        embedding.fill_(0.1)
        embedding[IM_END] = 0.2
    return model


def new_tokens(model, **settings):
    prompt = torch.tensor([[151644, 872, 198, 100, 200]])
    with torch.no_grad():
        output = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=BUDGET,
                                **settings)
    return output[0, prompt.shape[1]:].tolist()


def test_load_model_stores_the_pretraining_eos_only(tokenizer):
    assert load_model(None, tokenizer, seed=0).generation_config.eos_token_id == ENDOFTEXT


def test_saved_stop_ids_decide_where_plain_generate_stops(tokenizer, tmp_path):
    model = always_im_end(tokenizer)
    model.save_pretrained(tmp_path / "as_loaded")
    model.generation_config.eos_token_id = [IM_END, ENDOFTEXT]
    model.save_pretrained(tmp_path / "chatml")

    as_loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "as_loaded")
    chatml = AutoModelForCausalLM.from_pretrained(tmp_path / "chatml")
    assert chatml.generation_config.eos_token_id == [IM_END, ENDOFTEXT]
    assert new_tokens(chatml) == [IM_END]  # stops on <|im_end|>
    assert new_tokens(as_loaded) == [IM_END] * BUDGET  # runs past it to the budget
