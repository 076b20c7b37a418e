import re
import unicodedata

import pytest
import torch

from helpers import IGNORE_INDEX, DataError, PretrainCollator, RecordTooLongError, SFTCollator
from helpers.tokenizer import ADDED_TOKENS, FIRST_ADDED_ID
from post_facts import EOS_ID, PAD_ID, RECORD_0_IDS, RECORD_1_IDS


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


# --- SFT masking at the prompt/response boundary -------------------------------------------
#
# Byte-level BPE may merge characters across the prompt/response boundary. The Alpaca-style
# shortcut (tokenise the prompt alone, mask that many tokens) then masks the wrong tokens; the
# SFTCollator's mask comes from the joint tokenisation's character offsets instead.


def prompt_length_labels(tokenizer, record):
    """The Alpaca-style shortcut: mask as many tokens as the prompt has when tokenised alone."""
    text = record["instruct"] + record["input"] + record["label"] + tokenizer.eos_token
    ids = tokenizer(text)["input_ids"]
    n_prompt = len(tokenizer(record["instruct"] + record["input"])["input_ids"])
    return [IGNORE_INDEX] * n_prompt + ids[n_prompt:]


def trained_pieces(tokenizer, labels):
    return [tokenizer.decode([t]) for t in labels if t != IGNORE_INDEX]


def sft_labels(tokenizer, record):
    return SFTCollator(tokenizer)([record])["labels"][0].tolist()


EOS = "<|endoftext|>"
# (record, what the offset mask trains, what the prompt-length shortcut trains)
BOUNDARY_CASES = {
    # over-masking: " wor" + "d" merge into " word"; the shortcut masks it, so the response's
    # first character is never trained
    "prompt ends mid-word": (
        {"instruct": "Write the wor", "input": "", "label": "d count of this sentence."},
        [" word", " count", " of", " this", " sentence", ".", EOS],
        [" count", " of", " this", " sentence", ".", EOS],
    ),
    # over-masking: a trailing space is its own token alone, but joins the answer's first word
    "prompt ends in a space": (
        {"instruct": "Answer: ", "input": "", "label": "yes"},
        [" yes", EOS],
        [EOS],
    ),
    # under-masking: " unwrap" is one token alone, but " unw" + "r" + "apping" jointly; the
    # shortcut masks only one token's worth and trains "r", which is prompt text
    "prompt word re-split": (
        {"instruct": "Finish the word: ", "input": "unwrap", "label": "ping"},
        ["apping", EOS],
        ["r", "apping", EOS],
    ),
    # Chinese: "一" (prompt) + "首" (response) merge into "一首"
    "Chinese merge": (
        {"instruct": "请你给哪吒写一", "input": "", "label": "首诗：红绫缠腕。"},
        ["一首", "诗", "：", "红", "绫", "缠", "腕", "。", EOS],
        ["诗", "：", "红", "绫", "缠", "腕", "。", EOS],
    ),
}


@pytest.mark.parametrize("case", BOUNDARY_CASES)
def test_boundary_merge_offset_mask_vs_prompt_length_shortcut(tokenizer, case):
    record, offset_trained, shortcut_trained = BOUNDARY_CASES[case]
    labels = sft_labels(tokenizer, record)
    shortcut = prompt_length_labels(tokenizer, record)
    assert trained_pieces(tokenizer, labels) == offset_trained
    assert trained_pieces(tokenizer, shortcut) == shortcut_trained
    assert labels != shortcut


@pytest.mark.parametrize("case", BOUNDARY_CASES)
def test_straddling_token_is_trained_and_is_the_only_prompt_text_trained(tokenizer, case):
    """The documented policy: the one token that starts in the prompt and ends in the
    response is trained; every other trained token lies wholly in the response."""
    record = BOUNDARY_CASES[case][0]
    prompt = record["instruct"] + record["input"]
    text = prompt + record["label"] + tokenizer.eos_token
    encoding = tokenizer(text, return_offsets_mapping=True)
    labels = sft_labels(tokenizer, record)
    straddlers = [i for i, (s, e) in enumerate(encoding["offset_mapping"]) if s < len(prompt) < e]
    assert len(straddlers) == 1
    first_trained = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
    assert first_trained == straddlers[0]
    start = encoding["offset_mapping"][first_trained][0]
    # trained text = the straddler's prompt characters + the whole response + eos
    assert tokenizer.decode([t for t in labels if t != IGNORE_INDEX]) == text[start:]
    assert 0 < len(prompt) - start < len(text[start:])


