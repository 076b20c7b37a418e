import hashlib

import pytest
import torch
from jinja2.exceptions import TemplateError
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.generation.stopping_criteria import EosTokenCriteria, StopStringCriteria

from helpers import IGNORE_INDEX, SFTCollator
from helpers.chat_templates import (
    CHAT_FAMILIES,
    GEMMA,
    LLAMA3,
    QWEN25,
    QWEN_TRAINING_TEMPLATE,
    record_to_messages,
)
from helpers.tokenizer import DEFAULT_SYSTEM_PROMPT, INSTRUCT_SYSTEM_PROMPT, QWEN_CHAT_TEMPLATE

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


#: sha256 of Qwen2.5-0.5B's released chat template, computed from a public copy of it (a training
#: script's ``QWEN_BASE_CHAT_TEMPLATE``, found with the search tool) that matched ours character
#: for character. Any edit to the re-typed template changes it.
QWEN25_BASE_TEMPLATE_SHA256 = "44d5f08f3f72b837eaad09f13a54c1f9f4eb58d75240334548b7fd52a5437fa5"

SYSTEM = f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
TOOLS_PREAMBLE = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_POSTAMBLE = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call><|im_end|>\n"
)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "天气",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
WEATHER_JSON = (
    '{"type": "function", "function": {"name": "get_weather", "description": "天气", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}'
)


def call(name, arguments, wrapped=True):
    """A tool call as OpenAI-style messages carry it (wrapped in "function") or flat."""
    return {"type": "function", "function": {"name": name, "arguments": arguments}} if wrapped else (
        {"name": name, "arguments": arguments})


def test_qwen_template_is_the_released_base_template(tokenizer):
    assert QWEN25.template == QWEN_CHAT_TEMPLATE == tokenizer.chat_template
    assert hashlib.sha256(QWEN_CHAT_TEMPLATE.encode("utf-8")).hexdigest() == QWEN25_BASE_TEMPLATE_SHA256


