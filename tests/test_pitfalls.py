"""helpers.pitfalls: the variants' batches, the measurements, the table, the training helper."""

import dataclasses
import unicodedata

import pytest
import torch
from transformers import Qwen2ForCausalLM

from helpers import (
    IGNORE_INDEX, VARIANTS, Generation, Measurement, TinyQwenConfig, TrainConfig, VariantRun,
    add_pad_token, ensure_embedding_rows, load_model, results_table, train_variant,
)
from helpers.pitfalls import TABLE_COLUMNS, describe_run, loss_ceiling, prompt_of, variant_tokenizer
from post_facts import EOS_ID, PAD_ID

#: Few epochs: enough for the eos probability of B to move well away from A's, in seconds.
SHORT = TrainConfig(num_train_epochs=3, print_loss=False)
BUDGET = 6  # new tokens per generation in the short runs


@pytest.fixture(scope="module")
def pad_tokenizer(tokenizer):
    return add_pad_token(tokenizer)


def batch_of(name, tokenizer, records):
    variant = VARIANTS[name]
    tok = variant_tokenizer(variant, tokenizer)
    return tok, variant.collator(tok)(records)


# --- the batches each variant trains on -----------------------------------------------------

def test_variant_a_never_trains_eos(tokenizer, records):
    tok, batch = batch_of("A", tokenizer, records)
    assert tok is tokenizer and tok.pad_token_id == EOS_ID
    assert (batch["input_ids"] == EOS_ID).sum() >= len(records)  # eos is in the text...
    assert not (batch["labels"] == EOS_ID).any()  # ...but masked with the padding


def test_variants_b_and_c_train_exactly_one_eos_per_record(tokenizer, records):
    for name in "BC":
        tok, batch = batch_of(name, tokenizer, records)
        labels, lengths = batch["labels"], batch["attention_mask"].sum(dim=1)
        assert (labels == EOS_ID).sum() == len(records), name
        assert all(labels[row, length - 1] == EOS_ID for row, length in enumerate(lengths)), name
        assert (labels[batch["attention_mask"] == 0] == IGNORE_INDEX).all(), name
    assert tok.pad_token_id == PAD_ID and len(tokenizer) == 151665  # C got a copy with [PAD]


def test_variant_d_trains_pad_and_has_no_eos(tokenizer, records):
    tok, batch = batch_of("D", tokenizer, records)
    assert tok.pad_token == "[PAD]"
    assert not (batch["input_ids"] == EOS_ID).any()
    padding = batch["attention_mask"] == 0
    assert padding.any() and (batch["labels"][padding] == PAD_ID).all()


def test_variant_e_trains_eos_after_eos(tokenizer, records):
    tok, batch = batch_of("E", tokenizer, records)
    padding = batch["attention_mask"] == 0
    assert padding.any() and (batch["labels"][padding] == EOS_ID).all()
    assert (batch["labels"] == EOS_ID).sum() == len(records) + padding.sum()
    assert not (batch["labels"] == IGNORE_INDEX).any()


def test_transformers_lm_collator_masks_the_eos_like_variant_a(tokenizer, pad_tokenizer, records):
    """DataCollatorForLanguageModeling(mlm=False) sets labels[labels == pad_token_id] = -100:
    the library's own causal-LM collator is variant A on a pad == eos tokenizer."""
    from transformers import DataCollatorForLanguageModeling

    for name, tok, eos_labels in (("A", tokenizer, 0), ("C", pad_tokenizer, 2)):
        features = [tok(prompt_of(r) + r["label"] + tok.eos_token) for r in records[:2]]
        library = DataCollatorForLanguageModeling(tok, mlm=False)(features)
        ours = VARIANTS[name].collator(tok)(records[:2])
        for key in ("input_ids", "attention_mask", "labels"):
            assert torch.equal(library[key], ours[key]), (name, key)
        assert int((library["input_ids"] == EOS_ID).sum()) >= 2
        assert int((library["labels"] == EOS_ID).sum()) == eos_labels, name


def test_variant_tokenizer_shares_when_it_can(tokenizer, pad_tokenizer):
    assert variant_tokenizer(VARIANTS["C"], pad_tokenizer) is pad_tokenizer
    assert variant_tokenizer(VARIANTS["B"], tokenizer) is tokenizer
    back_to_eos = variant_tokenizer(VARIANTS["B"], pad_tokenizer)
    assert back_to_eos is not pad_tokenizer and back_to_eos.pad_token_id == EOS_ID
    assert pad_tokenizer.pad_token_id == PAD_ID  # the shared one was not changed


