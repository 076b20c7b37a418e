"""helpers.packing: pretraining blocks, the packing collator, and the transformers behaviour it relies on.

The loss equalities run the tiny model on the five records (untrained weights, seed 0). The
use_cache tests pin transformers 5.23's behaviour with sdpa attention (the series' default):
packed rows are isolated per record only when the forward pass gets no attention_mask and
builds no KV cache (masking_utils._preprocess_mask_arguments), and the Trainer turns the cache
off (TrainingArguments.use_cache, written into model.config by Trainer.__init__).
"""

import dataclasses

import pytest
import torch
from transformers import DynamicCache, Trainer
from transformers.masking_utils import create_causal_mask, find_packed_sequence_indices

from helpers import (
    IGNORE_INDEX, PackingCollator, PretrainCollator, SFTCollator, TrainConfig, load_model, pack_into_blocks, recipe,
    train,
)
from helpers.training import training_arguments
from post_facts import EOS_ID

COLLATORS = {"pretrain": (PretrainCollator, False), "sft": (SFTCollator, True)}
TOLERANCE = 1e-5  # float32 sums in another order; the differences below are 1e-2 and more


# --- pack_into_blocks ------------------------------------------------------------------------

DOCUMENTS = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10, 11]]
SEPARATOR = 0


@pytest.mark.parametrize("block_size", [1, 2, 3, 4, 7, 15, 16, 100])
def test_blocks_keep_every_id_in_order_with_a_separator_after_each_document(block_size):
    blocks = pack_into_blocks(DOCUMENTS, block_size, SEPARATOR)
    stream = [token for block in blocks for token in block]
    assert stream == [1, 2, 3, 0, 4, 5, 0, 6, 0, 7, 8, 9, 10, 11, 0]
    assert all(len(block) == block_size for block in blocks[:-1])
    assert 1 <= len(blocks[-1]) <= block_size
    assert len(blocks) == -(-len(stream) // block_size)


def test_blocks_of_the_records_are_the_padded_rows_without_pads(tokenizer, records):
    documents = [tokenizer(r["instruct"] + r["input"] + r["label"])["input_ids"] for r in records]
    blocks = pack_into_blocks(documents, 16, EOS_ID)
    batch = PretrainCollator(tokenizer)(records)
    assert [t for block in blocks for t in block] == batch["input_ids"][batch["attention_mask"].bool()].tolist()
    assert [len(b) for b in blocks] == [16] * 12 + [2]
    assert sum(block.count(EOS_ID) for block in blocks) == len(records)


def test_blocks_accept_tensors_and_empty_documents():
    blocks = pack_into_blocks([torch.tensor([5, 6]), [], (7,)], 2, 9)
    assert blocks == [[5, 6], [9, 9], [7, 9]]


@pytest.mark.parametrize("kwargs, message", [
    ({"block_size": 0}, "block_size must be a positive integer, got 0"),
    ({"block_size": 2.5}, "block_size must be a positive integer"),
    ({"block_size": True}, "block_size must be a positive integer"),
    ({"separator_id": None}, "separator_id must be an integer token id"),
])
def test_blocks_refuse_bad_arguments(kwargs, message):
    arguments = {"token_id_lists": DOCUMENTS, "block_size": 4, "separator_id": SEPARATOR, **kwargs}
    with pytest.raises(ValueError, match=message):
        pack_into_blocks(**arguments)


def test_blocks_refuse_non_integer_ids():
    with pytest.raises(ValueError, match=r"token_id_lists\[1\] must hold integer token ids"):
        pack_into_blocks([[1], ["a"]], 4, SEPARATOR)


# --- PackingCollator: the row it builds --------------------------------------------------------

@pytest.mark.parametrize("kind", COLLATORS)
def test_packed_row_is_the_padded_batch_without_pads(tokenizer, records, kind):
    collator_class, sft = COLLATORS[kind]
    padded = collator_class(tokenizer)(records)
    packed = PackingCollator(tokenizer, sft=sft)(records)
    assert set(packed) == {"input_ids", "labels", "position_ids"}  # no attention_mask: see the module docstring
    real = padded["attention_mask"].bool()
    lengths = real.sum(dim=1).tolist()
    assert torch.equal(packed["input_ids"][0], padded["input_ids"][real])
    assert packed["position_ids"][0].tolist() == [p for n in lengths for p in range(n)]
    starts = torch.tensor([0, *lengths]).cumsum(0)[:-1]
    expected = padded["labels"][real].clone()
    expected[starts] = IGNORE_INDEX  # never a target in a padded row either (the one-token shift)
    assert torch.equal(packed["labels"][0], expected)
    # the targets after the shift are exactly the padded batch's
    assert int((packed["labels"][0, 1:] != IGNORE_INDEX).sum()) == int((padded["labels"][:, 1:] != IGNORE_INDEX).sum())


def test_sft_packing_masks_exactly_as_the_sft_collator_at_tricky_boundaries(tokenizer, records):
    """Records whose BPE merges across the prompt/response boundary, packed with the post's."""
    tricky = [
        {"instruct": "Write the wor", "input": "", "label": "d count of this sentence."},
        {"instruct": "Finish the word: ", "input": "unwrap", "label": "ping"},
        {"instruct": "请你给哪吒写一", "input": "", "label": "首诗：红绫缠腕。"},
        {"instruct": "Cafe", "input": "", "label": "\u0301 au lait"},
    ]
    mixed = [tricky[0], records[1], tricky[1], tricky[2], records[3], tricky[3]]
    packed = PackingCollator(tokenizer, sft=True)(mixed)["labels"][0].tolist()
    position = 0
    for record in mixed:
        alone = SFTCollator(tokenizer)([record])["labels"][0].tolist()
        assert packed[position] == IGNORE_INDEX and packed[position + 1 : position + len(alone)] == alone[1:]
        position += len(alone)
    assert position == len(packed)


def test_packing_collator_refuses_an_empty_list(tokenizer):
    with pytest.raises(ValueError, match="no records"):
        PackingCollator(tokenizer)([])


# --- the loss: packed == padded, naive packing differs, the use_cache pitfall ---------------------

@pytest.fixture(scope="module")
def model(tokenizer):
    model = load_model(None, tokenizer, seed=0)
    model.train()
    assert model.config.use_cache  # the config default the pitfall needs
    return model


def loss_of(model, batch, **kwargs):
    with torch.no_grad():
        return model(**batch, **kwargs).loss.item()


def naive(batch):
    """The same row and labels, but positions 0..n-1 along it: attention runs across records."""
    return {**batch, "position_ids": torch.arange(batch["input_ids"].shape[1])[None]}


@pytest.mark.parametrize("kind", COLLATORS)
def test_packed_loss_equals_padded_loss_and_naive_packing_differs(tokenizer, records, model, kind):
    collator_class, sft = COLLATORS[kind]
    padded = loss_of(model, collator_class(tokenizer)(records), use_cache=False)
    packed_batch = PackingCollator(tokenizer, sft=sft)(records)
    assert abs(loss_of(model, packed_batch, use_cache=False) - padded) < TOLERANCE
    assert abs(loss_of(model, naive(packed_batch), use_cache=False) - padded) > 1e-3


def test_contamination_is_visible_in_the_logits_of_the_second_record(tokenizer, records, model):
    """Record 1's logits in a packed row equal its logits alone; in a naive row they do not."""
    alone = PretrainCollator(tokenizer)([records[1]])
    packed = PackingCollator(tokenizer)(records[:2])
    start = PretrainCollator(tokenizer)([records[0]])["input_ids"].shape[1]  # record 1 starts here
    with torch.no_grad():
        reference = model(input_ids=alone["input_ids"], use_cache=False).logits[0]
        isolated = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0, start:]
        contaminated = model(input_ids=packed["input_ids"], position_ids=naive(packed)["position_ids"], use_cache=False).logits[0, start:]
    assert torch.allclose(isolated, reference, atol=1e-4)
    assert (contaminated - reference).abs().max() > 1e-2