def test_qwen25_chatml(tokenizer, chat):
    assert render(tokenizer, QWEN25, chat) == (
        f"{SYSTEM}<|im_start|>user\n{USER}<|im_end|>\n<|im_start|>assistant\n{ANSWER}<|im_end|>\n"
    )
    assert render(tokenizer, QWEN25, chat[:1], add_generation_prompt=True) == (
        f"{SYSTEM}<|im_start|>user\n{USER}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert QWEN25.stop_tokens == ("<|im_end|>", "<|endoftext|>")
    assert list(QWEN25.stop_token_ids) == tokenizer.convert_tokens_to_ids(list(QWEN25.stop_tokens))


def test_qwen25_base_default_is_not_the_instruct_default(tokenizer, chat):
    """The base template's default system turn; the Instruct sentence only when passed (as the post does)."""
    assert DEFAULT_SYSTEM_PROMPT == "You are a helpful assistant."
    default = render(tokenizer, QWEN25, chat)
    assert INSTRUCT_SYSTEM_PROMPT not in default
    explicit = render(tokenizer, QWEN25, [{"role": "system", "content": INSTRUCT_SYSTEM_PROMPT}] + chat)
    assert explicit == default.replace(DEFAULT_SYSTEM_PROMPT, INSTRUCT_SYSTEM_PROMPT, 1)


def test_notebook_token_counts(tokenizer, records):
    """Notebook 01, record 0: 68 ChatML tokens with the base default system turn, 78 with the post's."""
    r = records[0]
    messages = [{"role": "user", "content": r["instruct"] + r["input"]}, {"role": "assistant", "content": r["label"]}]
    assert len(tokenizer.apply_chat_template(messages)["input_ids"]) == 68
    assert len(tokenizer(SYSTEM)["input_ids"]) == 11
    with_instruct = [{"role": "system", "content": INSTRUCT_SYSTEM_PROMPT}] + messages
    assert len(tokenizer.apply_chat_template(with_instruct)["input_ids"]) == 78


def test_qwen25_later_system_messages_are_plain_turns_and_unknown_roles_vanish(tokenizer):
    messages = [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                {"role": "developer", "content": "c"}]
    assert render(tokenizer, QWEN25, messages) == (
        f"{SYSTEM}<|im_start|>user\na<|im_end|>\n<|im_start|>system\nb<|im_end|>\n"
    )


def test_qwen25_tools_go_into_the_system_turn(tokenizer):
    question = [{"role": "user", "content": "北京?"}]
    assert render(tokenizer, QWEN25, question, tools=[WEATHER]) == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}{TOOLS_PREAMBLE}\n{WEATHER_JSON}{TOOLS_POSTAMBLE}"
        "<|im_start|>user\n北京?<|im_end|>\n"
    )
    # an own system message replaces the default one, before the tool list; two tools, one line each
    own = [{"role": "system", "content": "Be brief."}] + question
    assert render(tokenizer, QWEN25, own, tools=[WEATHER, WEATHER], add_generation_prompt=True) == (
        f"<|im_start|>system\nBe brief.{TOOLS_PREAMBLE}\n{WEATHER_JSON}\n{WEATHER_JSON}{TOOLS_POSTAMBLE}"
        "<|im_start|>user\n北京?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_qwen25_tool_calls_and_consecutive_tool_responses(tokenizer):
    conversation = [
        {"role": "user", "content": "天气?"},
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "北京"}),
                                                             call("get_weather", {"city": "上海"}, wrapped=False)]},
        {"role": "tool", "content": "晴"},
        {"role": "tool", "content": "雨"},
        {"role": "assistant", "content": "我查一下。", "tool_calls": [call("f", {"n": 1})]},
        {"role": "tool", "content": "1"},
        {"role": "assistant", "content": "北京晴，上海雨。"},
    ]
    assert render(tokenizer, QWEN25, conversation) == (
        f"{SYSTEM}<|im_start|>user\n天气?<|im_end|>\n"
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "上海"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n晴\n</tool_response>\n<tool_response>\n雨\n</tool_response><|im_end|>\n"
        '<|im_start|>assistant\n我查一下。\n<tool_call>\n{"name": "f", "arguments": {"n": 1}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n1\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n北京晴，上海雨。<|im_end|>\n"
    )
    ids = tokenizer.apply_chat_template(conversation)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<tool_call>")) == 3  # added tokens, one id each


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
    assert render(tokenizer, GEMMA, chat[:1], add_generation_prompt=True) == (
        f"<bos><start_of_turn>user\n{USER}<end_of_turn>\n<start_of_turn>model\n"
    )
    # content is trimmed, as in the released template
    assert render(tokenizer, GEMMA, [{"role": "user", "content": " hi \n"}]) == "<bos><start_of_turn>user\nhi<end_of_turn>\n"
    assert (GEMMA.stop_tokens, GEMMA.stop_token_ids) == (("<end_of_turn>", "<eos>"), (107, 1))


