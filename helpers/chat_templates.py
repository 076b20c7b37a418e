"""Chat templates of several model families, and a Qwen2.5 template for assistant-only loss.

Introduced in notebook 01_chat_templates. A chat template is a Jinja program that turns a
list of ``{"role", "content"}`` messages into the one string a model was fine-tuned on.
Every family marks roles and turn ends with its own control tokens, and a model stops
answering by emitting its family's end-of-turn token, so the template and the stop ids
must match the model. The templates here are written by this project to reproduce each
family's documented format (the tests pin the exact strings); they are rendered with
``tokenizer.apply_chat_template(messages, chat_template=..., tokenize=False)``.

Only the Qwen2.5 template is the tokenizer's own. The Llama 3 and Gemma strings are shown
as text: their control tokens are added tokens of *their* tokenizers (with the ids listed
in :attr:`ChatFamily.stop_token_ids`), while Qwen's tokenizer splits them into ordinary
pieces.

:data:`QWEN_TRAINING_TEMPLATE` renders exactly what Qwen's template renders, plus
``{% generation %}`` markers around each assistant answer and its ``<|im_end|>``, so that
``apply_chat_template(..., return_assistant_tokens_mask=True)`` reports which tokens the
assistant produced: the tokens an SFT loss trains.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tokenizer import CHATML_GENERATION_PROMPT, CHATML_SYSTEM_TURN, QWEN_CHAT_TEMPLATE


@dataclass(frozen=True)
class ChatFamily:
    """One model family's chat format: its template and how its assistant turns end.

    Introduced in notebook 01_chat_templates. ``stop_tokens`` are the tokens on which
    ``generate`` must stop for that family's instruction-tuned models (end of turn first,
    then the base model's end of text); ``stop_token_ids`` are their ids in the family's
    own tokenizer, as its released generation config lists them.
    """

    name: str
    template: str  # Jinja source for apply_chat_template(chat_template=...)
    stop_tokens: tuple[str, ...]
    stop_token_ids: tuple[int, ...]
    documentation: str  # where the family documents this format


#: Qwen2.5: ChatML. ``<|im_start|>{role}\n{content}<|im_end|>\n`` per message; a default
#: system turn when the conversation has none. Instruct models end a turn with
#: ``<|im_end|>`` (151645); the base model's eos is ``<|endoftext|>`` (151643).
QWEN25 = ChatFamily(
    name="Qwen2.5 (ChatML)",
    template=QWEN_CHAT_TEMPLATE,
    stop_tokens=("<|im_end|>", "<|endoftext|>"),
    stop_token_ids=(151645, 151643),
    documentation="qwen.readthedocs.io (chat template) and the Qwen2.5 tokenizer_config.json",
)

#: Llama 3 Instruct: ``<|begin_of_text|>`` once, then per message
#: ``<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`` (content trimmed, as
#: the released template does); no default system turn. A turn ends with ``<|eot_id|>``
#: (128009); ``<|end_of_text|>`` (128001) ends a document.
LLAMA3 = ChatFamily(
    name="Llama 3",
    template=(
        "{{- '<|begin_of_text|>' }}"
        "{%- for message in messages %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        " + (message['content'] | trim) + '<|eot_id|>' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}"
        "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
        "{%- endif %}"
    ),
    stop_tokens=("<|eot_id|>", "<|end_of_text|>"),
    stop_token_ids=(128009, 128001),
    documentation="llama.com: Model Cards & Prompt formats, Meta Llama 3",
)

#: Gemma (instruction-tuned): ``<bos>``, then ``<start_of_turn>{user|model}\n{content}<end_of_turn>\n``
#: per message; the assistant's role is called ``model``. There is no system role: system
#: text goes at the top of the first user turn, followed by a blank line. Roles must
#: alternate, starting with the user. A turn ends with ``<end_of_turn>`` (107); ``<eos>``
#: is id 1.
GEMMA = ChatFamily(
    name="Gemma",
    template=(
        "{{- '<bos>' }}"
        "{%- if messages[0]['role'] == 'system' %}"
        "{%- set system_text = (messages[0]['content'] | trim) + '\\n\\n' %}"
        "{%- set turns = messages[1:] %}"
        "{%- else %}"
        "{%- set system_text = '' %}"
        "{%- set turns = messages %}"
        "{%- endif %}"
        "{%- for message in turns %}"
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{- raise_exception('Gemma turns must alternate user/assistant, starting with user') }}"
        "{%- endif %}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "{{- '<start_of_turn>' + role + '\\n' + (system_text if loop.first else '')"
        " + (message['content'] | trim) + '<end_of_turn>\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}"
        "{{- '<start_of_turn>model\\n' }}"
        "{%- endif %}"
    ),
    stop_tokens=("<end_of_turn>", "<eos>"),
    stop_token_ids=(107, 1),
    documentation="ai.google.dev: Gemma formatting and system instructions",
)

#: The three families notebook 01 renders side by side.
CHAT_FAMILIES = (QWEN25, LLAMA3, GEMMA)

#: Qwen2.5's ChatML with ``{% generation %}`` around what the assistant writes: its content
#: and the ``<|im_end|>`` that ends its turn (the model must learn to emit it to stop). The
#: role header ``<|im_start|>assistant\n`` is given to the model at inference time
#: (``add_generation_prompt``), so it stays outside; so does the ``\n`` after ``<|im_end|>``,
#: which generation never reaches. Renders the same text as ``QWEN_CHAT_TEMPLATE``.
QWEN_TRAINING_TEMPLATE = (
    CHATML_SYSTEM_TURN
    + "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- elif not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    + CHATML_GENERATION_PROMPT
)


def record_to_messages(record: dict, system: str | None = None) -> list[dict[str, str]]:
    """One ``{instruct, input, label}`` record as a chat: user = instruct + input, assistant = label.

    Introduced in notebook 01_chat_templates. With ``system``, a system message comes first;
    without it, each template decides (Qwen2.5 inserts its default system turn).
    """
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": record["instruct"] + record["input"]})
    messages.append({"role": "assistant", "content": record["label"]})
    return messages
