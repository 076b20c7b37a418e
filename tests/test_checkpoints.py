"""Checkpoints that cannot go stale or half-written (notebooks 04 and 05).

One shrunken run (a 16-wide, 1-layer local model named by PVS_MODEL, one epoch) is trained
and saved once; each test copies it, breaks it one way, and checks that ``load_or_train``
names the directory and the problem, in one printed line when it retrains, or in a
``CheckpointError`` with ``retrain=False``: never a raw deserialisation error, never a stale load.
"""

import contextlib
import io
import json
import shutil

import pytest
import torch
from safetensors import SafetensorError
from transformers import Qwen2Config, Qwen2ForCausalLM

import helpers.checkpoints as checkpoints
from helpers import (
    MODEL_ENV_VAR, TinyQwenConfig, TrainConfig, checkpoint_dirs, has_checkpoint, load_checkpoint, load_or_train, load_tokenizer,
    save_checkpoint,
)
from helpers.checkpoints import RECORD_FILE, CheckpointError, checkpoint_problem, records_sha256

HIDDEN = 16
QUICK = TrainConfig(num_train_epochs=1, learning_rate=1e-2, print_loss=False)


@pytest.fixture(scope="module")
def local_model(tmp_path_factory, tokenizer):
    """A small model directory like a downloaded one (config, safetensors weights, tokenizer)."""
    directory = tmp_path_factory.mktemp("local-qwen")
    config = Qwen2Config(
        vocab_size=151936, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    save_checkpoint(Qwen2ForCausalLM(config), tokenizer, directory)
    return directory


@pytest.fixture
def setting(monkeypatch, local_model, tokenizer):
    """PVS_MODEL names the local model; the recipe is shrunken to one epoch. Tokenizer loads
    return the (identical) session tokenizer: from_pretrained of a 151,665-token tokenizer
    takes seconds, and test_intact_checkpoints_load does it for real."""
    monkeypatch.setenv(MODEL_ENV_VAR, str(local_model))
    monkeypatch.setattr(checkpoints, "recipe", lambda model_name=None: QUICK)
    monkeypatch.setattr(checkpoints, "load_tokenizer", lambda name_or_path=None: tokenizer)
    return local_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, local_model, tokenizer):
    """Both checkpoints, trained and saved once by load_or_train into an empty root:
    ``(root, what it printed, the checkpoints it returned)``."""
    root = tmp_path_factory.mktemp("trained") / "outputs"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv(MODEL_ENV_VAR, str(local_model))
        patch.setattr(checkpoints, "recipe", lambda model_name=None: QUICK)
        patch.setattr(checkpoints, "load_tokenizer", lambda name_or_path=None: tokenizer)
        first, how = load_or_train(root)
    assert how == "trained"
    return root, printed.getvalue(), first


@pytest.fixture
def root(tmp_path, trained):
    """A private copy of the trained checkpoints, to break."""
    copy = tmp_path / "outputs"
    shutil.copytree(trained[0], copy)
    return copy


def refusal(root, **kwargs) -> str:
    with pytest.raises(CheckpointError) as error:
        load_or_train(root, retrain=False, **kwargs)
    return str(error.value)


def test_a_fresh_root_is_trained_with_one_line_then_loaded(trained, setting, records, capsys):
    root, printed, first = trained
    assert printed == f"no checkpoints in {root.as_posix()} yet: training them\n"
    again, how = load_or_train(root)
    assert how == "loaded" and capsys.readouterr().out == ""
    for objective, directory in checkpoint_dirs(root).items():
        record = json.loads((directory / RECORD_FILE).read_text())
        assert record["training"] == {
            "objective": objective, "model_setting": str(setting), "seed": 0,
            "recipe": {k: v for k, v in QUICK.__dict__.items() if k != "print_loss"},
            "records_sha256": records_sha256(records),
            "collator": {"append_eos": True, "mask_pad": "position"},
            "environment": {"device": "cpu", "precision": "fp32"},  # the tests run on a CPU
        }
        assert set(record["versions"]) == {"torch", "transformers", "tokenizers", "safetensors"}
        # what the run measured travels with it: 5 records, batch 2, 1 epoch = 3 steps
        assert record["result"]["steps"] == 3 and len(record["result"]["epoch_losses"]) == 1
        assert record["result"]["seconds"] > 0 and record["result"]["epoch_losses"][0] > 1
        assert (again[objective].epoch_losses, again[objective].steps, again[objective].seconds) == (
            record["result"]["epoch_losses"], 3, record["result"]["seconds"])
        assert sorted(record["files"]) == sorted(p.name for p in directory.iterdir() if p.name != RECORD_FILE)
        weights = again[objective].model.state_dict()
        assert weights["model.norm.weight"].shape == (HIDDEN,)  # the PVS_MODEL model, not the default
        assert all(torch.equal(weights[k], v) for k, v in first[objective].model.state_dict().items())
    assert not list(root.glob(".*"))  # no staging directory left
    initial = Qwen2ForCausalLM.from_pretrained(setting).state_dict()["model.layers.0.mlp.up_proj.weight"]
    pre, sft = (again[o].model.state_dict()["model.layers.0.mlp.up_proj.weight"] for o in ("pretrain", "sft"))
    assert not torch.equal(pre, initial) and not torch.equal(sft, initial)  # trained
    assert not torch.equal(pre, sft)  # same start, different labels, different weights


