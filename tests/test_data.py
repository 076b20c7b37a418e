import json

import pytest

from helpers import DataError, load_records
from helpers.tokenizer import ADDED_TOKENS, FIRST_ADDED_ID, N_SPECIAL


def write(tmp_path, content, name="records.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


GOOD = {"instruct": "写诗：", "input": "", "label": "好诗。"}


def test_default_file_is_the_posts_five_records():
    records = load_records()
    assert len(records) == 5
    assert records[0] == {
        "instruct": "请你给哪吒写一首诗：",
        "input": "哪吒降世，意气飞扬。\n逆天改命，破障冲霄。",
        "label": "红绫缠腕，风火踏浪。\n不屈不悔，笑傲苍茫。",
    }
    assert [r["instruct"][3:-5] for r in records] == ["哪吒", "敖丙", "殷夫人", "太乙真人", "申公豹"]
    assert records[4]["label"] == "欲翻天命，终难遂行。\n困局自招，悔恨难平。"


def test_empty_input_is_allowed(tmp_path):
    assert load_records(write(tmp_path, [GOOD])) == [GOOD]


def test_unreadable_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match=r"nope\.json: cannot read"):
        load_records(missing)


def test_undecodable_bytes(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'[{"instruct": "\xff"}]')
    with pytest.raises(DataError, match=r"latin1\.json: cannot read"):
        load_records(path)


def test_bad_json(tmp_path):
    with pytest.raises(DataError, match=r"records\.json: not valid JSON"):
        load_records(write(tmp_path, '[{"instruct": '))


@pytest.mark.parametrize("top, found", [("{}", "an object"), ("[]", "an empty array"), ("\"x\"", "a string"), ("3", "a number")])
def test_top_level_must_be_a_non_empty_list(tmp_path, top, found):
    with pytest.raises(DataError, match=rf"records\.json: the top level must be a non-empty array.*found {found}"):
        load_records(write(tmp_path, top))


def test_record_not_an_object(tmp_path):
    with pytest.raises(DataError, match=r"records\.json: record 1: must be a JSON object, found an array"):
        load_records(write(tmp_path, [GOOD, ["a"]]))


@pytest.mark.parametrize("field", ["instruct", "input", "label"])
def test_missing_field(tmp_path, field):
    record = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(DataError, match=rf"records\.json: record 2: field '{field}' is missing"):
        load_records(write(tmp_path, [GOOD, GOOD, record]))


@pytest.mark.parametrize("field", ["instruct", "input", "label"])
@pytest.mark.parametrize("value, found", [(None, "null"), (7, "a number"), (["x"], "an array")])
def test_field_not_a_string(tmp_path, field, value, found):
    record = dict(GOOD, **{field: value})
    with pytest.raises(DataError, match=rf"record 0: field '{field}' must be a string, found {found}"):
        load_records(write(tmp_path, [record]))


@pytest.mark.parametrize("field", ["instruct", "label"])
def test_empty_instruct_or_label(tmp_path, field):
    with pytest.raises(DataError, match=rf"records\.json: record 0: field '{field}' is empty"):
        load_records(write(tmp_path, [dict(GOOD, **{field: ""})]))


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --- control tokens inside record text ------------------------------------------------------
#
# Qwen2.5's 22 added tokens are encoded as one control id wherever they appear in text: an
# <|endoftext|> inside a label would teach an early stop, an <|im_start|> inside an input would
# forge a chat turn. load_records refuses them, naming file, record, field and token.


@pytest.mark.parametrize("field", ["instruct", "input", "label"])
@pytest.mark.parametrize("token", ADDED_TOKENS)
def test_each_added_token_in_each_field_is_refused(tmp_path, field, token):
    record = dict(GOOD, **{field: f"前文{token}后文"})
    path = write(tmp_path, [GOOD, record])
    with pytest.raises(DataError) as error:
        load_records(path)
    assert str(error.value).startswith(
        f"{path}: record 1: field {field!r} contains the control token {token!r}, which the tokenizer would encode"
    )


def test_the_tokenizer_does_encode_them_as_control_ids(tokenizer):
    """Why the rule exists: each of the 22 strings is one added id inside ordinary text."""
    for token_id, token in enumerate(ADDED_TOKENS, start=FIRST_ADDED_ID):
        assert tokenizer("前文" + token + "后文")["input_ids"].count(token_id) == 1


def test_split_special_tokens_is_not_enough_for_qwen(tokenizer):
    """split_special_tokens=True spells the 14 special tokens as text but still encodes the 8
    ordinary added tokens (<tool_call>, </tool_call>, the fill-in-the-middle markers) as control ids:
    so the series refuses such records instead."""
    still_control = [
        token for token_id, token in enumerate(ADDED_TOKENS, start=FIRST_ADDED_ID)
        if token_id in tokenizer("x" + token + "y", split_special_tokens=True)["input_ids"]
    ]
    assert still_control == list(ADDED_TOKENS[N_SPECIAL:])
    assert len(still_control) == 8


def test_the_first_token_in_the_text_is_named(tmp_path):
    record = dict(GOOD, label="a<|im_end|>b<|endoftext|>")
    with pytest.raises(DataError, match=r"field 'label' contains the control token '<\|im_end\|>'"):
        load_records(write(tmp_path, [record]))


def test_look_alikes_are_plain_text(tmp_path):
    record = dict(GOOD, input="<|im_start user|> <endoftext> <tool_call <|ENDOFTEXT|>")
    assert load_records(write(tmp_path, [record])) == [record]
