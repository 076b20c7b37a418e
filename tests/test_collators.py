import pytest
import torch

from helpers import IGNORE_INDEX, PretrainCollator, RecordTooLongError, SFTCollator
from seed_facts import EOS_ID, PAD_ID, RECORD_0_IDS, RECORD_1_IDS


@pytest.fixture(scope="module")
def pad_tokenizer():
    from helpers import load_tokenizer

    tokenizer = load_tokenizer()
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    return tokenizer


def padded(ids, width, value):
    return ids + [value] * (width - len(ids))


@pytest.mark.parametrize("mask_pad", ["id", "position"])
def test_pretrain_batch_reproduces_the_seed(pad_tokenizer, records, mask_pad):
    batch = PretrainCollator(pad_tokenizer, mask_pad=mask_pad)(records[:2])
    width = len(RECORD_0_IDS)
    assert batch["input_ids"].tolist() == [RECORD_0_IDS, padded(RECORD_1_IDS, width, PAD_ID)]
    assert batch["attention_mask"].tolist() == [[1] * width, padded([1] * len(RECORD_1_IDS), width, 0)]
    assert batch["labels"].tolist() == [RECORD_0_IDS, padded(RECORD_1_IDS, width, IGNORE_INDEX)]


def test_mask_pad_id_masks_the_real_eos_when_pad_is_eos(tokenizer, records):
    by_id = PretrainCollator(tokenizer, mask_pad="id")(records[:2])["labels"]
    by_position = PretrainCollator(tokenizer, mask_pad="position")(records[:2])["labels"]
    assert (by_id == EOS_ID).sum() == 0
    assert by_position[0, -1] == EOS_ID and by_position[1, len(RECORD_1_IDS) - 1] == EOS_ID


def test_mask_pad_false_trains_padding(pad_tokenizer, records):
    labels = PretrainCollator(pad_tokenizer, mask_pad=False)(records[:2])["labels"]
    assert (labels == IGNORE_INDEX).sum() == 0
    assert (labels[1, len(RECORD_1_IDS):] == PAD_ID).all()


def test_append_eos_false(tokenizer, records):
    batch = PretrainCollator(tokenizer, append_eos=False)(records[:1])
    assert batch["input_ids"][0].tolist() == RECORD_0_IDS[:-1]


def test_sft_masks_exactly_the_prompt(tokenizer, records):
    batch = SFTCollator(tokenizer)(records[:2])
    pretrain = PretrainCollator(tokenizer)(records[:2])
    assert torch.equal(batch["input_ids"], pretrain["input_ids"])
    for row, record in enumerate(records[:2]):
        labels = batch["labels"][row]
        trained = labels[labels != IGNORE_INDEX].tolist()
        assert tokenizer.decode(trained) == record["label"] + tokenizer.eos_token


def test_unknown_mask_pad_is_refused(tokenizer):
    with pytest.raises(ValueError, match="mask_pad must be one of"):
        PretrainCollator(tokenizer, mask_pad="yes")


def test_too_long_record_is_refused_not_truncated(tokenizer, records):
    collator = PretrainCollator(tokenizer, max_length=20)
    with pytest.raises(RecordTooLongError, match=r"record 1 is 31 tokens long, more than max_length=20.*eos"):
        collator([{**records[1], "input": ""}, records[1]])