def test_intact_checkpoints_load(root, setting, capsys, monkeypatch, tokenizer):
    monkeypatch.setattr(checkpoints, "load_tokenizer", load_tokenizer)
    assert all(has_checkpoint(d) for d in checkpoint_dirs(root).values())
    loaded, how = load_or_train(root, retrain=False)
    assert how == "loaded" and capsys.readouterr().out == ""
    assert loaded["sft"].tokenizer("请你给哪吒写一首诗：")["input_ids"] == tokenizer("请你给哪吒写一首诗：")["input_ids"]
    assert loaded["pretrain"].tokenizer is loaded["sft"].tokenizer  # the same files: loaded once


def test_checkpoints_with_different_tokenizers_each_load_their_own(root, setting, monkeypatch, fresh_tokenizer):
    monkeypatch.setattr(checkpoints, "load_tokenizer", load_tokenizer)
    sft = checkpoint_dirs(root)["sft"]
    fresh_tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    save_checkpoint(load_checkpoint(sft).model, fresh_tokenizer, sft, training=json.loads((sft / RECORD_FILE).read_text())["training"])
    loaded, how = load_or_train(root, retrain=False)
    assert how == "loaded" and loaded["pretrain"].tokenizer is not loaded["sft"].tokenizer
    assert (loaded["pretrain"].tokenizer.pad_token, loaded["sft"].tokenizer.pad_token) == ("<|endoftext|>", "[PAD]")


def test_truncated_weights_retrain_with_one_line(root, setting, capsys):
    weights = root / "sft" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:1000])
    problem = (f"{(root / 'sft').as_posix()}: model.safetensors has 1,000 bytes, its record says {size:,} "
               "(truncated or overwritten)")
    assert refusal(root) == problem
    with pytest.raises(CheckpointError, match="model.safetensors has 1,000 bytes"):
        load_checkpoint(root / "sft")  # not a SafetensorError
    _, how = load_or_train(root)
    assert how == "trained"
    assert capsys.readouterr().out == f"training the checkpoints again: {problem}\n"
    assert weights.stat().st_size == size and has_checkpoint(root / "sft")


def test_a_changed_byte_is_caught_by_the_hash(root, setting):
    weights = root / "pretrain" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert refusal(root).endswith("pretrain: model.safetensors does not match the sha256 in its record (changed after it was saved)")


def test_truncated_weights_without_a_record_give_a_checkpoint_error(root, setting):
    """A directory without a record (made by plain save_pretrained) still fails clearly."""
    directory = root / "sft"
    (directory / RECORD_FILE).unlink()
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"sft: cannot be loaded \(SafetensorError: Error while deserializing header") as error:
        load_checkpoint(directory)
    assert isinstance(error.value.__cause__.__cause__, SafetensorError)


def test_missing_file(root, setting):
    (root / "sft" / "tokenizer.json").unlink()
    assert refusal(root).endswith("sft: tokenizer.json is missing")
    assert not has_checkpoint(root / "sft")


def test_missing_record(root, setting):
    (root / "pretrain" / RECORD_FILE).unlink()
    assert f"pretrain: has no {RECORD_FILE}" in refusal(root)


def test_stale_data(root, setting, records):
    edited = [dict(records[0], label=records[0]["label"] + "！"), *records[1:]]
    message = refusal(root, records=edited)
    assert message.startswith(f"{(root / 'pretrain').as_posix()}: was trained on other records (sha256 {records_sha256(records)[:12]}")
    assert message.endswith(f"the data now gives {records_sha256(edited)[:12]}...)")