# --- counting ------------------------------------------------------------------------------

def fake_measurement():
    generations = [
        Generation("a", [1, 2, EOS_ID], True),
        Generation("b", [3] * 8, False),
        Generation("c", [4, 5, 6, 7, EOS_ID], True),
        Generation("d", [PAD_ID] * 8, False),
    ]
    return Measurement(generations, [True, True, False, True], [0.5, 0.0, 0.25, 0.05], 8, [EOS_ID])


def test_measurement_counts():
    m = fake_measurement()
    assert (m.n, m.stops, m.recalls) == (4, 2, 3)
    assert m.mean_new_tokens == pytest.approx((3 + 8 + 5 + 8) / 4)
    assert m.mean_eos_probability == pytest.approx(0.2)
    assert m.tail(2, 3) == [6, 7, EOS_ID] and m.tail(0, 10) == [1, 2, EOS_ID]


def test_results_table_without_the_tail_column(tokenizer):
    run = VariantRun(VARIANTS["B"], tokenizer, None, None, fake_measurement())
    header, _, row = results_table([run], tail_index=None).splitlines()
    assert header.rstrip().endswith("p(eos)") and "tail" not in header
    assert row.endswith("0.20")


def test_results_table_can_leave_out_the_stop_ids(tokenizer):
    run = VariantRun(VARIANTS["B"], tokenizer, None, None, fake_measurement())
    header, _, row = results_table([run], tail_index=None, stop_ids=False).splitlines()
    assert "stop ids" not in header and header.split() == ["variant", "pad", "token", "mask_pad", "eos", "appended", "stop",
                                                           "exact", "recall", "mean", "new", "tokens", "p(eos)"]
    assert row.endswith("0.20") and "151643," not in row
    assert "stop ids" in results_table([run], tail_index=None).splitlines()[0]


def test_loss_ceiling_is_a_coarse_bound():
    assert loss_ceiling(0.064) == loss_ceiling(0.065) == 0.1
    assert loss_ceiling(12.14) == 20.0 and loss_ceiling(0.0) == 0.01 and loss_ceiling(1e9) == float("inf")
    assert all(loss < loss_ceiling(loss) for loss in (0.01, 0.3, 4.99, 5.0))


def test_results_table_columns_and_rows(tokenizer, pad_tokenizer):
    m = fake_measurement()
    runs = [
        VariantRun(VARIANTS["A"], tokenizer, None, None, m),
        VariantRun(VARIANTS["D"], pad_tokenizer, None, None, m, label="D, stop on [PAD]"),
    ]
    lines = results_table(runs, tail_index=3, tail_length=2).splitlines()
    header, rule, row_a, row_d = lines
    for column in TABLE_COLUMNS + ("tail of record 3's ids",):
        assert column in header
    assert set(rule) == {"-", " "}
    starts = [header.index(column) for column in ("stop ids", "exact recall", "p(eos)")]
    for row in (row_a, row_d):  # fixed-width: every value starts under its column's name
        assert [row[start - 1] for start in starts] == [" "] * 3
        assert "2/4" in row and "3/4" in row and "6.0" in row and "0.20 " in row
        assert row.endswith(f"{PAD_ID} {PAD_ID}")
    assert row_a.startswith("A ") and "<|endoftext|> 151643" in row_a and "'id'" in row_a
    assert row_d.startswith("D, stop on [PAD]") and "[PAD] 151665" in row_d and "False (trained)" in row_d


# --- training and measuring on a shrunken recipe ------------------------------------------

@pytest.fixture(scope="module")
def short_runs(tokenizer, pad_tokenizer, records):
    return {
        name: train_variant(VARIANTS[name], pad_tokenizer if VARIANTS[name].pad_token else tokenizer,
                            records, max_new_tokens=BUDGET, config=SHORT)
        for name in "AB"
    }


