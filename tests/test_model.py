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
    assert model.generation_config.pad_token_id == 151665
    # the model config names no pad id, like Qwen2.5-0.5B's config.json: no padding_idx
    assert model.config.pad_token_id is None
    assert model.get_input_embeddings().padding_idx is None


def test_initial_weights_do_not_depend_on_the_pad_token(tokenizer, fresh_tokenizer):
    """Notebook 02 compares variants that differ in the pad token: they must start identical."""
    fresh_tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    a, b = load_model(tokenizer=tokenizer), load_model(tokenizer=fresh_tokenizer)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    embedding = a.get_input_embeddings().weight
    assert embedding[151643].abs().sum() > 0 and embedding[151665].abs().sum() > 0  # no zeroed row


def test_padding_idx_zeroes_and_freezes_a_row():
    """What a config pad id would do (the lesson of notebook 02): transformers 5 passes
    config.pad_token_id to nn.Embedding as padding_idx; init zeroes that row and backward
    gives it no input-side gradient."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=16, pad_token_id=5, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    embedding = model.get_input_embeddings()
    assert embedding.padding_idx == 5 and torch.count_nonzero(embedding.weight[5]) == 0
    ids = torch.tensor([[1, 5, 2, 5]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert torch.count_nonzero(embedding.weight.grad[5]) == 0 and torch.count_nonzero(embedding.weight.grad[1]) > 0


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


def test_training_leaves_the_model_config_without_a_pad_id(tokenizer, records):
    """The Trainer, when given the tokenizer, writes its pad id into model.config; helpers.train
    must not let it, or a saved checkpoint would reload with padding_idx set."""
    import dataclasses

    from helpers import PretrainCollator, TrainConfig, train

    model = load_model(tokenizer=tokenizer)
    config = dataclasses.replace(TrainConfig(), num_train_epochs=1, print_loss=False)
    train(model, tokenizer, records[:2], PretrainCollator(tokenizer), config)
    assert model.config.pad_token_id is None


def test_the_trainer_itself_would_align_the_pad_id(tokenizer):
    """Pins the transformers behaviour the comment in helpers/training.py relies on."""
    from transformers.trainer_utils import align_special_tokens

    model = load_model(tokenizer=tokenizer)
    align_special_tokens(model, tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id == 151643