SPLIT_TEXTS = [
    "请你给哪吒写一首诗：哪吒降世，意气飞扬。\n逆天改命，破障冲霄。红绫缠腕，风火踏浪。",
    "Q: What's the capital of France?\nA: Paris, of course!  It's 2,140,526 people.",
    "def unwrap(x):\n    return x  # workaround for covariances",
]


@pytest.mark.parametrize("text", SPLIT_TEXTS)
def test_mask_is_exact_at_every_split_point(tokenizer, text):
    """Split the same text into prompt + response at every character: masked tokens lie
    wholly in the prompt, trained ones end in the response, and the trained text always
    ends with the whole response."""
    for cut in range(1, len(text)):
        record = {"instruct": text[:cut], "input": "", "label": text[cut:]}
        encoding = tokenizer(text + tokenizer.eos_token, return_offsets_mapping=True)
        labels = sft_labels(tokenizer, record)
        for label, (start, end) in zip(labels, encoding["offset_mapping"]):
            assert (end <= cut) == (label == IGNORE_INDEX), (cut, start, end)
        trained = tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
        assert trained.endswith(text[cut:] + tokenizer.eos_token)


def test_shortcut_happens_to_agree_on_the_post_records(tokenizer, records):
    """The post's boundaries ("...：" + poem) do not merge, so the shortcut would have
    worked on this data; the tests above show data where it does not."""
    for record in records:
        assert sft_labels(tokenizer, record) == prompt_length_labels(tokenizer, record)


def test_response_starting_with_a_combining_mark(tokenizer):
    """NFC joins the prompt's "e" and the response's U+0301 into one "é" token whose offsets
    cover only the "e": the token still straddles the boundary, so it is trained."""
    record = {"instruct": "Cafe", "input": "", "label": "\u0301 au lait"}
    assert trained_pieces(tokenizer, sft_labels(tokenizer, record)) == ["é", " au", " la", "it", EOS]


def test_decomposed_prompt_is_masked_exactly(tokenizer):
    record = {"instruct": unicodedata.normalize("NFD", "Résumé:"), "input": "", "label": " café"}
    assert trained_pieces(tokenizer, sft_labels(tokenizer, record)) == [" café", EOS]


def test_characters_split_into_byte_tokens(tokenizer):
    """A rare character is several byte-level tokens sharing one character span: all of the
    prompt's pieces are masked, all of the response's trained."""
    record = {"instruct": "写：\U00020000", "input": "", "label": "\U00020001好"}
    labels = sft_labels(tokenizer, record)
    ids = tokenizer("写：\U00020000")["input_ids"]
    assert len(ids) > 3  # the CJK Extension B character takes more than one token
    assert labels[: len(ids)] == [IGNORE_INDEX] * len(ids)
    assert tokenizer.decode([t for t in labels if t != IGNORE_INDEX]) == "\U00020001好" + EOS


def test_a_bos_added_by_the_tokenizer_counts_as_prompt(tokenizer, fresh_tokenizer, records):
    """Tokenizers that prepend a bos give it offsets (0, 0): it is masked with the prompt."""
    from tokenizers import processors

    bos = "<|im_start|>"  # stands in for a bos: any special token the post-processor adds
    fresh_tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, fresh_tokenizer.convert_tokens_to_ids(bos))]
    )
    plain = SFTCollator(tokenizer)([records[1]])["labels"][0].tolist()
    with_bos = SFTCollator(fresh_tokenizer)([records[1]])["labels"][0].tolist()
    assert with_bos == [IGNORE_INDEX] + plain


# --- counts, padding and length ---------------------------------------------------------------


