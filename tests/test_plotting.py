import io
import warnings

import matplotlib

matplotlib.use("Agg")  # no display in tests

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from helpers import PretrainCollator, SFTCollator  # noqa: E402
from helpers import plotting  # noqa: E402
from helpers.plotting import (  # noqa: E402
    IGNORED_COLOR,
    TRAINED_COLOR,
    plot_label_grid,
    token_display_text,
)


@pytest.fixture(scope="module")
def batch(records):
    from helpers import load_tokenizer

    tokenizer = load_tokenizer()
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    return tokenizer, PretrainCollator(tokenizer)(records[:2]), SFTCollator(tokenizer)(records[:2])


def cells(fig):
    return [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]


def texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


def draw_without_warnings(fig):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Glyph ... missing from font(s)"
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=60)
    plt.close(fig)
    return buffer.getvalue()


def test_grid_colours_padding_and_order(batch):
    tokenizer, pretrain, sft = batch
    row = 1  # record 1: 31 tokens, padded to 48
    fig = plot_label_grid(
        tokenizer, pretrain["input_ids"][row],
        {"pretrain": pretrain["labels"][row], "SFT": sft["labels"][row]},
        pretrain["attention_mask"][row], highlight=[5],
    )
    boxes = cells(fig)
    assert len(boxes) == 2 * 48
    colours = [to_hex(b.get_facecolor()) for b in boxes]
    # cells are drawn position by position, pretrain row then SFT row
    pretrain_colours, sft_colours = colours[0::2], colours[1::2]
    assert pretrain_colours.count(to_hex(TRAINED_COLOR)) == 31
    assert sft_colours.count(to_hex(TRAINED_COLOR)) == 11
    assert sft_colours.count(to_hex(IGNORED_COLOR)) == 48 - 11
    hatched = [b.get_hatch() is not None for b in boxes]
    assert sum(hatched) == 2 * (48 - 31)  # padding, in both rows
    assert sum(b.get_linewidth() > 2 for b in boxes) == 2  # the highlighted position, both rows
    # row names in the given order, pretraining above SFT (y grows downwards)
    names = {t.get_text(): t.get_position()[1] for t in fig.axes[0].texts if t.get_text() in ("pretrain", "SFT")}
    assert names["pretrain"] < names["SFT"]
    shown = texts(fig)
    assert "[PAD]" in shown and "-100" in shown and "151643" in shown and "请你" in shown
    assert draw_without_warnings(fig).startswith(b"\x89PNG")


def test_long_records_wrap(batch):
    tokenizer, pretrain, sft = batch
    fig = plot_label_grid(tokenizer, pretrain["input_ids"][0], {"pretrain": pretrain["labels"][0]},
                          tokens_per_line=16)
    positions = [t for t in texts(fig) if t.isdigit() and int(t) < 48 and len(t) <= 2]
    assert positions == [str(i) for i in range(48)]
    assert fig.get_size_inches()[0] == pytest.approx(1.9 + 0.78 * 16)
    draw_without_warnings(fig)


def test_without_a_cjk_font_characters_are_escaped(batch, monkeypatch):
    tokenizer, pretrain, sft = batch
    monkeypatch.setattr(plotting, "cjk_font", lambda: None)
    fig = plot_label_grid(tokenizer, pretrain["input_ids"][0][:4], {"pretrain": pretrain["labels"][0][:4]})
    shown = texts(fig)
    assert "\\u8bf7\\u4f60" in shown  # 请你
    assert not any("请" in t for t in shown)
    draw_without_warnings(fig)


def test_token_display_text():
    assert token_display_text(" the") == "\u2423the"
    assert token_display_text("。\n") == "。\u21b5"
    assert token_display_text("") == "\u2205"
    assert token_display_text("a吒", drawable=frozenset({ord("a")})) == "a\\u5412"
    assert token_display_text("\U00020000", drawable=frozenset()) == "\\U00020000"


def test_rows_must_match_the_tokens(batch):
    tokenizer, pretrain, _ = batch
    with pytest.raises(ValueError, match="row 'SFT' has 3 labels for 48 tokens"):
        plot_label_grid(tokenizer, pretrain["input_ids"][0], {"SFT": [1, 2, 3]})