def test_train_variant_runs_the_recipe(short_runs, records):
    for run in short_runs.values():
        steps_per_epoch = -(-len(records) // SHORT.per_device_train_batch_size)
        assert run.training.steps == SHORT.num_train_epochs * steps_per_epoch
        assert len(run.training.epoch_losses) == SHORT.num_train_epochs
        assert run.training.epoch_losses[-1] < run.training.epoch_losses[0]
        assert not run.model.training  # left in eval mode for generation
        # no pad id reaches the config (a saved checkpoint would reload with padding_idx) nor the embedding
        assert run.model.config.pad_token_id is None
        assert run.model.get_input_embeddings().padding_idx is None


def test_measure_is_consistent_with_its_generations(short_runs, tokenizer, records):
    m = short_runs["B"].measurement
    assert m.n == len(records) and m.stop_token_ids == [EOS_ID] and m.max_new_tokens == BUDGET
    for generation, recalled, record in zip(m.generations, m.recalled, records):
        assert 1 <= len(generation.token_ids) <= BUDGET
        assert generation.stopped_on_eos == (generation.token_ids[-1] == EOS_ID)
        label = unicodedata.normalize("NFC", record["label"])
        assert recalled == tokenizer.decode(generation.token_ids).startswith(label)
    assert all(0.0 <= p <= 1.0 for p in m.eos_probabilities)


def test_masked_eos_gets_no_probability_trained_eos_does(short_runs):
    """Already after a few steps: B raises p(eos) after the poem, A only lowers it."""
    a, b = (short_runs[name].measurement.mean_eos_probability for name in "AB")
    assert a < 1 / 151936  # below a uniform guess over the embedding rows
    assert b > 20 * a  # measured after 3 epochs: about 2,000 times (A 1.5e-6, B 3.3e-3)


def test_remeasured_with_other_stop_ids(short_runs, records):
    run = short_runs["A"]
    first_ids = [g.token_ids[0] for g in run.measurement.generations]
    again = run.remeasured("A, stop on the first token", stop_token_ids=[EOS_ID, *first_ids])
    assert again.label == "A, stop on the first token" and again.model is run.model
    assert again.measurement.stops == len(records)
    assert all(len(g.token_ids) == 1 for g in again.measurement.generations)
    assert run.measurement.stops == 0  # the original row is unchanged
    assert "variant A, stop on the first token" in describe_run(again)


def test_variant_with_new_pad_trains_without_resizing(tokenizer, records):
    run = train_variant(VARIANTS["D"], tokenizer, records[:2], max_new_tokens=2,
                        config=dataclasses.replace(SHORT, num_train_epochs=1))
    assert run.tokenizer.pad_token_id == PAD_ID and len(tokenizer) == 151665
    assert run.model.get_input_embeddings().num_embeddings == 151936  # 151665 < 151936: no resize
    assert run.model.generation_config.pad_token_id == PAD_ID
    assert run.measurement.n == 2 and run.measurement.max_new_tokens == 2


# --- embedding rows ----------------------------------------------------------------------

def test_ensure_embedding_rows_grows_and_never_shrinks(tokenizer, pad_tokenizer, records):
    tiny = load_model(tokenizer=pad_tokenizer)
    assert ensure_embedding_rows(tiny, pad_tokenizer) is False
    assert tiny.get_input_embeddings().num_embeddings == 151936

    torch.manual_seed(0)
    small = Qwen2ForCausalLM(dataclasses.replace(TinyQwenConfig(), vocab_size=len(tokenizer)).to_qwen2_config())
    batch = VARIANTS["C"].collator(pad_tokenizer)(records[:2])
    with pytest.raises(IndexError, match="index out of range"):
        small(**batch)
    old = small.get_input_embeddings().weight.detach().clone()
    torch.manual_seed(0)
    assert ensure_embedding_rows(small, pad_tokenizer) is True
    weight = small.get_input_embeddings().weight
    assert weight.shape == (151680, 64)  # 151666 rounded up to a multiple of 64
    assert small.get_output_embeddings().weight is weight  # still tied
    assert torch.equal(weight[:151665], old)
    assert torch.allclose(weight[PAD_ID], old.mean(dim=0), atol=1e-4)  # mean_resizing
    with torch.no_grad():
        assert torch.isfinite(small(**batch).loss)

    # train_variant accepts such a grown model and aligns its generation pad id with the tokenizer's
    assert small.config.pad_token_id is None
    run = train_variant(VARIANTS["D"], pad_tokenizer, records[:2], max_new_tokens=2, model=small,
                        config=dataclasses.replace(SHORT, num_train_epochs=1))
    assert run.model is small and run.training.steps == 1
    assert small.generation_config.pad_token_id == PAD_ID and small.config.pad_token_id is None
    assert small.get_input_embeddings().padding_idx is None
    assert small.get_input_embeddings().num_embeddings == 151680  # not resized again


# Notebook 02's headline on the full recipe (A and D never stop, B, C and E always do) is not
# trained again here: 02 trains all five, asserts the stop counts in the cell that prints the table,
# and nbval compares the table; the short runs above check the same mechanism on a shrunken recipe.
