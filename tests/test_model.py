import torch

from helpers import load_model, model_setting
from helpers.settings import MODEL_ENV_VAR


def test_tiny_model_shape(tokenizer):
    model = load_model(tokenizer=tokenizer)
    config = model.config
    assert sum(p.numel() for p in model.parameters()) == 9_847_360
    assert model.get_input_embeddings().weight.shape == (151936, 64)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (2, 4, 2)
    assert config.rope_parameters["rope_theta"] == 1e6 and config.rms_norm_eps == 1e-6
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == 151643


def test_same_seed_same_weights_other_seed_different():
    a, b, c = load_model(seed=0), load_model(seed=0), load_model(seed=1)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_pad_id_follows_the_tokenizer(fresh_tokenizer):
    fresh_tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    model = load_model(tokenizer=fresh_tokenizer)
    assert model.config.pad_token_id == model.generation_config.pad_token_id == 151665


def test_save_load_round_trip(tokenizer, tmp_path):
    model = load_model(tokenizer=tokenizer, seed=3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = load_model(tmp_path, tokenizer=tokenizer)
    ids = torch.tensor([tokenizer("请你给哪吒写一首诗：")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_model_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    assert model_setting() is None
    monkeypatch.setenv(MODEL_ENV_VAR, "  ")
    assert model_setting() is None
    monkeypatch.setenv(MODEL_ENV_VAR, "Qwen/Qwen2.5-0.5B")
    assert model_setting() == "Qwen/Qwen2.5-0.5B"