def test_boundary_labels_must_be_masked_for_pretraining_labels(tokenizer, records, model):
    """With each record's first label kept, the eos before it is asked to predict it: extra targets."""
    padded_batch = PretrainCollator(tokenizer)(records)
    kept = {**PackingCollator(tokenizer)(records), "labels": padded_batch["labels"][padded_batch["attention_mask"].bool()][None]}
    assert abs(loss_of(model, kept, use_cache=False) - loss_of(model, padded_batch, use_cache=False)) > 1e-3


@pytest.mark.parametrize("kind", COLLATORS)
def test_pitfall_the_default_use_cache_breaks_the_isolation(tokenizer, records, model, kind):
    """transformers 5.23: Qwen2Model builds a DynamicCache whenever use_cache is true (train mode
    too), and a cache disables packed-sequence detection. If this test fails after an upgrade,
    revisit notebook 07, section 4."""
    collator_class, sft = COLLATORS[kind]
    padded = loss_of(model, collator_class(tokenizer)(records), use_cache=False)
    packed_batch = PackingCollator(tokenizer, sft=sft)(records)
    assert abs(loss_of(model, packed_batch) - padded) > 1e-3  # config default: use_cache=True
    assert abs(loss_of(model, packed_batch, use_cache=True) - padded) > 1e-3
    # an attention_mask, even all ones, disables the detection as well
    ones = torch.ones_like(packed_batch["input_ids"])
    assert abs(loss_of(model, {**packed_batch, "attention_mask": ones}, use_cache=False) - padded) > 1e-3


