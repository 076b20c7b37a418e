"""What a pad id in a model's config does (notebook 02, and its appendix on padding_idx).

Pinned against the installed libraries (torch 2.13, transformers 5.23):
- ``torch.nn.Embedding`` zeroes its ``padding_idx`` row itself (``reset_parameters``), and
  transformers' ``_init_weights`` zeroes it again: a *fresh* model starts with that row at zero;
- a model *loaded* from a checkpoint keeps the row it saved; only the input-side gradient block
  (the lookup's backward) applies to it;
- a ``Trainer`` given the tokenizer (``processing_class``) writes the tokenizer's pad id into
  ``model.config`` when ``train()`` starts (``trainer_utils.align_special_tokens``), while the
  live embedding keeps ``padding_idx=None``; the next load builds the embedding with it.
"""

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, PrinterCallback, Qwen2ForCausalLM, Trainer
from transformers.utils import logging as hf_logging

from helpers import VARIANTS, TinyQwenConfig, TrainConfig, add_pad_token, load_model
from helpers.training import training_arguments
from post_facts import PAD_ID

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_torch_embedding_zeroes_its_padding_row_itself():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(10, 4, padding_idx=3)
    assert torch.count_nonzero(embedding.weight[3]) == 0
    assert all(torch.count_nonzero(embedding.weight[row]) == 4 for row in (0, 2, 4, 9))
    with torch.no_grad():
        embedding.weight.fill_(1.0)
    embedding.reset_parameters()  # the method nn.Embedding's constructor calls
    assert torch.count_nonzero(embedding.weight[3]) == 0


def test_transformers_init_weights_zeroes_the_padding_row_again():
    qwen2_config = TinyQwenConfig().to_qwen2_config()
    qwen2_config.pad_token_id = 151643
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(qwen2_config)
    assert torch.count_nonzero(model.get_input_embeddings().weight[151643]) == 0
    embedding = torch.nn.Embedding(10, 4, padding_idx=3)
    with torch.no_grad():
        embedding.weight.fill_(1.0)
    model._init_weights(embedding)  # redraws the weights, then zeroes the padding row
    assert torch.count_nonzero(embedding.weight[3]) == 0
    assert not torch.equal(embedding.weight[0], torch.ones(4))


@pytest.fixture(scope="module")
def aligned_by_trainer(tokenizer, records, tmp_path_factory):
    """One epoch of variant C with the [PAD] tokenizer handed to the Trainer, then saved."""
    pad_tokenizer = add_pad_token(tokenizer)
    model = load_model(tokenizer=pad_tokenizer)
    before = model.config.pad_token_id
    logged = []

    def keep(record):
        logged.append(record.getMessage())
        return False

    logger = logging.getLogger("transformers.trainer_utils")
    logger.addFilter(keep)
    out = tmp_path_factory.mktemp("aligned")
    try:
        args = training_arguments(TrainConfig(num_train_epochs=1, print_loss=False), str(out / "trainer"))
        trainer = Trainer(model=model, args=args, train_dataset=records,
                          data_collator=VARIANTS["C"].collator(pad_tokenizer), processing_class=pad_tokenizer)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    finally:
        logger.removeFilter(keep)
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out / "model")
        reloaded = AutoModelForCausalLM.from_pretrained(out / "model")
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    return {"before": before, "model": model, "reloaded": reloaded, "logged": logged, "dir": out / "model",
            "pad_tokenizer": pad_tokenizer}


def test_trainer_with_the_tokenizer_writes_the_pad_id_into_the_config(aligned_by_trainer):
    model = aligned_by_trainer["model"]
    assert aligned_by_trainer["before"] is None
    assert model.config.pad_token_id == PAD_ID
    assert model.generation_config.pad_token_id == PAD_ID
    assert model.get_input_embeddings().padding_idx is None  # the live embedding was built before
    assert any("Updated tokens: {'pad_token_id': 151665}" in m for m in aligned_by_trainer["logged"])
    assert json.loads((aligned_by_trainer["dir"] / "config.json").read_text())["pad_token_id"] == PAD_ID


def test_a_reloaded_model_keeps_its_pad_row_but_freezes_its_input_side(aligned_by_trainer, records):
    saved = aligned_by_trainer["model"].get_input_embeddings().weight[PAD_ID].detach()
    embedding = aligned_by_trainer["reloaded"].get_input_embeddings()
    assert embedding.padding_idx == PAD_ID
    assert torch.count_nonzero(saved) > 0 and torch.equal(embedding.weight[PAD_ID], saved)  # not zeroed on load
    ids = VARIANTS["C"].collator(aligned_by_trainer["pad_tokenizer"])(records[:2])["input_ids"]
    assert (ids == PAD_ID).any()
    (grad,) = torch.autograd.grad(embedding(ids).square().sum(), embedding.weight)
    assert torch.count_nonzero(grad[PAD_ID]) == 0
    assert torch.count_nonzero(grad[int(ids[0, 0])]) > 0


def _markdown(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


def test_notebook_02_qualifies_the_row_count_by_model_size():
    """151,936 rows hold for Qwen2.5-0.5B/1.5B/3B only; 7B and up have 152,064 (and untied embeddings)."""
    paths = [NOTEBOOKS / "02_pad_eos_pitfalls.ipynb", *sorted((NOTEBOOKS / "appendix").glob("02_*.ipynb"))]
    cells = [text for path in paths for text in _markdown(path) if "151,936 rows" in text]
    assert cells, "02 states the row count somewhere"
    assert all("152,064" in text and "0.5B" in text for text in cells)
