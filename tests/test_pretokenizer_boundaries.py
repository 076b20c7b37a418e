"""Almost no plain-text position is a safe prompt/answer boundary for Qwen's byte-level BPE (notebook 03).

Qwen's split pattern has the alternative ``[^\\r\\n\\p{L}\\p{N}]?\\p{L}+``: a punctuation mark goes
with the letters after it. So the pre-tokenizer does not cut after a prompt's final ``。``; the
post's records come out clean only because the vocabulary holds no token joining ``。`` with
their answers' first characters. A final digit is the one plain-text exception: the pattern's
``\\p{N}`` alternative takes exactly one digit and no other alternative takes a digit, so every digit
is a piece of its own. Otherwise only a special token, or tokenizing prompt and answer separately,
gives a boundary no merge crosses.
"""

import json
import re

import pytest

from helpers import IGNORE_INDEX, SFTCollator

PROMPT, ANSWER = "请访问我们的网站。", "www.qwen.ai"


def pieces(tokenizer, text):
    """The pre-tokenizer's pieces of ``text``, as substrings of it."""
    return [text[start:end] for _, (start, end) in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]


def decoded(tokenizer, ids):
    return [tokenizer.decode([i]) for i in ids]


def shortcut_labels(tokenizer, record):
    """The Alpaca-style shortcut: mask as many tokens as the prompt has alone."""
    ids = tokenizer(record["instruct"] + record["input"] + record["label"] + tokenizer.eos_token)["input_ids"]
    n_prompt = len(tokenizer(record["instruct"] + record["input"])["input_ids"])
    return [IGNORE_INDEX] * n_prompt + ids[n_prompt:]


def separate_ids_and_labels(tokenizer, record):
    """Prompt and answer tokenized alone, then concatenated (as notebook 03 shows)."""
    prompt_ids = tokenizer(record["instruct"] + record["input"])["input_ids"]
    answer_ids = tokenizer(record["label"] + tokenizer.eos_token)["input_ids"]
    return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def test_punctuation_joins_the_letters_after_it(tokenizer):
    assert tokenizer.decode([97972]) == "。www" and tokenizer.decode([37945]) == "，请"
    assert pieces(tokenizer, PROMPT + ANSWER) == ["请访问我们的网站", "。www", ".qwen", ".ai"]
    assert decoded(tokenizer, tokenizer(PROMPT + ANSWER)["input_ids"]) == ["请", "访问", "我们的", "网站", "。www", ".q", "wen", ".ai"]
    assert tokenizer(PROMPT)["input_ids"][-1] != 97972  # alone, the prompt ends with a plain 。


def test_the_shortcut_masks_the_merged_token_and_offsets_train_it(tokenizer):
    record = {"instruct": PROMPT, "input": "", "label": ANSWER}
    offsets = SFTCollator(tokenizer)([record])["labels"][0].tolist()
    trained = lambda labels: decoded(tokenizer, [i for i in labels if i != IGNORE_INDEX])
    assert trained(offsets) == ["。www", ".q", "wen", ".ai", "<|endoftext|>"]
    assert trained(shortcut_labels(tokenizer, record)) == [".q", "wen", ".ai", "<|endoftext|>"]


def test_the_posts_boundaries_are_not_pre_tokenizer_cuts(tokenizer, records):
    """Every record's final 。 shares a piece with the answer; only the vocabulary keeps them apart."""
    for record in records:
        prompt = record["instruct"] + record["input"]
        text = prompt + record["label"]
        spans = [span for _, span in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
        assert prompt.endswith("。")
        assert any(start == len(prompt) - 1 and end > len(prompt) for start, end in spans), record  # 。 + answer
        assert SFTCollator(tokenizer)([record])["labels"][0].tolist() == shortcut_labels(tokenizer, record)
    text = records[1]["instruct"] + records[1]["input"] + records[1]["label"]
    assert "。恩仇难两忘" in pieces(tokenizer, text)


@pytest.mark.parametrize("prompt", ["请你给哪吒写一首诗：", "哪吒降世。", "Hello,", "Hello."])
def test_a_special_token_is_a_cut(tokenizer, prompt):
    """Added tokens are matched before the pre-tokenizer: no merge crosses them."""
    for answer in ("www.qwen.ai", "红绫", "\nx", " world"):
        joint = tokenizer(prompt + "<|im_end|>" + answer)["input_ids"]
        assert joint == tokenizer(prompt)["input_ids"] + [151645] + tokenizer(answer)["input_ids"]


def test_separate_tokenization_differs_at_a_merge(tokenizer, records):
    for record, expected in (
        ({"instruct": PROMPT, "input": "", "label": ANSWER}, ["。", "www"]),
        ({"instruct": "Write the wor", "input": "", "label": "d count of this sentence."}, [" wor", "d"]),
    ):
        ids, labels = separate_ids_and_labels(tokenizer, record)
        joint = SFTCollator(tokenizer)([record])
        assert ids != joint["input_ids"][0].tolist()
        boundary = labels.index(next(i for i in labels if i != IGNORE_INDEX))
        assert decoded(tokenizer, ids[boundary - 1: boundary + 1]) == expected
    for record in records:  # nothing merges at the post's boundaries: the two ways agree
        batch = SFTCollator(tokenizer)([record])
        assert separate_ids_and_labels(tokenizer, record) == (batch["input_ids"][0].tolist(), batch["labels"][0].tolist())


def split_pattern(tokenizer):
    """The regular expression of Qwen's Split pre-tokenizer, from the tokenizer's own JSON."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())["pre_tokenizer"]
    (split,) = [p for p in state["pretokenizers"] if p["type"] == "Split"]
    return split["pattern"]["Regex"]


def test_only_one_alternative_of_the_split_pattern_takes_a_digit(tokenizer):
    """Notebook 03 and its appendix: a prompt ending in a digit is a clean cut, for every answer."""
    alternatives = split_pattern(tokenizer).split("|")
    assert "\\p{N}" in alternatives  # one digit, alone
    for alternative in alternatives:
        if alternative == "\\p{N}":
            continue
        # any other mention of \p{N} sits inside a negated class [^...]: it excludes digits
        outside_negated = re.sub(r"\[\^[^\]]*\]", "", alternative)
        assert "\\p{N}" not in outside_negated, alternative


@pytest.mark.parametrize("prompt, answer, expected", [
    ("第1", "2个", ["第", "1", "2", "个"]),
    ("x9", " hello", ["x", "9", " hello"]),
    ("共9", "\n\n答", ["共", "9", "\n\n", "答"]),
    ("第1", "23", ["第", "1", "2", "3"]),
    ("a1", "b", ["a", "1", "b"]),
])
def test_a_final_digit_is_a_clean_cut(tokenizer, prompt, answer, expected):
    assert pieces(tokenizer, prompt + answer) == expected
    joint = tokenizer(prompt + answer)["input_ids"]
    assert joint == tokenizer(prompt)["input_ids"] + tokenizer(answer)["input_ids"]
    record = {"instruct": prompt, "input": "", "label": answer}
    batch = SFTCollator(tokenizer)([record])  # offsets, shortcut and separate tokenization all agree
    assert batch["labels"][0].tolist() == shortcut_labels(tokenizer, record)
    assert separate_ids_and_labels(tokenizer, record) == (batch["input_ids"][0].tolist(), batch["labels"][0].tolist())
