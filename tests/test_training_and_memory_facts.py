"""Library and run facts that notebooks 04 and 05 (and their appendices) state in prose: each one
read from the installed libraries, a saved checkpoint, the stored logs or a short run, so that a
changed default or a wrong sentence shows here."""

import json
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from helpers import (PRETRAINED_RECIPE, PretrainCollator, TrainConfig, load_model, load_records, load_tokenizer,
                     qwen25_05b_config, recipe)
from helpers.training import training_arguments

ROOT = Path(__file__).resolve().parent.parent
GPU_LOGS = ROOT / "benchmarks" / "gpu"


def log_rows(path: Path) -> list[dict]:
    return [json.loads(line.split(" ", 1)[1]) for line in path.read_text().splitlines() if line.startswith("MATRIX_ROW ")]


def test_saved_config_has_no_pad_id_and_generation_config_has_the_eos(tmp_path, tokenizer):
    """04 "Where the post differs" and 05 section 2: the pad id 151643 a checkpoint carries is in
    generation_config.json; config.json's pad_token_id stays null (load_model leaves it alone)."""
    load_model(None, tokenizer, seed=0).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["pad_token_id"] is None
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation["pad_token_id"] == generation["eos_token_id"] == tokenizer.eos_token_id == 151643


def test_pretrained_recipe_is_the_posts_hyperparameters_but_seed_0(tmp_path):
    """04 section 2: PRETRAINED_RECIPE runs at seed 0; the post leaves TrainingArguments' seed at 42."""
    defaults = TrainingArguments(output_dir=str(tmp_path))
    assert defaults.seed == 42 and PRETRAINED_RECIPE.seed == TrainConfig().seed == 0
    assert not defaults.bf16 and not defaults.fp16  # the post trains in fp32 (its fp16=True is commented out)


def test_training_arguments_add_more_than_the_four_printed(tmp_path):
    """04 section 2: "adding, among others, the first three printed below"; the fourth, report_to,
    is set explicitly to what transformers 5 defaults to anyway: no tracker."""
    config = recipe(None)
    arguments = training_arguments(config, str(tmp_path))
    defaults = TrainingArguments(output_dir=str(tmp_path))
    added = {name for name in ("seed", "disable_tqdm", "ddp_find_unused_parameters", "dataloader_pin_memory",
                               "logging_strategy", "save_strategy", "remove_unused_columns", "report_to")
             if getattr(arguments, name) != getattr(defaults, name)}
    expected = {"seed", "disable_tqdm", "ddp_find_unused_parameters", "logging_strategy", "save_strategy",
                "remove_unused_columns"}
    if not torch.cuda.is_available():
        expected.add("dataloader_pin_memory")  # pinned only on a GPU; the default pins
    assert added == expected
    assert arguments.report_to == defaults.report_to == []


def test_post_run_as_given_would_save_at_its_last_step(tmp_path):
    """04 "Where the post differs": the post shows no trainer.train() nor save. Had it run
    trainer.train() with its arguments (save_strategy left at "steps", save_steps at 500), the
    installed transformers would still save once, at the last of its 10 epochs x 3 steps."""
    from transformers.trainer_callback import DefaultFlowCallback, TrainerControl, TrainerState

    args = TrainingArguments(output_dir=str(tmp_path), logging_strategy="epoch")
    assert (args.save_strategy.value, args.save_steps) == ("steps", 500)
    saves = []
    for step in (29, 30):
        state = TrainerState(global_step=step, max_steps=30, save_steps=args.save_steps, eval_steps=500,
                             logging_steps=args.logging_steps)
        saves.append(DefaultFlowCallback().on_step_end(args, state, TrainerControl()).should_save)
    assert saves == [False, True]


def test_tokenizer_model_max_length_is_far_beyond_any_record(tokenizer, records):
    """04 step 1: the post truncates at tokenizer.model_max_length, 131,072 tokens."""
    assert tokenizer.model_max_length == 131_072
    assert max(len(tokenizer(r["instruct"] + r["input"] + r["label"])["input_ids"]) for r in records) < 100


def test_exact_recall_comes_after_10_epochs():
    """04 section 2: the recipe's 20 epochs are 10 to exact recall (30 steps) plus 10 of margin."""
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    config = recipe(None)
    assert results["steps_to_exact_recall"] == 30 == 10 * 3
    assert config.num_train_epochs == 20 and config.per_device_train_batch_size == 2


def test_the_tiny_model_and_qwen25_05b_tie_their_embeddings(tokenizer):
    """04 section 3, appendix/04_tied_embeddings: one matrix at the input and at the output."""
    model = load_model(None, tokenizer, seed=0)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert qwen25_05b_config().tie_word_embeddings


def test_the_tiny_model_is_built_in_torchs_default_fp32(tokenizer):
    """appendix/04_memory_measured section 1: Qwen2ForCausalLM(config), no dtype passed."""
    assert torch.get_default_dtype() == torch.float32
    assert {p.dtype for p in load_model(None, tokenizer, seed=0).parameters()} == {torch.float32}