def test_gemma_1_2_refuse_a_system_message(tokenizer, chat):
    """HF's Gemma 1/2 templates raise on a system message (folding it in is Gemma 3's behaviour)."""
    with pytest.raises(TemplateError, match="^System role not supported$"):
        render(tokenizer, GEMMA, [{"role": "system", "content": "Be brief."}] + chat)
    with pytest.raises(TemplateError, match="alternate user/assistant"):
        render(tokenizer, GEMMA, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(TemplateError, match="alternate user/assistant"):
        render(tokenizer, GEMMA, [{"role": "assistant", "content": "a"}])


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


def _tokens_until_stop(token_ids, criterion):
    for n in range(1, len(token_ids) + 1):
        if criterion(torch.tensor([token_ids[:n]]), None).item():
            return n
    return None


def test_a_stop_string_fires_on_llamas_marker_text_but_the_stop_id_does_not(tokenizer):
    answer = tokenizer(ANSWER + "<|eot_id|>")["input_ids"]
    assert 128009 not in answer
    assert _tokens_until_stop(answer, EosTokenCriteria(eos_token_id=[128009])) is None
    assert _tokens_until_stop(answer, StopStringCriteria(tokenizer, stop_strings=["<|eot_id|>"])) == len(answer)


def test_in_context_the_markers_pieces_change(tokenizer):
    """After notebook 01's poem, BPE fuses the marker's '<' with the final '。': only a text match finds it."""
    eot_alone = tokenizer("<|eot_id|>")["input_ids"]
    in_context = tokenizer("笑傲苍茫。<|eot_id|>")["input_ids"]
    assert tokenizer.decode(in_context[-7:-6]) == "。<"
    assert in_context[-6:] == eot_alone[1:] and in_context[-7] != eot_alone[0]


def test_stop_string_cache_cannot_hit_for_this_tokenizer(tokenizer):
    """StopStringCriteria caches its table keyed on tuple(tokenizer.get_vocab().keys()) (transformers 5.23,
    generation/stopping_criteria.py); the fast tokenizer lists its vocabulary in a new order on each call."""
    assert len(tokenizer.get_vocab()) == 151665
    assert list(tokenizer.get_vocab()) != list(tokenizer.get_vocab())
    assert sorted(tokenizer.get_vocab().items()) == sorted(tokenizer.get_vocab().items())


def test_stop_ids_copied_from_other_families_are_ordinary_qwen_tokens(tokenizer):
    assert tokenizer.decode([GEMMA.stop_token_ids[1]]) == '"'
    assert tokenizer.decode([LLAMA3.stop_token_ids[0]]) == "ナル"
    assert tokenizer.decode([LLAMA3.stop_token_ids[1]]) == " отно"
    assert tokenizer.convert_ids_to_tokens(GEMMA.stop_token_ids[0]) == bytes_to_unicode()[0xAF] == "\u00af"
    assert 0xAF >> 6 == 0b10  # a UTF-8 continuation byte: alone it decodes to U+FFFD
    assert tokenizer.decode([GEMMA.stop_token_ids[0]]) == "\ufffd"
    assert all(i < 151643 for i in LLAMA3.stop_token_ids + GEMMA.stop_token_ids)
    # and they fire inside ordinary answers (notebook 01's examples)
    examples = ((GEMMA, '诗名叫"风火"。', '诗名叫"'), (LLAMA3, "我最喜欢的动画是ナルト。", "我最喜欢的动画是ナル"))
    for family, answer, stops_after in examples:
        ids = tokenizer(answer + "<|im_end|>")["input_ids"]
        n = _tokens_until_stop(ids, EosTokenCriteria(eos_token_id=list(family.stop_token_ids)))
        assert tokenizer.decode(ids[:n]) == stops_after


# --- assistant-only loss from the chat template -------------------------------------------------

CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": USER}, {"role": "assistant", "content": ANSWER}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "bye"},
     {"role": "assistant", "content": "Bye!\nSee you."}],
]


TOOL_CONVERSATIONS = [
    [{"role": "user", "content": "天气?"},
     {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "北京"}),
                                                          call("get_weather", {"city": "上海"}, wrapped=False)]},
     {"role": "tool", "content": "晴"}, {"role": "tool", "content": "雨"},
     {"role": "assistant", "content": "北京晴，上海雨。"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"},
     {"role": "assistant", "content": "Let me check.", "tool_calls": [call("f", {"a": [1, "二"]})]},
     {"role": "tool", "content": "1"}, {"role": "user", "content": "ok"}, {"role": "system", "content": "late"},
     {"role": "developer", "content": "dropped by both"}],
    [{"role": "tool", "content": "a tool message first"}, {"role": "assistant", "content": "x", "tool_calls": []}],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS + TOOL_CONVERSATIONS)