def test_other_model_setting(root, setting, monkeypatch, tmp_path):
    monkeypatch.delenv(MODEL_ENV_VAR)
    assert refusal(root).endswith(
        f"pretrain: was trained with PVS_MODEL {str(setting)!r}, now PVS_MODEL is unset (the tiny default)"
    )
    other = tmp_path / "another-model"
    shutil.copytree(setting, other)
    monkeypatch.setenv(MODEL_ENV_VAR, str(other))
    assert refusal(root).endswith(f"was trained with PVS_MODEL {str(setting)!r}, now PVS_MODEL is {str(other)!r}")


def test_other_recipe_and_seed(root, setting, monkeypatch):
    assert refusal(root, seed=1).endswith("pretrain: was trained from seed 0, not 1")
    monkeypatch.setattr(checkpoints, "recipe", lambda model_name=None: TrainConfig(num_train_epochs=2, learning_rate=1e-2))
    assert refusal(root).endswith("pretrain: was trained with another recipe (num_train_epochs 1 -> 2)")


def test_checkpoints_swapped(root, setting):
    pretrain, sft = checkpoint_dirs(root).values()
    pretrain.rename(root / "tmp")
    sft.rename(pretrain)
    (root / "tmp").rename(sft)
    assert refusal(root).endswith("pretrain: holds a 'sft' checkpoint, not 'pretrain'")


def test_half_written_staging_directory_left_behind(root, setting, capsys):
    """A save killed halfway leaves a hidden staging directory and no checkpoint: it is not
    taken for one, the next save removes it."""
    sft = root / "sft"
    staging = root / ".sft.staging-killed"
    sft.rename(staging)
    (staging / RECORD_FILE).unlink()  # killed before the record was written
    (staging / "model.safetensors").write_bytes(b"\0" * 100)
    assert checkpoint_problem(sft) == "does not exist (an interrupted save left .sft.staging-killed)"
    _, how = load_or_train(root)
    assert how == "trained"
    assert capsys.readouterr().out == (
        f"training the checkpoints again: {sft.as_posix()}: does not exist (an interrupted save left .sft.staging-killed)\n"
    )
    assert not staging.exists() and has_checkpoint(sft)


def test_a_failed_save_keeps_the_old_checkpoint(root, setting, tokenizer, monkeypatch):
    """Saving is atomic: an error halfway leaves the old checkpoint as it was, and no staging."""
    before = {p.name: p.read_bytes() for p in (root / "sft").iterdir()}
    model = load_checkpoint(root / "sft").model

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, tokenizer, root / "sft")
    assert {p.name: p.read_bytes() for p in (root / "sft").iterdir()} == before
    assert sorted(p.name for p in root.iterdir()) == ["pretrain", "sft"]


def test_the_tiny_model_keeps_its_own_root_when_pvs_model_names_another(setting, monkeypatch, tmp_path):
    # notebooks 06 and 07 ask for the tiny model's checkpoints whatever PVS_MODEL says: they must
    # not be looked for (or trained over) in the directory the PVS_MODEL checkpoints use
    monkeypatch.setattr(checkpoints, "DEFAULT_OUTPUTS", tmp_path / "outputs")
    with pytest.raises(CheckpointError) as error:
        load_or_train(retrain=False, model_name=None)
    assert str(error.value).startswith(f"{(tmp_path / 'outputs' / 'tiny' / 'pretrain').as_posix()}: does not exist")
    with pytest.raises(CheckpointError) as error:
        load_or_train(retrain=False)
    assert str(error.value).startswith(f"{(tmp_path / 'outputs' / 'pretrain').as_posix()}: does not exist")
    with pytest.raises(ValueError, match="pass a root"):
        load_or_train(retrain=False, model_name="Qwen/Qwen2.5-0.5B")
    monkeypatch.delenv(MODEL_ENV_VAR)
    with pytest.raises(CheckpointError) as error:
        load_or_train(retrain=False, model_name=None)  # the tiny model is the setting: the usual root
    assert str(error.value).startswith(f"{(tmp_path / 'outputs' / 'pretrain').as_posix()}: does not exist")


