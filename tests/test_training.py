"""helpers.train (notebook 02, 04): what the returned model is like after the Trainer is done with it,
and the allocator settings the Makefile exports for it."""

import dataclasses
import json
import os
import platform
import re
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
# class, whose first use imports torch._dynamo), so that a run takes seconds. It also reports where
# a large block lands: page-aligned (PyTorch's huge-page setting), inside malloc's heap (a [heap]
# range of /proc/self/maps) rather than in a mapping of its own, and whether freeing a large block
# at the heap's top leaves the top where it was (glibc's settings).
ALLOCATION_RUN = """
import ctypes
libc = ctypes.CDLL(None)
libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
# first, while the heap holds no free space that large: malloc and free with nothing between,
# so that the block lies at the heap's top when it is freed
block = libc.malloc(64 * 2**20)
top = libc.sbrk(0)
libc.free(block)
top_kept = libc.sbrk(0) == top

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
digest = hashlib.sha256(embedding.weight.detach().numpy().tobytes()).hexdigest()
big = torch.empty(64 * 2**20, dtype=torch.uint8)
heap = [[int(a, 16) for a in line.split()[0].split("-")] for line in open("/proc/self/maps") if "[heap]" in line]
report = {"digest": digest, "page_aligned": big.data_ptr() % 4096 == 0, "top_kept": top_kept,
          "in_heap": any(start <= big.data_ptr() < end for start, end in heap)}
print(json.dumps(report))
"""


def makefile_allocation_settings() -> dict[str, str]:
    """The allocator settings the Makefile exports (`export NAME ?= VALUE`)."""
    exports = re.findall(r"^export (THP_MEM_ALLOC_ENABLE|MALLOC_\w+_) \?= (\S+)$",
                         (ROOT / "Makefile").read_text(), flags=re.M)
    return dict(exports)


def run_with(settings: dict[str, str], ids: list) -> dict:
    """ALLOCATION_RUN in a process with SETTINGS and none of the Makefile's others."""
    env = {k: v for k, v in os.environ.items() if k not in makefile_allocation_settings()}
    out = subprocess.run([sys.executable, "-c", ALLOCATION_RUN, json.dumps(ids)], cwd=ROOT,
                         env={**env, **settings}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="PyTorch reads THP_MEM_ALLOC_ENABLE on Linux only; the MALLOC_ settings are glibc's")
def test_the_makefiles_allocator_settings_take_effect_and_change_no_weight(tokenizer, records):
    """The Makefile exports allocator settings for speed. THP_MEM_ALLOC_ENABLE=1: PyTorch allocates
    tensors of 2 MB and more page-aligned (64-byte-aligned otherwise) and asks Linux for huge pages
    there (c10/core/impl/alloc_cpu.cpp). MALLOC_MMAP_MAX_=0 and MALLOC_TRIM_THRESHOLD_: glibc
    serves large blocks from its heap and keeps the space when they are freed. The same 3 training steps give the
    same weights, bit for bit, with and without them."""
    settings = makefile_allocation_settings()
    assert set(settings) == {"THP_MEM_ALLOC_ENABLE", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"}
    ids = PretrainCollator(tokenizer)(records[:2])["input_ids"].tolist()
    tuned, plain = run_with(settings, ids), run_with({}, ids)
    assert tuned["page_aligned"] and tuned["in_heap"] and tuned["top_kept"]  # the settings took effect
    assert not plain["in_heap"]
    without_trim = run_with({k: v for k, v in settings.items() if k != "MALLOC_TRIM_THRESHOLD_"}, ids)
    assert without_trim["in_heap"] and not without_trim["top_kept"]  # what the second setting adds
    assert tuned["digest"] == plain["digest"]


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