@pytest.mark.parametrize("tools", [None, [WEATHER]])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_training_template_renders_the_same_text(tokenizer, conversation, tools, add_generation_prompt):
    kwargs = {"tokenize": False, "add_generation_prompt": add_generation_prompt, "tools": tools}
    assert tokenizer.apply_chat_template(conversation, chat_template=QWEN_TRAINING_TEMPLATE, **kwargs) == (
        tokenizer.apply_chat_template(conversation, chat_template=QWEN_CHAT_TEMPLATE, **kwargs)
    )


def assistant_runs(tokenizer, conversation, **kwargs):
    """The decoded runs of tokens that the assistant mask marks."""
    encoding = tokenizer.apply_chat_template(
        conversation, chat_template=QWEN_TRAINING_TEMPLATE, return_assistant_tokens_mask=True, **kwargs
    )
    ids, mask = encoding["input_ids"], encoding["assistant_masks"]
    assert len(mask) == len(ids)
    runs, current = [], []
    for token_id, flag in zip(ids + [None], mask + [0]):
        if flag:
            current.append(token_id)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    return runs


def test_assistant_mask_covers_tool_calls_but_not_tool_responses(tokenizer):
    assert assistant_runs(tokenizer, TOOL_CONVERSATIONS[0], tools=[WEATHER]) == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "上海"}}\n</tool_call><|im_end|>',
        "北京晴，上海雨。<|im_end|>",
    ]
    assert assistant_runs(tokenizer, TOOL_CONVERSATIONS[1])[0] == (
        'Let me check.\n<tool_call>\n{"name": "f", "arguments": {"a": [1, "二"]}}\n</tool_call><|im_end|>'
    )


def test_assistant_mask_covers_each_answer_and_its_im_end(tokenizer):
    assert assistant_runs(tokenizer, CONVERSATIONS[2]) == ["Hello.<|im_end|>", "Bye!\nSee you.<|im_end|>"]


def test_assistant_mask_matches_sft_collator_except_the_stop_token(tokenizer, records):
    """Same answer tokens as SFTCollator trains on the plain text; only the stop token differs:
    <|im_end|> (151645) in ChatML, <|endoftext|> (151643) after the plain concatenation."""
    contexts = []
    for record in records:
        encoding = tokenizer.apply_chat_template(
            record_to_messages(record), chat_template=QWEN_TRAINING_TEMPLATE,
            return_assistant_tokens_mask=True, return_tensors="pt",
        )
        chat_trained = encoding["input_ids"][encoding["assistant_masks"] == 1].tolist()
        sft_labels = SFTCollator(tokenizer)([record])["labels"][0]
        sft_trained = sft_labels[sft_labels != IGNORE_INDEX].tolist()
        # the answer's tokens on their own: on these records no token straddles the prompt/answer boundary
        assert chat_trained[:-1] == sft_trained[:-1] == tokenizer(record["label"])["input_ids"]
        assert (chat_trained[-1], sft_trained[-1]) == (151645, 151643)
        # ... after different contexts: instruct + input vs system turn + headers
        contexts.append((len(sft_labels) - len(sft_trained), encoding["assistant_masks"][0].tolist().index(1)))
    assert contexts == [(27, 46), (20, 39), (23, 42), (19, 38), (27, 46)]  # as notebook 01 prints


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
    """transformers 5: tokenize=True is the default (as in 4); return_dict now defaults to True, so
    it returns a BatchEncoding where 4 returned a list of ids (return_dict=False)."""
    encoding = tokenizer.apply_chat_template(chat)
    assert set(encoding.keys()) == {"input_ids", "attention_mask"}
    assert encoding["input_ids"] == tokenizer(render(tokenizer, QWEN25, chat))["input_ids"]
    assert isinstance(tokenizer.apply_chat_template(chat, return_dict=False), list)
    with pytest.raises(ValueError, match="return_dict=True"):
        tokenizer.apply_chat_template(chat, return_dict=False, return_assistant_tokens_mask=True)


# --- the two Qwen2.5 templates are files (issue 23) ----------------------------------------------

from pathlib import Path

import helpers
from helpers.tokenizer import BUILD_RECIPE_VERSION, TEMPLATES_DIR, _fingerprint, cache_dir

