"""helpers.train (notebook 02, 04): what the returned model is like after the Trainer is done with it,
and the allocator setting the Makefile exports for it."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer

import helpers.training as training
from helpers import PretrainCollator, TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent


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


# The part of the tiny model that allocates the large tensors: a tied 151,936 x 64 embedding and its
# logits (58 MB per batch), with cross-entropy and plain gradient steps. Plain torch (no optimizer
# class, whose first use imports torch._dynamo), so that a run takes seconds.
THP_RUN = """
import hashlib, json, sys, torch
ids = torch.tensor(json.loads(sys.argv[1]))
torch.manual_seed(0)
embedding = torch.nn.Embedding(151936, 64)
for _ in range(3):
    logits = embedding(ids[:, :-1]) @ embedding.weight.T
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
    with torch.no_grad():
        embedding.weight -= 0.5 * embedding.weight.grad
    embedding.weight.grad = None
big = torch.empty(4 * 2**20, dtype=torch.uint8)
digest = hashlib.sha256(embedding.weight.detach().numpy().tobytes()).hexdigest()
print(json.dumps({"digest": digest, "page_aligned": big.data_ptr() % 4096 == 0}))
"""


def run_with_thp(setting: str, ids: list) -> dict:
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE=setting)
    out = subprocess.run([sys.executable, "-c", THP_RUN, json.dumps(ids)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PyTorch reads THP_MEM_ALLOC_ENABLE on Linux only")
def test_huge_page_allocations_change_no_weight(tokenizer, records):
    """The Makefile exports THP_MEM_ALLOC_ENABLE=1 for speed (README): PyTorch then allocates tensors
    of 2 MB and more page-aligned (64-byte-aligned otherwise) and asks Linux for huge pages there
    (c10/core/impl/alloc_cpu.cpp). The same 3 training steps give the same weights, bit for bit."""
    ids = PretrainCollator(tokenizer)(records[:2])["input_ids"].tolist()
    with_thp, without_thp = run_with_thp("1", ids), run_with_thp("0", ids)
    assert with_thp["page_aligned"]  # the setting took effect
    assert with_thp["digest"] == without_thp["digest"]


def test_the_trainers_adamw_has_no_weight_decay_unlike_torchs_default(tmp_path):
    """Notebook 04 measures with the Trainer's optimizer class and kwargs; those kwargs carry no
    weight_decay (the Trainer passes it in parameter groups), and torch's AdamW alone uses 0.01."""
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, intermediate_size=32))
    arguments = training.training_arguments(TrainConfig(), str(tmp_path))
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(arguments)
    assert "weight_decay" not in optimizer_kwargs
    assert optimizer_cls(model.parameters(), **optimizer_kwargs).defaults["weight_decay"] == 0.01
    created = Trainer(model=model, args=arguments).create_optimizer()
    assert {group["weight_decay"] for group in created.param_groups} == {arguments.weight_decay} == {0.0}
