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


# The embedding of the real Qwen2.5 sizes, from their config.json files (vocab_size,
# tie_word_embeddings). The Qwen/ repositories are not reachable here; these copies of them
# keep the original's shape fields (each names its source in "_name_or_path"):
#   0.5B  https://huggingface.co/osllmai-community/Qwen2.5-0.5B/blob/main/config.json     151936, tied
#   1.5B  https://huggingface.co/onnx-community/Qwen2.5-1.5B-Instruct/blob/94677ac90364afdc2b476788d085a9680efde737/config.json  151936, tied
#   3B    https://huggingface.co/unsloth/Qwen2.5-3B/blob/main/config.json                 151936, tied
#   7B    https://huggingface.co/EVA-UNIT-01/EVA-Qwen2.5-7B-v0.0/blob/a32508949aec50fa43f32204d1a5600cf63ec3dd/config.json
#         and https://huggingface.co/osllmai-community/Qwen2.5-7B-Instruct/blob/main/config.json  152064, untied
#   14B   https://huggingface.co/osllmai-community/Qwen2.5-14B-Instruct/blob/eaddfa685697f74aa707d6cd5cf36784cdcabe05/config.json  152064, untied
#   32B   https://huggingface.co/Qwen/Qwen2.5-32B/blob/main/config.json (the original)     152064, untied
#   72B   https://huggingface.co/gghfez/UwU-72B-Preview/blob/64af8159bc15b908f7f1792121f99beaad633ce9/config.json
#         (from unsloth/qwen2.5-72b-instruct)                                              152064, untied
QWEN25_EMBEDDINGS = {  # size: (vocab_size, tie_word_embeddings, hidden_size)
    "0.5B": (151936, True, 896), "1.5B": (151936, True, 1536), "3B": (151936, True, 2048),
    "7B": (152064, False, 3584), "14B": (152064, False, 5120), "32B": (152064, False, 5120),
    "72B": (152064, False, 8192),
}


def test_the_tiny_embedding_is_qwen25_05b_s_and_the_docstrings_say_where_that_stops():
    import helpers.model
    from helpers import TinyQwenConfig

    tiny = TinyQwenConfig()
    assert (tiny.vocab_size, tiny.tie_word_embeddings) == QWEN25_EMBEDDINGS["0.5B"][:2]
    assert all(QWEN25_EMBEDDINGS[size][:2] == (151936, True) for size in ("0.5B", "1.5B", "3B"))
    assert all(QWEN25_EMBEDDINGS[size][:2] == (152064, False) for size in ("7B", "14B", "32B", "72B"))
    assert "Qwen2.5-7B and larger have 152,064 rows" in " ".join(helpers.model.__doc__.split())


def test_an_untied_7b_embedding_is_two_vocabulary_sized_matrices():
    """What "untied" costs at 7B: the output layer is a second 152,064-row matrix (meta device: no memory)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    vocab, tied, hidden = QWEN25_EMBEDDINGS["7B"]
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, tie_word_embeddings=tied, num_hidden_layers=1,
                         num_attention_heads=28, num_key_value_heads=4, intermediate_size=64)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    embedding, output = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert embedding.shape == output.shape == (152064, 3584) and output is not embedding
