"""Chat templates of several model families, and a Qwen2.5 template for assistant-only loss.

Introduced in notebook 01_chat_templates. A chat template is a Jinja program that turns a
list of ``{"role", "content"}`` messages into the one string a model was fine-tuned on.
Every family marks roles and turn ends with its own control tokens, and a model stops
answering by emitting its family's end-of-turn token, so the template and the stop ids
must match the model. They are rendered with
``tokenizer.apply_chat_template(messages, chat_template=..., tokenize=False)``.

Only the Qwen2.5 template is the tokenizer's own (Qwen2.5-0.5B's, character for character).
The Llama 3 and Gemma templates are this project's re-typings of the released ones, checked
against public copies of their ``tokenizer_config.json`` (sources named at each family); the
tests pin Qwen's template by its sha256 and every template by its renderings. They are shown
as text: their control tokens are added tokens of *their* tokenizers (with the ids listed in
:attr:`ChatFamily.stop_token_ids`), while Qwen's tokenizer splits them into ordinary pieces.

:data:`QWEN_TRAINING_TEMPLATE` renders exactly what Qwen's template renders, tool
conversations included, plus ``{% generation %}`` markers around what the assistant writes
(its answer or tool calls, and its ``<|im_end|>``), so that
``apply_chat_template(..., return_assistant_tokens_mask=True)`` reports which tokens the
assistant produced: the tokens an SFT loss trains. Both Qwen2.5 templates are files,
``helpers/templates/qwen2.5.jinja`` and ``helpers/templates/qwen2.5_assistant_only.jinja``, to copy
and read with ``apply_chat_template(messages, chat_template=Path(...).read_text())``.

>>> from helpers import load_tokenizer
>>> tokenizer = load_tokenizer()
>>> template = (TEMPLATES_DIR / "qwen2.5_assistant_only.jinja").read_text(encoding="utf-8")
>>> chat = [{"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]
>>> encoding = tokenizer.apply_chat_template(chat, chat_template=template, return_dict=True,
...                                          return_assistant_tokens_mask=True)
>>> [tokenizer.decode([t]) for t, m in zip(encoding["input_ids"], encoding["assistant_masks"]) if m]
['4', '<|im_end|>']
"""

from __future__ import annotations

from dataclasses import dataclass

from .tokenizer import QWEN_CHAT_TEMPLATE, TEMPLATES_DIR


@dataclass(frozen=True)
class ChatFamily:
    """One model family's chat format: its template and how its assistant turns end.

    Introduced in notebook 01_chat_templates. ``stop_tokens`` are the tokens on which
    ``generate`` must stop for that family's instruction-tuned models (end of turn first,
    then the base model's end of text); ``stop_token_ids`` are their ids in the family's
    own tokenizer, in that order. Released generation configs list them in their own order,
    and not always completely: ``Meta-Llama-3-8B-Instruct``'s first ``generation_config.json``
    had only 128001 (128009 was added later, giving ``[128001, 128009]``); Gemma 2's configs
    list ``[1, 107]``.

    >>> from helpers import load_tokenizer
    >>> chat = [{"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]
    >>> print(load_tokenizer().apply_chat_template(chat, chat_template=LLAMA3.template, tokenize=False))
    <|begin_of_text|><|start_header_id|>user<|end_header_id|>
    <BLANKLINE>
    2+2=<|eot_id|><|start_header_id|>assistant<|end_header_id|>
    <BLANKLINE>
    4<|eot_id|>
    >>> LLAMA3.stop_token_ids
    (128009, 128001)
    """

    name: str
    template: str  # Jinja source for apply_chat_template(chat_template=...)
    stop_tokens: tuple[str, ...]
    stop_token_ids: tuple[int, ...]
    documentation: str  # where the family documents this format