def test_trained_token_counts_per_record(pad_tokenizer, records):
    """Notebook 03's table: pretraining trains every real token, SFT only label + eos."""
    pretrain = PretrainCollator(pad_tokenizer)(records)
    sft = SFTCollator(pad_tokenizer)(records)
    assert pretrain["attention_mask"].sum(1).tolist() == [48, 31, 38, 29, 48]
    assert (pretrain["labels"] != IGNORE_INDEX).sum(1).tolist() == [48, 31, 38, 29, 48]
    assert (sft["labels"] != IGNORE_INDEX).sum(1).tolist() == [21, 11, 15, 10, 21]
    for row, record in enumerate(records):
        assert (sft["labels"][row] != IGNORE_INDEX).sum() == len(pad_tokenizer(record["label"])["input_ids"]) + 1


def test_sft_batch_pads_like_pretraining(pad_tokenizer, records):
    pretrain = PretrainCollator(pad_tokenizer)(records[:2])
    sft = SFTCollator(pad_tokenizer)(records[:2])
    assert torch.equal(sft["input_ids"], pretrain["input_ids"])
    assert torch.equal(sft["attention_mask"], pretrain["attention_mask"])
    assert (sft["labels"][pretrain["attention_mask"] == 0] == IGNORE_INDEX).all()
    # wherever SFT trains, it trains the same label as pretraining
    trained = sft["labels"] != IGNORE_INDEX
    assert torch.equal(sft["labels"][trained], pretrain["labels"][trained])


def test_sft_with_mask_pad_id_also_loses_the_eos_when_pad_is_eos(tokenizer, records):
    labels = SFTCollator(tokenizer, mask_pad="id")(records[:1])["labels"][0]
    assert labels[-1] == IGNORE_INDEX  # the eos: never learned, so the model never stops
    assert SFTCollator(tokenizer)(records[:1])["labels"][0, -1] == EOS_ID


def test_record_at_the_limit_keeps_its_eos(tokenizer, records):
    for collator_class in (PretrainCollator, SFTCollator):
        batch = collator_class(tokenizer, max_length=len(RECORD_0_IDS))(records[:1])
        assert batch["input_ids"][0, -1] == EOS_ID == batch["labels"][0, -1]
        with pytest.raises(RecordTooLongError, match="record 0 is 48 tokens long"):
            collator_class(tokenizer, max_length=len(RECORD_0_IDS) - 1)(records[:1])


def test_default_limit_is_the_tokenizers_model_max_length(fresh_tokenizer, records):
    fresh_tokenizer.model_max_length = 40
    with pytest.raises(RecordTooLongError, match="max_length=40"):
        SFTCollator(fresh_tokenizer)(records[:1])


# --- control tokens in record text, and bad arguments -----------------------------------------


@pytest.mark.parametrize("collator_class", [PretrainCollator, SFTCollator])
@pytest.mark.parametrize("field", ["instruct", "input", "label"])
@pytest.mark.parametrize("token", ADDED_TOKENS)
def test_records_handed_straight_to_a_collator_are_checked_for_control_tokens(tokenizer, records, collator_class, field, token):
    """Records built in code skip load_records: the collator refuses them itself, so the only
    control token in a row is the eos it appends."""
    bad = dict(records[1], **{field: records[1][field] + token})
    with pytest.raises(DataError, match=rf"^record 1 handed to {collator_class.__name__}: field '{field}' "
                       rf"contains the control token '{re.escape(token)}'"):
        collator_class(tokenizer)([records[0], bad])


def test_the_tokenizers_own_added_tokens_are_refused_too(pad_tokenizer, records):
    """A [PAD] added to the tokenizer would be the pad id inside the text (and masked by mask_pad='id')."""
    bad = dict(records[0], label="红绫[PAD]缠腕")
    with pytest.raises(DataError, match=r"record 0 handed to PretrainCollator: field 'label' contains the control token '\[PAD\]'"):
        PretrainCollator(pad_tokenizer)([bad])
    with pytest.raises(DataError, match=r"the record handed to SFTCollator.text: field 'label' contains"):
        SFTCollator(pad_tokenizer).text(bad)