def test_the_mask_transformers_builds_with_and_without_a_cache(tokenizer, records, model):
    batch = PackingCollator(tokenizer)(records[:3])
    lengths = [PretrainCollator(tokenizer)([r])["input_ids"].shape[1] for r in records[:3]]
    assert torch.bincount(find_packed_sequence_indices(batch["position_ids"])[0]).tolist() == lengths
    assert find_packed_sequence_indices(torch.arange(10)[None]) is None
    embeddings = torch.zeros(1, sum(lengths), model.config.hidden_size)
    kwargs = {"config": model.config, "inputs_embeds": embeddings, "attention_mask": None,
              "position_ids": batch["position_ids"]}
    mask = create_causal_mask(past_key_values=None, allow_is_causal_skip=False, **kwargs)[0, 0]
    expected = torch.block_diag(*[torch.ones(n, n, dtype=torch.bool).tril() for n in lengths])
    assert torch.equal(mask, expected)
    # with an (empty) cache: no packed detection; sdpa gets no mask and applies plain is_causal
    assert create_causal_mask(past_key_values=DynamicCache(config=model.config), **kwargs) is None


@pytest.mark.parametrize("use_cache", [False, True])
def test_the_trainer_turns_the_cache_off_unless_told_otherwise(tokenizer, records, tmp_path, use_cache):
    assert training_arguments(recipe(), str(tmp_path)).use_cache is False  # the series' arguments
    arguments = dataclasses.replace(training_arguments(recipe(), str(tmp_path)), use_cache=use_cache)
    fresh = load_model(None, tokenizer, seed=0)
    fresh.train()
    trainer = Trainer(model=fresh, args=arguments, data_collator=PackingCollator(tokenizer, sft=True))
    assert fresh.config.use_cache is use_cache
    padded = loss_of(fresh, SFTCollator(tokenizer)(records), use_cache=False)
    with torch.no_grad():
        trainer_loss = trainer.compute_loss(fresh, PackingCollator(tokenizer, sft=True)(records)).item()
    assert (abs(trainer_loss - padded) < TOLERANCE) is (not use_cache)


def test_after_the_trainer_direct_calls_and_evaluate_are_isolated_too(tokenizer, records, tmp_path):
    """Trainer.__init__ writes TrainingArguments.use_cache (False) into model.config, so the model's
    own default changes: a plain model(**batch) and Trainer.evaluate then get the isolated mask."""
    fresh = load_model(None, tokenizer, seed=0)
    fresh.train()
    padded = loss_of(fresh, SFTCollator(tokenizer)(records), use_cache=False)
    packed_batch = PackingCollator(tokenizer, sft=True)(records)
    assert abs(loss_of(fresh, packed_batch) - padded) > 1e-3  # before: config default use_cache=True
    trainer = Trainer(model=fresh, args=training_arguments(recipe(), str(tmp_path)),
                      data_collator=PackingCollator(tokenizer, sft=True), eval_dataset=records)
    assert abs(loss_of(fresh, packed_batch) - padded) < TOLERANCE  # the same call, after the Trainer
    assert abs(trainer.evaluate()["eval_loss"] - padded) < TOLERANCE  # all five records in one packed row


