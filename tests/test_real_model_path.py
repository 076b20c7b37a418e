"""The real-model path: with ``PVS_MODEL`` naming a local checkpoint, notebooks 04 and 05 run
unchanged and load tokenizer and model with ``from_pretrained``, the path a GPU user takes
with ``Qwen/Qwen2.5-0.5B``. Also what that path needs to be trustworthy: one clear error for each
``PVS_MODEL`` value that cannot work, the post's recipe for a pretrained model, and fp32 weights
for training whatever dtype the checkpoint is stored in. (The checkpoints themselves:
test_checkpoints.py.)"""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM, TrainingArguments

from helpers import (
    MODEL_ENV_VAR,
    PRETRAINED_LEARNING_RATE,
    TrainConfig,
    has_checkpoint,
    load_model,
    load_tokenizer,
    model_setting,
    recipe,
    save_checkpoint,
)
from helpers.checkpoints import PRETRAINED_RECIPE
from helpers.settings import OUTPUTS_ENV_VAR, ModelSettingError
from post_facts import POST_TRAINING_ARGUMENTS

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("04_full_parameter_training.ipynb", "05_inference.ipynb")
HIDDEN = 16  # smaller than the tiny default (64), so that the notebooks run fast and the
#              outputs show which model was used


@pytest.fixture(scope="module")
def local_checkpoint(tmp_path_factory, tokenizer):
    """A model directory like a downloaded one: config, safetensors weights, tokenizer files."""
    directory = tmp_path_factory.mktemp("local-qwen")
    torch.manual_seed(0)
    save_checkpoint(Qwen2ForCausalLM(small_config(tokenizer)), tokenizer, directory)
    return directory