@pytest.mark.parametrize("collator_class", [PretrainCollator, SFTCollator])
def test_the_only_control_token_in_a_row_is_the_appended_eos(tokenizer, records, collator_class):
    batch = collator_class(tokenizer)(records)
    added = batch["input_ids"] >= FIRST_ADDED_ID
    lengths = batch["attention_mask"].sum(1)
    for row, length in enumerate(lengths.tolist()):
        assert added[row, :length].nonzero().flatten().tolist() == [length - 1]
        assert batch["input_ids"][row, length - 1] == EOS_ID


@pytest.mark.parametrize("mask_pad", ["pos", "ID", True, 0, None, "none"])
def test_bad_mask_pad(tokenizer, mask_pad):
    with pytest.raises(ValueError, match=rf"^mask_pad must be one of \('position', 'id', False\), got {re.escape(repr(mask_pad))}$"):
        PretrainCollator(tokenizer, mask_pad=mask_pad)


@pytest.mark.parametrize("max_length", [0, -5, 2.5, True, "100"])
def test_bad_max_length(tokenizer, max_length):
    with pytest.raises(ValueError, match=rf"^max_length must be a positive number of tokens.*got {re.escape(repr(max_length))}$"):
        SFTCollator(tokenizer, max_length=max_length)


@pytest.mark.parametrize("collator_class", [PretrainCollator, SFTCollator])
def test_empty_list(tokenizer, collator_class):
    with pytest.raises(ValueError, match=rf"^records is empty: {collator_class.__name__} needs at least one record"):
        collator_class(tokenizer)([])


def test_a_single_record_instead_of_a_list(tokenizer, records):
    with pytest.raises(ValueError, match=r"^records must be a list of records; SFTCollator was handed a single record"):
        SFTCollator(tokenizer)(records[0])


@pytest.mark.parametrize("collator_class", [PretrainCollator, SFTCollator])
@pytest.mark.parametrize("field", ["instruct", "input", "label"])
def test_a_record_without_a_field(tokenizer, records, collator_class, field):
    bad = {k: v for k, v in records[2].items() if k != field}
    with pytest.raises(DataError, match=rf"^record 1 handed to {collator_class.__name__}: field '{field}' is missing$"):
        collator_class(tokenizer)([records[0], bad])


def test_a_record_that_is_not_a_dict_or_has_a_non_string_field(tokenizer, records):
    with pytest.raises(DataError, match=r"^record 0 handed to PretrainCollator: must be a JSON object, found a string$"):
        PretrainCollator(tokenizer)(["请你给哪吒写一首诗："])
    with pytest.raises(DataError, match=r"^record 0 handed to PretrainCollator: field 'label' must be a string, found null$"):
        PretrainCollator(tokenizer)([dict(records[0], label=None)])


# --- records of any shape, slow tokenizers, the chat SFT collator (issue 23) --------------------


from transformers import PreTrainedTokenizer

from helpers import POST_RECORD, ChatSFTCollator, Fields, PackingCollator, QWEN_TRAINING_TEMPLATE, record_to_messages
from helpers.tokenizer import QWEN_CHAT_TEMPLATE


class CharTokenizer(PreTrainedTokenizer):
    """A slow (pure-Python) tokenizer, one id per character: what some older models still ship."""

    def __init__(self, **kwargs):
        self.vocab = {c: i for i, c in enumerate(["<pad>", "<eos>", *"abcdefghijklmnopqrstuvwxyz +=0123456789:"])}
        super().__init__(pad_token="<pad>", eos_token="<eos>", **kwargs)

    def get_vocab(self):
        return dict(self.vocab)

    @property
    def vocab_size(self):
        return len(self.vocab)

    def _tokenize(self, text):
        return list(text)

    def _convert_token_to_id(self, token):
        return self.vocab[token]

    def _convert_id_to_token(self, index):
        return {i: t for t, i in self.vocab.items()}[index]


QA = Fields("question", "answer")


def as_qa(records):
    return [{"question": r["instruct"] + r["input"], "answer": r["label"]} for r in records]