def test_an_older_format_record_is_retrained_not_trusted(root, setting):
    directory = checkpoint_dirs(root)["pretrain"]
    record = json.loads((directory / RECORD_FILE).read_text())
    for key in ("collator", "environment"):
        del record["training"][key]
    record["format"] = 2  # saved before records carried the collator options, device and precision
    (directory / RECORD_FILE).write_text(json.dumps(record))
    assert refusal(root) == f"{directory.as_posix()}: {RECORD_FILE} is not a format-3 record"


def edit_training(directory, **changes):
    """Rewrite the ``training`` part of a checkpoint's record (the record is not in its own file list)."""
    record = json.loads((directory / RECORD_FILE).read_text())
    for key, value in changes.items():
        record["training"][key] = {**record["training"][key], **value}
    (directory / RECORD_FILE).write_text(json.dumps(record))


def test_a_checkpoint_trained_on_a_gpu_is_retrained_on_a_cpu(root, setting, capsys):
    """A GPU run (bf16 autocast) is another run: loading it silently on a CPU would pass its
    weights and its seconds off as this machine's."""
    pretrain = checkpoint_dirs(root)["pretrain"]
    edit_training(pretrain, environment={"device": "cuda", "precision": "bf16"})
    problem = (f"{pretrain.as_posix()}: was trained with another device or precision "
               "(device 'cuda' -> 'cpu', precision 'bf16' -> 'fp32')")
    assert refusal(root) == problem
    _, how = load_or_train(root)
    assert how == "trained" and capsys.readouterr().out == f"training the checkpoints again: {problem}\n"
    assert json.loads((pretrain / RECORD_FILE).read_text())["training"]["environment"] == {"device": "cpu", "precision": "fp32"}


def test_a_cpu_checkpoint_is_not_taken_for_a_gpu_run(root, setting, monkeypatch):
    monkeypatch.setattr(checkpoints, "training_environment", lambda config: {"device": "cuda", "precision": "bf16"})
    assert refusal(root).endswith("pretrain: was trained with another device or precision "
                                  "(device 'cpu' -> 'cuda', precision 'fp32' -> 'bf16')")


def test_other_collator_options(root, setting):
    sft = checkpoint_dirs(root)["sft"]
    edit_training(sft, collator={"mask_pad": "id"})  # the post's way: masks the real eos too
    assert refusal(root) == f"{sft.as_posix()}: was trained with other collator options (mask_pad 'id' -> 'position')"
    edit_training(sft, collator={"mask_pad": "position", "append_eos": False})
    assert refusal(root).endswith("sft: was trained with other collator options (append_eos False -> True)")


def test_the_environment_is_what_the_trainer_uses(setting):
    from helpers.training import training_arguments

    environment = checkpoints.training_environment(QUICK)
    arguments = training_arguments(QUICK, "unused")
    assert environment == {"device": arguments.device.type, "precision": "bf16" if arguments.bf16 else "fp32"}
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert environment["device"] == expected


def test_a_tokenizer_that_saves_as_the_checkpoints_is_used_instead_of_loading_theirs(root, setting, tokenizer, fresh_tokenizer):
    loaded, how = load_or_train(root, retrain=False, tokenizer=tokenizer)
    assert how == "loaded" and loaded["pretrain"].tokenizer is tokenizer and loaded["sft"].tokenizer is tokenizer
    fresh_tokenizer.add_special_tokens({"pad_token": "[PAD]"})  # saves other files: not used
    assert not checkpoints.saves_as(fresh_tokenizer, checkpoint_dirs(root)["pretrain"])
    loaded, _ = load_or_train(root, retrain=False, tokenizer=fresh_tokenizer)
    assert loaded["pretrain"].tokenizer is not fresh_tokenizer and loaded["pretrain"].tokenizer.pad_token == "<|endoftext|>"


def test_the_tiny_model_is_trained_when_asked_for_while_pvs_model_names_another(setting, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "DEFAULT_OUTPUTS", tmp_path / "outputs")
    loaded, how = load_or_train(model_name=None)
    assert how == "trained"
    for objective, directory in checkpoint_dirs(tmp_path / "outputs" / "tiny").items():
        config = json.loads((directory / "config.json").read_text())
        assert config["hidden_size"] == TinyQwenConfig().hidden_size != HIDDEN  # not the PVS_MODEL model
        assert json.loads((directory / RECORD_FILE).read_text())["training"]["model_setting"] is None
    again, how = load_or_train(model_name=None)
    assert how == "loaded"  # its record matches what was asked for: no retraining on every call