def test_one_bool_mask_for_all_layers_and_a_float_copy_per_layer_on_the_cpu(tokenizer, records, monkeypatch):
    """appendix/04_memory_measured section 2 (and saved_activation_bytes' docstring): transformers
    passes one shared bool (batch, 1, length, length) mask to every layer's SDPA call; what
    autograd keeps per layer is a float32 copy, made inside PyTorch's CPU kernel."""
    model = load_model(None, tokenizer, seed=0).train()
    batch = PretrainCollator(tokenizer)(records[:2])
    rows, length = batch["input_ids"].shape
    masks, original = [], torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        masks.append(kwargs.get("attn_mask"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((t.dtype, tuple(t.shape))) or t, lambda t: t):
        model(**batch)
    layers = model.config.num_hidden_layers
    assert len(masks) == layers and all(m is masks[0] for m in masks)
    assert masks[0].dtype == torch.bool and tuple(masks[0].shape) == (rows, 1, length, length)
    assert saved.count((torch.float32, (rows, 1, length, length))) == layers


def test_fp16_range_and_bf16_rounding():
    """04 section 5: fp16 tops out at 65,504 and its smallest number is 2^-24 (6e-8); bf16 keeps 8
    significant bits and rounds away updates under about 0.2-0.4 % of a weight."""
    assert torch.finfo(torch.float16).max == 65504
    assert torch.tensor(2.0**-24).half().item() == 2.0**-24 and torch.tensor(2.0**-26).half().item() == 0
    assert torch.finfo(torch.bfloat16).bits == 16 and torch.finfo(torch.bfloat16).eps == 2.0**-7

    def survives(weight, relative_update):
        w = torch.tensor(weight, dtype=torch.bfloat16)
        return (w + torch.tensor(weight * relative_update, dtype=torch.bfloat16)).item() != w.item()

    assert not survives(1.0, 0.0038) and survives(1.0, 0.0041)      # just above a power of 2: 0.4 %
    assert not survives(1.99, 0.0019) and survives(1.99, 0.0021)    # just below the next: 0.2 %


def test_trainers_optimizer_has_the_recipes_weight_decay(tmp_path, tokenizer):
    """appendix/04_memory_measured section 3: the Trainer builds AdamW with the arguments'
    weight_decay (0.0) in both its parameter groups, not torch's default 0.01."""
    arguments = training_arguments(recipe(None), str(tmp_path))
    optimizer = Trainer(model=load_model(None, tokenizer, seed=0), args=arguments).create_optimizer()
    assert type(optimizer) is torch.optim.AdamW
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.0]
    assert torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults["weight_decay"] == 0.01


def test_gpu_logs_earlier_runs_agree_on_allocated_not_on_reserved():
    """appendix/04_memory_measured section 4: the single runs under transformers 5.17 measured the
    matrix run's allocated peaks to within 0.006 GB; reserved at batch 32 differed by ~10 GB."""
    matrix = {row["batch_size"]: row for row in log_rows(GPU_LOGS / "matrix-h200.log")
              if row["option_set"] in ("--batch-size 8", "--batch-size 32")}
    singles = {8: "q05b_b8_autocast-bf16.log", 32: "q05b_b32_autocast.log"}
    for batch_size, name in singles.items():
        single = next(json.loads(line) for line in (GPU_LOGS / name).read_text().splitlines() if line.startswith("{"))
        allocated = abs(single["peak_allocated_bytes"] - matrix[batch_size]["peak_allocated_bytes"]) / 1e9
        reserved = (single["peak_reserved_bytes"] - matrix[batch_size]["peak_reserved_bytes"]) / 1e9
        assert allocated < 0.006
        assert abs(reserved) < 0.01 if batch_size == 8 else 10 < reserved < 11


def test_generate_fills_only_unset_fields_from_the_stored_generation_config(tokenizer):
    """05 section 2 and appendix/05_stored_generation_settings: a GenerationConfig passed to
    generate is completed from model.generation_config where its fields are None; naming
    repetition_penalty=1.0 and no_repeat_ngram_size=0 switches the stored ones off."""
    from transformers import GenerationConfig

    model = load_model(None, tokenizer, seed=0)
    model.generation_config.repetition_penalty, model.generation_config.no_repeat_ngram_size = 1.5, 2
    fields = ("repetition_penalty", "no_repeat_ngram_size", "eos_token_id")
    filled, _ = model._prepare_generation_config(GenerationConfig(do_sample=False, max_new_tokens=4))
    assert tuple(getattr(filled, f) for f in fields) == (1.5, 2, 151643)
    named, _ = model._prepare_generation_config(
        GenerationConfig(do_sample=False, max_new_tokens=4, repetition_penalty=1.0, no_repeat_ngram_size=0))
    assert tuple(getattr(named, f) for f in fields) == (1.0, 0, 151643)