@pytest.mark.parametrize("make", [
    lambda tok, pr: PretrainCollator(tok, prompt_response=pr),
    lambda tok, pr: SFTCollator(tok, prompt_response=pr),
    lambda tok, pr: SFTCollator(tok, mask_pad="id", prompt_response=pr),
    lambda tok, pr: PackingCollator(tok, sft=True, prompt_response=pr),
    lambda tok, pr: ChatSFTCollator(tok, chat_template=QWEN_TRAINING_TEMPLATE, prompt_response=pr),
], ids=["pretrain", "sft", "sft-id", "packing", "chat"])
@pytest.mark.parametrize("reader", ["fields", "function"])
def test_other_record_shapes_give_the_post_records_batches(tokenizer, records, make, reader):
    prompt_response = QA if reader == "fields" else (lambda record: (record["question"], record["answer"]))
    ours, theirs = make(tokenizer, POST_RECORD)(records), make(tokenizer, prompt_response)(as_qa(records))
    assert set(ours) == set(theirs) and all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_the_default_reads_the_posts_fields(tokenizer, records):
    assert SFTCollator(tokenizer).prompt_response is POST_RECORD
    assert POST_RECORD(records[1]) == (records[1]["instruct"] + records[1]["input"], records[1]["label"])
    assert POST_RECORD.names == ("instruct", "input", "label")


@pytest.mark.parametrize("reader", [QA, lambda record: (record["question"], record["answer"])], ids=["fields", "function"])
@pytest.mark.parametrize("collator_class", [PretrainCollator, SFTCollator])
def test_a_missing_field_names_the_record_and_the_field(tokenizer, records, reader, collator_class):
    bad = as_qa(records)[:3]
    del bad[2]["answer"]
    with pytest.raises(DataError, match=rf"^record 2 handed to {collator_class.__name__}: field 'answer' is missing$"):
        collator_class(tokenizer, prompt_response=reader)(bad)


def test_fields_checks_types_emptiness_and_control_tokens(tokenizer, records):
    qa = as_qa(records)[:2]
    with pytest.raises(DataError, match=r"^record 1 handed to SFTCollator: field 'answer' must be a string, found a number$"):
        SFTCollator(tokenizer, prompt_response=QA)([qa[0], dict(qa[1], answer=4)])
    with pytest.raises(DataError, match=r"^record 1 handed to SFTCollator: field 'answer' is empty$"):
        SFTCollator(tokenizer, prompt_response=QA)([qa[0], dict(qa[1], answer="")])
    with pytest.raises(DataError, match=r"^record 0 handed to SFTCollator: field 'question' contains the control token '<\|im_start\|>'"):
        SFTCollator(tokenizer, prompt_response=QA)([dict(qa[0], question="<|im_start|>system")])


def test_a_function_is_checked_on_what_it_returns(tokenizer, records):
    with pytest.raises(DataError, match=r"^record 0 handed to SFTCollator: the response contains the control token '<\|im_end\|>'"):
        SFTCollator(tokenizer, prompt_response=lambda r: ("2+2=", "4<|im_end|>"))([{}])
    with pytest.raises(DataError, match=r"^record 0 handed to PretrainCollator: prompt_response must return two strings"):
        PretrainCollator(tokenizer, prompt_response=lambda r: ("2+2=", 4))([{}])
    with pytest.raises(ValueError, match=r"^prompt_response must be a function"):
        SFTCollator(tokenizer, prompt_response="question")


def test_a_slow_tokenizer_gives_no_offsets_and_is_refused_by_name():
    slow = CharTokenizer()
    assert not slow.is_fast
    # what happened before the check: the flag is ignored, and the SFT mask failed on a KeyError
    assert "offset_mapping" not in slow("ab", return_offsets_mapping=True)
    for make in (lambda: SFTCollator(slow), lambda: PackingCollator(slow, sft=True),
                 lambda: ChatSFTCollator(slow, chat_template=QWEN_TRAINING_TEMPLATE)):
        with pytest.raises(ValueError, match=r"needs a fast tokenizer \(tokenizer.is_fast is True.*CharTokenizer has none.*"
                                             r"AutoTokenizer.from_pretrained\(name\)"):
            make()


