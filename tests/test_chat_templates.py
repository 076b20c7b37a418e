import pytest
import torch
from jinja2.exceptions import TemplateError

from helpers import IGNORE_INDEX, SFTCollator
from helpers.chat_templates import (
    CHAT_FAMILIES,
    GEMMA,
    LLAMA3,
    QWEN25,
    QWEN_TRAINING_TEMPLATE,
    record_to_messages,
)
from helpers.tokenizer import DEFAULT_SYSTEM_PROMPT, QWEN_CHAT_TEMPLATE

USER = "请你给敖丙写一首诗：碧海生龙子，云中舞雪霜。"  # record 1: instruct + input
ANSWER = "恩仇难两忘，何处是家乡？"  # record 1: label


def render(tokenizer, family, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, chat_template=family.template, tokenize=False, **kwargs)


@pytest.fixture(scope="module")
def chat(records):
    return record_to_messages(records[1])


def test_record_to_messages(records):
    assert record_to_messages(records[1]) == [
        {"role": "user", "content": USER},
        {"role": "assistant", "content": ANSWER},
    ]
    assert record_to_messages(records[1], system="Be brief.")[0] == {"role": "system", "content": "Be brief."}


# --- one test per family: the exact strings of its documented format ---------------------------


def test_qwen25_chatml(tokenizer, chat):
    assert QWEN25.template == QWEN_CHAT_TEMPLATE == tokenizer.chat_template
    assert render(tokenizer, QWEN25, chat) == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{USER}<|im_end|>\n"
        f"<|im_start|>assistant\n{ANSWER}<|im_end|>\n"
    )
    assert render(tokenizer, QWEN25, chat[:1], add_generation_prompt=True) == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{USER}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert QWEN25.stop_tokens == ("<|im_end|>", "<|endoftext|>")
    assert list(QWEN25.stop_token_ids) == tokenizer.convert_tokens_to_ids(list(QWEN25.stop_tokens))