#: Qwen2.5: ChatML. ``<|im_start|>{role}\n{content}<|im_end|>\n`` per system, user and plain
#: assistant message (tool calls and tool messages have their own shapes, a message with any
#: other role renders nothing). Without a
#: system message, the base model's template (this one) inserts ``You are a helpful
#: assistant.``; the Instruct models' template inserts
#: :data:`helpers.tokenizer.INSTRUCT_SYSTEM_PROMPT` instead. Instruct models end a turn with
#: ``<|im_end|>`` (151645); the base model's eos is ``<|endoftext|>`` (151643).
QWEN25 = ChatFamily(
    name="Qwen2.5 (ChatML)",
    template=QWEN_CHAT_TEMPLATE,
    stop_tokens=("<|im_end|>", "<|endoftext|>"),
    stop_token_ids=(151645, 151643),
    documentation="Qwen/Qwen2.5-0.5B tokenizer_config.json (chat_template); qwen.readthedocs.io",
)

#: Llama 3 (3.0) Instruct, as ``meta-llama/Meta-Llama-3-8B-Instruct``'s template writes it:
#: ``<|begin_of_text|>`` before the first message, then per message
#: ``<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`` (content trimmed); no
#: default system turn. (Checked against public copies of that ``tokenizer_config.json`` found
#: with the search tool; ``bos_token`` is written out, as Qwen's tokenizer has none.) A turn ends
#: with ``<|eot_id|>`` (128009); ``<|end_of_text|>`` (128001) ends a document.
#: Llama 3.1, 3.2 and 3.3 differ: their templates *always* open with a system turn,
#: ``<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n``
#: ``Today Date: 26 Jul 2024\n\n{system message, or nothing}<|eot_id|>`` (3.1's fixed date;
#: 3.2's template takes today's date through ``strftime_now`` when it is defined), whether or
#: not the conversation has a system message. Llama 3.1 also brought an ``ipython`` role (tool
#: results), ``<|python_tag|>`` (before a built-in tool call) and ``<|eom_id|>`` (128008, "end of
#: message": the model stops to wait for a tool's result); the generation configs of
#: Llama-3.1-8B-Instruct and Llama-3.2-1B-Instruct stop on ``[128001, 128008, 128009]`` (public
#: copies found with the search tool). Not rendered here.
LLAMA3 = ChatFamily(
    name="Llama 3 (3.0)",
    template=(
        "{%- for message in messages %}"
        "{%- if loop.first %}{{- '<|begin_of_text|>' }}{%- endif %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        " + (message['content'] | trim) + '<|eot_id|>' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}"
        "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
        "{%- endif %}"
    ),
    stop_tokens=("<|eot_id|>", "<|end_of_text|>"),
    stop_token_ids=(128009, 128001),
    documentation="meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json; llama.com Meta Llama 3 prompt format",
)

#: Gemma 1 and 2 (instruction-tuned), as HF's ``google/gemma-2-9b-it`` template writes it:
#: ``<bos>``, then ``<start_of_turn>{user|model}\n{content}<end_of_turn>\n`` per message
#: (content trimmed); the assistant's role is called ``model``. There is no system role: a
#: system message makes the template raise ``System role not supported``. Roles must
#: alternate, starting with the user. (Checked against a public copy of the Gemma 2 template,
#: ``HakunaMatata888/gemma2-poem/tokenizer_config.json``, which also gives ``<start_of_turn>``
#: = 106 and ``<end_of_turn>`` = 107; ``bos_token`` is written out as ``<bos>``.) A turn ends
#: with ``<end_of_turn>`` (107); ``<eos>`` is id 1; Gemma 2's configs stop on
#: ``[1, 107]``. Gemma 3 keeps the marker strings but not all ids: its ``<end_of_turn>`` is 106
#: and its configs stop on ``[1, 106]`` (public copies of Gemma 3 configs, found with the search
#: tool); its template accepts a system message and folds its text into the first user turn,
#: before the user's text.
GEMMA = ChatFamily(
    name="Gemma (1, 2)",
    template=(
        "{{- '<bos>' }}"
        "{%- if messages[0]['role'] == 'system' %}"
        "{{- raise_exception('System role not supported') }}"
        "{%- endif %}"
        "{%- for message in messages %}"
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{%- endif %}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "{{- '<start_of_turn>' + role + '\\n' + (message['content'] | trim) + '<end_of_turn>\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}"
        "{{- '<start_of_turn>model\\n' }}"
        "{%- endif %}"
    ),
    stop_tokens=("<end_of_turn>", "<eos>"),
    stop_token_ids=(107, 1),
    documentation="google/gemma-2-9b-it tokenizer_config.json; ai.google.dev Gemma formatting",
)

