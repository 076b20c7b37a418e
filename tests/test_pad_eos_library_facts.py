"""Library facts that notebook 02's appendices state (the 21/22 review of notebook 02).

- ``Trainer.train()``'s ``align_special_tokens`` (transformers 5.23, ``trainer_utils.py``) handles the
  eos, bos and pad ids only; it writes an id only where the model's config or generation config lacks it
  or holds another value, puts the tokenizer's eos in front of an existing list of eos ids, and warns
  only when something changed (appendix/02_padding_idx_and_resizing, section 1).
- With a tied output layer, the eos row gets a gradient even from a text without eos, so a row zeroed as
  ``padding_idx`` still learns through the output layer (same appendix, cell 6).
- ``mean_resizing=True`` averages *all* existing rows, spare rows included (appendix/02_variants_up_close,
  section 2).
- Qwen2.5's ``tokenizer.model_max_length`` is 131,072, so the post's ``truncation=True,
  max_length=tokenizer.model_max_length`` never cuts its short poems; a tokenizer cuts only when given
  ``truncation=True`` and/or a ``max_length`` (transformers 5.23: a ``max_length`` alone cuts too)
  (appendix/02_variants_up_close, section 5).
"""

import copy
import inspect
import logging
import re
from types import SimpleNamespace

import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
from transformers.trainer_utils import align_special_tokens

from helpers import TinyQwenConfig, add_pad_token
from post_facts import EOS_ID

IM_END_ID = 151645
PAD_ID = 151665


def fake_model(**config_ids):
    """Only what align_special_tokens reads: a config and a generation config."""
    config = Qwen2Config(vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         num_key_value_heads=1, intermediate_size=8, **config_ids)
    generation = GenerationConfig(**{k: v for k, v in config_ids.items() if v is not None})
    return SimpleNamespace(config=config, generation_config=generation)


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "transformers.trainer_utils"]


def test_align_special_tokens_handles_eos_bos_and_pad_only():
    names = re.findall(r'_align_special_token\(\s*"(\w+)"', inspect.getsource(align_special_tokens))
    assert names == ["eos_token_id", "bos_token_id", "pad_token_id"]


def test_align_special_tokens_writes_only_what_differs_and_warns_only_then(tokenizer, caplog):
    pad_tokenizer = add_pad_token(tokenizer)
    model = fake_model(eos_token_id=EOS_ID, bos_token_id=None, pad_token_id=None)
    with caplog.at_level(logging.WARNING, logger="transformers.trainer_utils"):
        align_special_tokens(model, pad_tokenizer)
    assert model.config.pad_token_id == PAD_ID and model.generation_config.pad_token_id == PAD_ID
    assert model.config.eos_token_id == EOS_ID and model.config.bos_token_id is None  # Qwen has no bos
    (message,) = warnings_of(caplog)
    assert message.endswith("Updated tokens: {'pad_token_id': 151665}.")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="transformers.trainer_utils"):
        align_special_tokens(model, pad_tokenizer)  # already aligned: nothing changes, nothing logged
    assert warnings_of(caplog) == []


def test_align_special_tokens_puts_eos_in_front_of_an_existing_list(tokenizer):
    model = fake_model(eos_token_id=[IM_END_ID], pad_token_id=EOS_ID)
    align_special_tokens(model, tokenizer)
    assert model.config.eos_token_id == [EOS_ID, IM_END_ID]  # prepended, nothing dropped
    assert model.generation_config.eos_token_id == [EOS_ID, IM_END_ID]


def test_a_zeroed_padding_idx_row_still_learns_through_the_tied_output_layer(tokenizer, records):
    config = TinyQwenConfig().to_qwen2_config()
    config.pad_token_id = EOS_ID
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    embedding = model.get_input_embeddings()
    assert embedding.padding_idx == EOS_ID and torch.count_nonzero(embedding.weight[EOS_ID]) == 0
    assert model.config.tie_word_embeddings and model.get_output_embeddings().weight is embedding.weight
    ids = tokenizer(records[1]["instruct"] + records[1]["input"] + records[1]["label"], return_tensors="pt")["input_ids"]
    assert EOS_ID not in ids  # no eos in the input, none as a target
    model(input_ids=ids, labels=ids).loss.backward()
    assert torch.count_nonzero(embedding.weight.grad[EOS_ID]) == embedding.weight.shape[1]  # every value moves


def test_mean_resizing_averages_all_existing_rows_spare_rows_included():
    config = Qwen2Config(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         num_key_value_heads=1, intermediate_size=8, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        model.get_input_embeddings().weight[90:] = 5.0  # "spare" rows no token uses
    old = copy.deepcopy(model.get_input_embeddings().weight.detach())
    model.resize_token_embeddings(101, mean_resizing=True)
    new_row = model.get_input_embeddings().weight[100].detach()
    assert torch.allclose(new_row, old.mean(dim=0), atol=1e-3)  # the mean of all 100 rows
    assert not torch.allclose(new_row, old[:90].mean(dim=0), atol=0.1)  # not of the first 90 only


def test_qwen_model_max_length_never_truncates_the_poems(tokenizer, records):
    assert tokenizer.model_max_length == 131072
    for r in records:
        text = r["instruct"] + r["input"] + r["label"] + tokenizer.eos_token
        cut = tokenizer(text, truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
        assert cut == tokenizer(text)["input_ids"] and cut[-1] == EOS_ID


def test_truncation_only_when_asked(tokenizer, records):
    text = records[0]["instruct"] + records[0]["input"] + records[0]["label"] + tokenizer.eos_token
    assert len(tokenizer(text)["input_ids"]) == 48  # no max_length, no truncation: never cut
    for kwargs in ({"truncation": True, "max_length": 32}, {"max_length": 32}):  # 5.23: max_length alone cuts too
        cut = tokenizer(text, **kwargs)["input_ids"]
        assert len(cut) == 32 and EOS_ID not in cut, kwargs