TEMPLATE_FILES = Path(helpers.__file__).resolve().parent / "templates"
#: sha256 of QWEN_TRAINING_TEMPLATE as it stood before it moved into a file (commit c2faf08, where it
#: was assembled from five constants of helpers/tokenizer.py and helpers/chat_templates.py).
QWEN25_TRAINING_TEMPLATE_SHA256 = "e1f85e9b6609b86aa7309e7d78365ce4815fa1fa0a7b8bef63f8e9d69ffd44cd"


def read_template(name):
    return (TEMPLATE_FILES / name).read_text(encoding="utf-8")


def test_the_template_files_hold_todays_templates_character_for_character():
    assert TEMPLATES_DIR == TEMPLATE_FILES
    assert hashlib.sha256(read_template("qwen2.5.jinja").encode("utf-8")).hexdigest() == QWEN25_BASE_TEMPLATE_SHA256
    assert hashlib.sha256(read_template("qwen2.5_assistant_only.jinja").encode("utf-8")).hexdigest() == (
        QWEN25_TRAINING_TEMPLATE_SHA256)
    assert read_template("qwen2.5.jinja") == QWEN_CHAT_TEMPLATE == QWEN25.template
    assert read_template("qwen2.5_assistant_only.jinja") == QWEN_TRAINING_TEMPLATE
    assert sorted(p.name for p in TEMPLATE_FILES.glob("*.jinja")) == ["qwen2.5.jinja", "qwen2.5_assistant_only.jinja"]


def test_the_notebooks_assistant_branch_is_in_the_file():
    from helpers.chat_templates import QWEN_TRAINING_ASSISTANT_TURN

    assert QWEN_TRAINING_ASSISTANT_TURN in read_template("qwen2.5_assistant_only.jinja")
    assert read_template("qwen2.5_assistant_only.jinja").count("{%- generation %}") == 1


def test_the_offline_tokenizer_carries_the_file_and_its_cache_stays_valid(tokenizer):
    """The cache stores only tokenizer.json (the template is set when it is wrapped), so moving the
    template into a file needs no new BUILD_RECIPE_VERSION: a cached load still carries it."""
    assert tokenizer.chat_template == read_template("qwen2.5.jinja")
    assert BUILD_RECIPE_VERSION == 2 and _fingerprint()["recipe"] == 2
    assert (cache_dir() / "tokenizer.json").exists()
    assert helpers.load_tokenizer().chat_template == read_template("qwen2.5.jinja")


@pytest.mark.parametrize("conversation", CONVERSATIONS + TOOL_CONVERSATIONS)
def test_templates_read_from_the_files_render_like_the_constants(tokenizer, conversation):
    for name, constant in [("qwen2.5.jinja", QWEN_CHAT_TEMPLATE), ("qwen2.5_assistant_only.jinja", QWEN_TRAINING_TEMPLATE)]:
        for tools in (None, [WEATHER]):
            from_file = tokenizer.apply_chat_template(conversation, chat_template=read_template(name), tools=tools,
                                                      tokenize=False, add_generation_prompt=True)
            assert from_file == tokenizer.apply_chat_template(conversation, chat_template=constant, tools=tools,
                                                              tokenize=False, add_generation_prompt=True)
            # and the same text as Qwen's own template (tested against written-out strings above)
            assert from_file == tokenizer.apply_chat_template(conversation, tools=tools, tokenize=False,
                                                              add_generation_prompt=True)


def test_the_template_files_are_package_data():
    """pyproject.toml ships helpers/templates/*.jinja with the package (a built wheel holds both files)."""
    import fnmatch
    import tomllib

    setuptools = tomllib.loads((TEMPLATE_FILES.parent.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "helpers.templates" in setuptools["packages"]
    patterns = setuptools["package-data"]["helpers.templates"]
    for template in TEMPLATE_FILES.glob("*.jinja"):
        assert any(fnmatch.fnmatch(template.name, pattern) for pattern in patterns), template.name