def test_llama3(tokenizer, chat):
    with_system = [{"role": "system", "content": "Be brief."}] + chat
    assert render(tokenizer, LLAMA3, with_system) == (
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{USER}<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{ANSWER}<|eot_id|>"
    )
    # no default system turn; the generation prompt is the assistant header
    assert render(tokenizer, LLAMA3, chat[:1], add_generation_prompt=True) == (
        "<|begin_of_text|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{USER}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    # content is trimmed, as in the released template
    padded = [{"role": "user", "content": "  hi \n"}]
    assert render(tokenizer, LLAMA3, padded) == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    assert (LLAMA3.stop_tokens, LLAMA3.stop_token_ids) == (("<|eot_id|>", "<|end_of_text|>"), (128009, 128001))


def test_gemma(tokenizer, chat):
    assert render(tokenizer, GEMMA, chat) == (
        f"<bos><start_of_turn>user\n{USER}<end_of_turn>\n"
        f"<start_of_turn>model\n{ANSWER}<end_of_turn>\n"
    )
    # no system role: system text opens the first user turn, then a blank line
    with_system = [{"role": "system", "content": "Be brief."}] + chat[:1]
    assert render(tokenizer, GEMMA, with_system, add_generation_prompt=True) == (
        f"<bos><start_of_turn>user\nBe brief.\n\n{USER}<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    with pytest.raises(TemplateError, match="alternate"):
        render(tokenizer, GEMMA, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(TemplateError, match="alternate"):
        render(tokenizer, GEMMA, [{"role": "assistant", "content": "a"}])
    assert (GEMMA.stop_tokens, GEMMA.stop_token_ids) == (("<end_of_turn>", "<eos>"), (107, 1))


def test_every_family_marks_its_end_of_turn_after_each_message(tokenizer, chat):
    for family in CHAT_FAMILIES:
        text = render(tokenizer, family, chat)
        end_of_turn = family.stop_tokens[0]
        assert text.count(end_of_turn) == len(chat) + (family is QWEN25)  # + Qwen's default system turn
        assert ANSWER + end_of_turn in text


def test_other_families_control_tokens_are_plain_text_to_qwen(tokenizer):
    """Llama 3's and Gemma's markers are not tokens of Qwen's vocabulary: they split into pieces."""
    for family in (LLAMA3, GEMMA):
        for token in family.stop_tokens:
            ids = tokenizer(token)["input_ids"]
            assert len(ids) > 1
            assert all(i < 151643 for i in ids)  # no added (special) token among them
    assert tokenizer("<|im_end|>")["input_ids"] == [151645]


# --- assistant-only loss from the chat template -------------------------------------------------

CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": USER}, {"role": "assistant", "content": ANSWER}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "bye"},
     {"role": "assistant", "content": "Bye!\nSee you."}],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_training_template_renders_the_same_text(tokenizer, conversation, add_generation_prompt):
    kwargs = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
    assert tokenizer.apply_chat_template(conversation, chat_template=QWEN_TRAINING_TEMPLATE, **kwargs) == (
        tokenizer.apply_chat_template(conversation, chat_template=QWEN_CHAT_TEMPLATE, **kwargs)
    )


def test_assistant_mask_covers_each_answer_and_its_im_end(tokenizer):
    conversation = CONVERSATIONS[2]
    encoding = tokenizer.apply_chat_template(
        conversation, chat_template=QWEN_TRAINING_TEMPLATE, return_assistant_tokens_mask=True
    )
    ids, mask = encoding["input_ids"], encoding["assistant_masks"]
    assert len(mask) == len(ids)
    runs, current = [], []
    for token_id, flag in zip(ids, mask):
        if flag:
            current.append(token_id)
        elif current:
            runs.append(current)
            current = []
    assert [tokenizer.decode(run) for run in runs] == ["Hello.<|im_end|>", "Bye!\nSee you.<|im_end|>"]


def test_assistant_mask_matches_sft_collator_except_the_stop_token(tokenizer, records):
    """Same answer tokens as SFTCollator trains on the plain text; only the stop token differs:
    <|im_end|> (151645) in ChatML, <|endoftext|> (151643) after the plain concatenation."""
    for record in records:
        encoding = tokenizer.apply_chat_template(
            record_to_messages(record), chat_template=QWEN_TRAINING_TEMPLATE,
            return_assistant_tokens_mask=True, return_tensors="pt",
        )
        chat_trained = encoding["input_ids"][encoding["assistant_masks"] == 1].tolist()
        sft_labels = SFTCollator(tokenizer)([record])["labels"][0]
        sft_trained = sft_labels[sft_labels != IGNORE_INDEX].tolist()
        assert chat_trained[:-1] == sft_trained[:-1]
        assert (chat_trained[-1], sft_trained[-1]) == (151645, 151643)


def test_batched_assistant_masks_pad_to_zero(tokenizer, records):
    conversations = [record_to_messages(r) for r in records[:2]]
    batch = tokenizer.apply_chat_template(
        conversations, chat_template=QWEN_TRAINING_TEMPLATE, return_assistant_tokens_mask=True,
        padding=True, return_tensors="pt",
    )
    assert batch["assistant_masks"].shape == batch["input_ids"].shape
    assert (batch["assistant_masks"][batch["attention_mask"] == 0] == 0).all()
    assert batch["assistant_masks"].sum(1).tolist() == [21, 11]  # label tokens + <|im_end|>
    labels = batch["input_ids"].masked_fill(batch["assistant_masks"] == 0, IGNORE_INDEX)
    assert torch.equal(labels != IGNORE_INDEX, batch["assistant_masks"] == 1)


def test_plain_template_has_no_generation_markers(tokenizer, chat):
    """Without {% generation %} the mask is all zeros: assistant-only loss would train nothing."""
    encoding = tokenizer.apply_chat_template(chat, return_assistant_tokens_mask=True)
    assert sum(encoding["assistant_masks"]) == 0


def test_v5_apply_chat_template_returns_a_dict_when_tokenizing(tokenizer, chat):
    """transformers 5: tokenize=True (the default) returns a BatchEncoding, not a list of ids."""
    encoding = tokenizer.apply_chat_template(chat)
    assert set(encoding.keys()) == {"input_ids", "attention_mask"}
    assert encoding["input_ids"] == tokenizer(render(tokenizer, QWEN25, chat))["input_ids"]
    assert isinstance(tokenizer.apply_chat_template(chat, return_dict=False), list)
    with pytest.raises(ValueError, match="return_dict=True"):
        tokenizer.apply_chat_template(chat, return_dict=False, return_assistant_tokens_mask=True)
