"""The real-model path: with ``PVS_MODEL`` naming a local checkpoint, notebooks 04 and 05 run
unchanged and load tokenizer and model with ``from_pretrained``, the path a GPU user takes
with ``Qwen/Qwen2.5-0.5B``. Also the checkpoint helpers both notebooks share."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from transformers import Qwen2Config, Qwen2ForCausalLM

import helpers.checkpoints as checkpoints
from helpers import (
    MODEL_ENV_VAR,
    PRETRAINED_LEARNING_RATE,
    TrainConfig,
    checkpoint_dirs,
    has_checkpoint,
    load_or_train,
    recipe,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("04_full_parameter_training.ipynb", "05_inference.ipynb")
HIDDEN = 16  # smaller than the tiny default (64), so that the notebooks run fast and the
#              outputs show which model was used


@pytest.fixture(scope="module")
def local_checkpoint(tmp_path_factory, tokenizer):
    """A model directory like a downloaded one: config, safetensors weights, tokenizer files."""
    directory = tmp_path_factory.mktemp("local-qwen")
    config = Qwen2Config(
        vocab_size=151936, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    save_checkpoint(Qwen2ForCausalLM(config), tokenizer, directory)
    return directory


def hidden_size_of(directory) -> int:
    config = json.loads((Path(directory) / "config.json").read_text())
    return config["hidden_size"]


def stream_text(nb) -> str:
    return "".join(
        "".join(output.get("text", ""))
        for cell in nb.cells if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


def test_recipe_lowers_the_learning_rate_for_a_pretrained_model():
    assert recipe(None) == TrainConfig()
    assert recipe("Qwen/Qwen2.5-0.5B") == replace(TrainConfig(), learning_rate=PRETRAINED_LEARNING_RATE)


def test_load_or_train_trains_once_then_loads(tmp_path, local_checkpoint, monkeypatch, records):
    monkeypatch.setenv(MODEL_ENV_VAR, str(local_checkpoint))
    quick = TrainConfig(num_train_epochs=1, learning_rate=1e-2, print_loss=False)
    monkeypatch.setattr(checkpoints, "recipe", lambda model_name=None: quick)
    root = tmp_path / "outputs"
    first, how = load_or_train(root)
    assert how == "trained"
    assert all(has_checkpoint(d) for d in checkpoint_dirs(root).values())
    again, how = load_or_train(root)
    assert how == "loaded"
    initial = Qwen2ForCausalLM.from_pretrained(local_checkpoint).state_dict()
    for objective in ("pretrain", "sft"):
        weights = again[objective].model.state_dict()
        assert weights["model.norm.weight"].shape == (HIDDEN,)  # the PVS_MODEL model, not the default
        assert all(torch.equal(weights[k], v) for k, v in first[objective].model.state_dict().items())
        assert not torch.equal(weights["model.layers.0.mlp.up_proj.weight"], initial["model.layers.0.mlp.up_proj.weight"])
    pre, sft = (again[o].model.state_dict()["model.layers.0.mlp.up_proj.weight"] for o in ("pretrain", "sft"))
    assert not torch.equal(pre, sft)  # same start, different labels, different weights
    # a checkpoint missing its tokenizer is incomplete: it is trained again
    (checkpoint_dirs(root)["sft"] / "tokenizer.json").unlink()
    assert load_or_train(root)[1] == "trained"


def test_notebooks_04_and_05_run_unchanged_on_a_local_checkpoint(tmp_path, local_checkpoint, monkeypatch):
    work = tmp_path / "notebooks"  # a copy, so that ../outputs is tmp_path/outputs
    work.mkdir()
    monkeypatch.setenv(MODEL_ENV_VAR, str(local_checkpoint))
    executed = {}
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, work / name)
        nb = nbformat.read(work / name, as_version=4)
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
        executed[name] = stream_text(nb)

    out04, out05 = executed[NOTEBOOKS[0]], executed[NOTEBOOKS[1]]
    n_local = sum(p.numel() for p in Qwen2ForCausalLM.from_pretrained(local_checkpoint).parameters())
    assert f"Qwen2ForCausalLM with {n_local:,} parameters" in out04
    assert f"learning_rate={PRETRAINED_LEARNING_RATE}" in out04
    assert out04.count("identical logits: True") == 2
    for objective in ("pretrain", "sft"):
        saved = tmp_path / "outputs" / objective
        assert has_checkpoint(saved) and hidden_size_of(saved) == HIDDEN
    assert "checkpoints loaded:" in out05
    assert f"{n_local:,} parameters" in out05