#: The three families notebook 01 renders side by side.
CHAT_FAMILIES = (QWEN25, LLAMA3, GEMMA)

#: The assistant branch of :data:`QWEN_TRAINING_TEMPLATE`. ``{% generation %}`` covers what the
#: assistant writes: its content or tool calls and the ``<|im_end|>`` that ends its turn (the
#: model must learn to emit it to stop). The header ``<|im_start|>assistant\n`` is given to the
#: model at inference time (``add_generation_prompt``), so it stays outside; so does the ``\n``
#: after ``<|im_end|>``, which generation never reaches. Qwen's own tool-call branch writes the
#: header without its ``\n`` and puts a ``\n`` before the content and before every call; here the
#: header keeps its ``\n`` and a call gets one only when content or another call precedes it in
#: the turn: the same text.
QWEN_TRAINING_ASSISTANT_TURN = (
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>assistant\\n' }}\n"
    "        {%- generation %}\n"
    "        {%- if not message.tool_calls %}\n"
    "            {{- '' + message.content + '<|im_end|>' }}\n"
    "        {%- else %}\n"
    "            {%- if message.content %}\n"
    "                {{- message.content }}\n"
    "            {%- endif %}\n"
    "            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if tool_call.function is defined %}\n"
    "                    {%- set tool_call = tool_call.function %}\n"
    "                {%- endif %}\n"
    "                {%- if message.content or not loop.first %}\n"
    "                    {{- '\\n' }}\n"
    "                {%- endif %}\n"
    "                {{- '<tool_call>\\n{\"name\": \"' }}\n"
    "                {{- tool_call.name }}\n"
    "                {{- '\", \"arguments\": ' }}\n"
    "                {{- tool_call.arguments | tojson }}\n"
    "                {{- '}\\n</tool_call>' }}\n"
    "            {%- endfor %}\n"
    "            {{- '<|im_end|>' }}\n"
    "        {%- endif %}\n"
    "        {%- endgeneration %}\n"
    "        {{- '\\n' }}\n"
)

#: Qwen2.5's own template (:data:`helpers.tokenizer.QWEN_CHAT_TEMPLATE`) with its assistant
#: branches replaced by :data:`QWEN_TRAINING_ASSISTANT_TURN`, read from
#: ``helpers/templates/qwen2.5_assistant_only.jinja`` (copy that file to use it elsewhere).
#: Renders the same text for every conversation, tools included (the tests compare the two).
QWEN_TRAINING_TEMPLATE = (TEMPLATES_DIR / "qwen2.5_assistant_only.jinja").read_text(encoding="utf-8")


def record_to_messages(record: dict, system: str | None = None) -> list[dict[str, str]]:
    """One ``{instruct, input, label}`` record as a chat: user = instruct + input, assistant = label.

    Introduced in notebook 01_chat_templates. With ``system``, a system message comes first;
    without it, each template decides (Qwen2.5's inserts its default system turn).

    >>> record_to_messages({"instruct": "写诗：", "input": "春", "label": "好。"})
    [{'role': 'user', 'content': '写诗：春'}, {'role': 'assistant', 'content': '好。'}]
    """
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": record["instruct"] + record["input"]})
    messages.append({"role": "assistant", "content": record["label"]})
    return messages