def small_config(tokenizer=None):
    """A Qwen2 config with Qwen2.5's vocabulary and a 1-layer, HIDDEN-wide body."""
    special = {} if tokenizer is None else dict(
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return Qwen2Config(
        vocab_size=151936, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=True, **special,
    )


def hidden_size_of(directory) -> int:
    config = json.loads((Path(directory) / "config.json").read_text())
    return config["hidden_size"]


def stream_text(nb) -> str:
    return "".join(
        "".join(output.get("text", ""))
        for cell in nb.cells if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


def test_a_pretrained_model_gets_the_posts_recipe():
    """The post's TrainingArguments set num_train_epochs=10 and per_device_train_batch_size=2
    (post_facts); the rest are transformers' defaults, read here from the installed
    TrainingArguments itself, so that a change of default would show."""
    defaults = TrainingArguments(output_dir="unused")
    assert recipe(None) == TrainConfig()
    pretrained = recipe("Qwen/Qwen2.5-0.5B")
    assert pretrained == PRETRAINED_RECIPE
    for name, value in POST_TRAINING_ARGUMENTS.items():
        assert getattr(pretrained, name) == value, name
    assert pretrained.learning_rate == PRETRAINED_LEARNING_RATE == defaults.learning_rate == 5e-5
    assert pretrained.lr_scheduler_type == defaults.lr_scheduler_type.value == "linear"
    assert pretrained.warmup_steps == defaults.warmup_steps == 0
    assert pretrained.weight_decay == defaults.weight_decay == 0.0


def test_notebook_04_checks_the_recipe_against_the_posts_arguments():
    """Notebook 04 states the post's two numbers in a literal ``POST_ARGUMENTS``: the post's, here."""
    nb = nbformat.read(ROOT / "notebooks" / NOTEBOOKS[0], as_version=4)
    found = [ast.literal_eval(node.value) for cell in nb.cells if cell.cell_type == "code"
             for node in ast.walk(ast.parse(cell.source))
             if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "POST_ARGUMENTS"]
    assert found == [POST_TRAINING_ARGUMENTS]


# --- PVS_MODEL values that cannot work: one clear error each ---------------------------------


def pvs(monkeypatch, value):
    monkeypatch.setenv(MODEL_ENV_VAR, str(value))
    return model_setting()


@pytest.mark.parametrize("load", [load_tokenizer, load_model])
def test_nonexistent_path(tmp_path, monkeypatch, load):
    value = pvs(monkeypatch, tmp_path / "no" / "such" / "model")
    with pytest.raises(ModelSettingError, match=rf"^PVS_MODEL='{re.escape(value)}': no such directory"):
        load(value)


@pytest.mark.parametrize("load", [load_tokenizer, load_model])
def test_empty_directory(tmp_path, monkeypatch, load):
    (tmp_path / "empty").mkdir()
    value = pvs(monkeypatch, tmp_path / "empty")
    with pytest.raises(ModelSettingError, match=rf"^PVS_MODEL='{re.escape(value)}': the directory .* is empty; "
                       r"it needs a model \(config.json and model.safetensors\) and its tokenizer"):
        load(value)


def test_model_without_tokenizer(tmp_path, monkeypatch):
    torch.manual_seed(0)
    Qwen2ForCausalLM(small_config()).save_pretrained(tmp_path / "model-only")
    value = pvs(monkeypatch, tmp_path / "model-only")
    with pytest.raises(ModelSettingError, match=rf"^PVS_MODEL='{re.escape(value)}': .* holds a model but no tokenizer"):
        load_tokenizer(value)
    assert load_model(value).config.hidden_size == HIDDEN  # the model half is fine


def test_a_path_under_the_home_directory(tmp_path, monkeypatch):
    torch.manual_seed(0)
    Qwen2ForCausalLM(small_config()).save_pretrained(tmp_path / "models" / "small")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_model(pvs(monkeypatch, "~/models/small")).config.hidden_size == HIDDEN


def test_tokenizer_without_model(tmp_path, monkeypatch, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tokenizer-only")
    value = pvs(monkeypatch, tmp_path / "tokenizer-only")
    assert len(load_tokenizer(value)) == len(tokenizer)  # the tokenizer half is fine
    with pytest.raises(ModelSettingError, match=rf"^PVS_MODEL='{re.escape(value)}': .* holds a tokenizer but no "
                       r"model: missing config.json and model.safetensors"):
        load_model(value)


def test_weights_that_are_not_safetensors(tmp_path, monkeypatch):
    Qwen2ForCausalLM(small_config()).config.save_pretrained(tmp_path / "bin")
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"")
    value = pvs(monkeypatch, tmp_path / "bin")
    with pytest.raises(ModelSettingError, match=r"no model: missing model.safetensors \(this series loads safetensors"):
        load_model(value)


@pytest.mark.parametrize("load, need", [(load_tokenizer, "tokenizer"), (load_model, "model")])
def test_hub_id_with_no_hub_reachable(tmp_path, monkeypatch, load, need):
    """Offline (HF_HUB_OFFLINE, read by huggingface_hub at import: patched here) and with an
    empty hub cache, a hub id fails at once with a message that says so."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.chdir(tmp_path)  # no local directory called Qwen/Qwen2.5-0.5B
    value = pvs(monkeypatch, "Qwen/Qwen2.5-0.5B")
    with pytest.raises(ModelSettingError) as error:
        load(value)
    message = str(error.value)
    assert message.startswith("PVS_MODEL='Qwen/Qwen2.5-0.5B': not a local directory")
    assert f"no model hub could be reached to fetch the {need} as a hub id (HF_HUB_OFFLINE is set" in message
    assert "Set PVS_MODEL to a local directory" in message


def test_hub_error_when_the_connection_fails():
    """What huggingface_hub raises without a connection (after its retries): a
    LocalEntryNotFoundError, which transformers re-raises as an OSError."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    from helpers.settings import hub_error

    try:
        try:
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
        except LocalEntryNotFoundError as cause:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from cause
    except OSError as raised:
        message = str(hub_error("Qwen/Qwen2.5-0.5B", "model", raised))
    assert "'Qwen/Qwen2.5-0.5B': not a local directory" in message
    assert "no model hub could be reached" in message and "the connection failed" in message


# --- loading a real model for training: fp32, whatever it is stored in ----------------------


def test_a_model_stored_in_bf16_loads_in_fp32(tmp_path):
    torch.manual_seed(0)
    Qwen2ForCausalLM(small_config()).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    # from_pretrained's default (dtype="auto") keeps the stored dtype: training would be pure bf16
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "bf16").dtype == torch.bfloat16
    model = load_model(tmp_path / "bf16")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_notebooks_04_and_05_run_unchanged_on_a_local_checkpoint(tmp_path, local_checkpoint, monkeypatch):
    monkeypatch.setenv(MODEL_ENV_VAR, str(local_checkpoint))
    monkeypatch.setenv(OUTPUTS_ENV_VAR, str(tmp_path / "outputs"))  # the kernels inherit both
    executed = {}
    for name in NOTEBOOKS:
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
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