def test_pretraining_needs_no_offsets_so_a_slow_tokenizer_works():
    slow = CharTokenizer()
    batch = PretrainCollator(slow, prompt_response=QA)([{"question": "2+2=", "answer": "4"}, {"question": "1:", "answer": "ab"}])
    ids = slow.convert_tokens_to_ids
    assert batch["input_ids"].tolist() == [ids([*"2+2=4", "<eos>"]), ids([*"1:ab", "<eos>", "<pad>"])]
    assert batch["labels"][1, -1] == IGNORE_INDEX


def test_encode_is_public_and_is_what_a_row_holds_before_padding(tokenizer, records):
    collator = SFTCollator(tokenizer)
    batch = collator(records)
    for row, record in enumerate(records):
        ids, labels = collator.encode(record, row)
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
        assert batch["labels"][row, : len(ids)].tolist() == labels
    with pytest.raises(DataError, match=r"^the record handed to SFTCollator.encode: field 'label' is missing$"):
        collator.encode({"instruct": "x", "input": ""})
    with pytest.raises(RecordTooLongError, match=r"^the record is 48 tokens long, more than max_length=10"):
        SFTCollator(tokenizer, max_length=10).encode(records[0])


def notebook_06_chat_sft_collator(tokenizer, batch_records):
    """Notebook 06's inline collator, as it stands in its cell 5."""
    encoding = tokenizer.apply_chat_template(
        [record_to_messages(record) for record in batch_records], chat_template=QWEN_TRAINING_TEMPLATE,
        return_assistant_tokens_mask=True, return_dict=True, padding=True, return_tensors="pt",
    )
    labels = encoding["input_ids"].masked_fill(encoding["assistant_masks"] == 0, IGNORE_INDEX)
    return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"], "labels": labels}


@pytest.mark.parametrize("rows", [slice(0, 1), slice(0, 5), slice(2, 4)])
def test_chat_sft_collator_is_notebook_06s_collator(tokenizer, records, rows):
    ours = ChatSFTCollator(tokenizer, chat_template=QWEN_TRAINING_TEMPLATE)(records[rows])
    theirs = notebook_06_chat_sft_collator(tokenizer, records[rows])
    assert set(ours) == set(theirs) and all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_chat_sft_collator_trains_the_answer_and_im_end_only(tokenizer, records):
    batch = ChatSFTCollator(tokenizer, chat_template=QWEN_TRAINING_TEMPLATE, system="Be brief.")(records)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for row, record in enumerate(records):
        targets = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
        assert targets == tokenizer(record["label"])["input_ids"] + [im_end]
    assert "Be brief." in tokenizer.decode(batch["input_ids"][0])


def test_chat_sft_collator_refuses_a_template_without_generation_blocks(tokenizer, records):
    with pytest.raises(ValueError, match=r"needs a chat template that marks .*\{% generation %\}.*this one has no such block"):
        ChatSFTCollator(tokenizer, chat_template=QWEN_CHAT_TEMPLATE)
    with pytest.raises(ValueError, match=r"needs a chat template .*the tokenizer's own|has no such block"):
        ChatSFTCollator(tokenizer)  # Qwen's own template marks nothing
    with pytest.raises(DataError, match=r"^record 0 handed to ChatSFTCollator: field 'label' contains the control token '<\|im_end\|>'"):
        ChatSFTCollator(tokenizer, chat_template=QWEN_TRAINING_TEMPLATE)([dict(records[0], label="好<|im_end|>")])
    with pytest.raises(ValueError, match=r"^records must be a list of records; ChatSFTCollator was handed a single record"):
        ChatSFTCollator(tokenizer, chat_template=QWEN_TRAINING_TEMPLATE)(records[0])


def test_data_error_is_one_type_in_the_package():
    import helpers
    import helpers.collators
    import helpers.data

    assert helpers.DataError is helpers.data.DataError is helpers.collators.DataError
    assert helpers.check_record is helpers.data.check_record is helpers.collators.check_record
    assert issubclass(helpers.DataError, ValueError)