@pytest.mark.parametrize("kind", COLLATORS)
def test_packed_gradients_equal_padded_gradients(tokenizer, records, kind):
    """The same targets, the same mean: the gradients agree too, not only the loss."""
    collator_class, sft = COLLATORS[kind]
    model = load_model(None, tokenizer, seed=0)
    model.train()
    gradients = []
    for batch in (collator_class(tokenizer)(records), PackingCollator(tokenizer, sft=sft)(records)):
        model.zero_grad()
        model(**batch, use_cache=False).loss.backward()
        gradients.append([parameter.grad.clone() for parameter in model.parameters()])
    assert max(parameter.abs().max().item() for parameter in gradients[0]) > 0.1  # not trivially zero
    assert max((a - b).abs().max().item() for a, b in zip(*gradients)) < 1e-6


@pytest.mark.parametrize("kind", COLLATORS)
def test_training_packed_follows_the_padded_loss_curve(tokenizer, records, kind):
    collator_class, sft = COLLATORS[kind]
    config = TrainConfig(num_train_epochs=2, print_loss=False)
    runs = [train(load_model(None, tokenizer, seed=0), tokenizer, records, collator, config)
            for collator in (collator_class(tokenizer), PackingCollator(tokenizer, sft=sft))]
    assert runs[0].steps == runs[1].steps == 6
    assert max(abs(a - b) for a, b in zip(runs[0].epoch_losses, runs[1].epoch_losses)) < 1e-3
    assert runs[1].epoch_losses[1] < runs[1].epoch_losses[0] - 1  # it learns


def test_the_trainer_shuffles_by_the_seed_alone_so_packed_and_padded_runs_see_the_same_pairs(tokenizer, records):
    # notebook 07 re-collates the packed run's steps with the padded collators and calls the
    # result notebook 04's padded runs: true only if the collator cannot change the order
    class Recording:
        def __init__(self, collator):
            self.collator, self.steps = collator, []

        def __call__(self, batch_records):
            self.steps.append([records.index(r) for r in batch_records])
            return self.collator(batch_records)

    config = TrainConfig(num_train_epochs=2, print_loss=False)
    orders = []
    for collator_class, sft in COLLATORS.values():
        for collator in (collator_class(tokenizer), PackingCollator(tokenizer, sft=sft)):
            recorder = Recording(collator)
            train(load_model(None, tokenizer, seed=0), tokenizer, records, recorder, config)
            orders.append(recorder.steps)
    assert len(orders[0]) == 6 and orders[0] != [[0, 1], [2, 3], [4], [0, 1], [2, 3], [4]]  # shuffled
    assert all(order == orders[0] for order in orders)
    shifted = Recording(COLLATORS["pretrain"][0](tokenizer))
    train(load_model(None, tokenizer, seed=0), tokenizer, records, shifted, dataclasses.replace(config, seed=1))
    assert shifted.steps != orders[0]  # the seed decides it


# --- transformers' own packing collator, and the flash-attention path's single-row rule (notebook 07) ---

@pytest.mark.parametrize("kind", COLLATORS)
def test_data_collator_with_flattening_builds_the_packing_collators_row(tokenizer, records, kind):
    from transformers import DataCollatorWithFlattening

    collator_class, sft = COLLATORS[kind]
    record_collator = collator_class(tokenizer)
    features = [{key: record_collator([record])[key][0] for key in ("input_ids", "labels")} for record in records]
    theirs = DataCollatorWithFlattening()(features)
    ours = PackingCollator(tokenizer, sft=sft)(records)
    assert set(theirs) == set(ours) == {"input_ids", "labels", "position_ids"}
    for key in ours:
        assert torch.equal(theirs[key], ours[key]), key


def test_flash_attention_detects_packing_from_position_ids_only_in_a_single_row_batch(tokenizer, records):
    from transformers.modeling_flash_attention_utils import _is_packed_sequence

    position_ids = PackingCollator(tokenizer)(records[:2])["position_ids"]
    assert _is_packed_sequence(position_ids, batch_size=1)
    two_rows = torch.cat([position_ids, position_ids])
    assert not _is_packed_sequence(two_rows, batch_size=2)  # the same restarts, two rows: not seen
    assert not _is_packed_sequence(torch.arange(10)[None], batch_size=1)  # one record: nothing to split
