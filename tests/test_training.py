"""helpers.train (notebook 02, 04): what the returned model is like after the Trainer is done with it."""

import dataclasses

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

import helpers.training as training
from helpers import PretrainCollator, TrainConfig, train


def test_a_bf16_run_returns_the_model_without_the_autocast_wrapper(tokenizer, records, monkeypatch):
    # On a GPU the series trains with bf16=True: accelerate then replaces model.forward with an
    # autocast wrapper. Forced here on the CPU, where bf16 autocast runs too.
    series_arguments = training.training_arguments
    monkeypatch.setattr(training, "training_arguments",
                        lambda config, output_dir: dataclasses.replace(series_arguments(config, output_dir), bf16=True, use_cpu=True))
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=151936, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=True))
    train(model, tokenizer, records[:2], PretrainCollator(tokenizer), TrainConfig(num_train_epochs=1, print_loss=False))
    assert model.forward.__func__ is Qwen2ForCausalLM.forward and "_original_forward" not in model.__dict__
    ids = tokenizer(records[0]["instruct"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, Qwen2ForCausalLM.forward(model, input_ids=ids).logits)
