"""helpers.plotting.plot_label_rows: notebook 02's label grid, one row of cells per variant."""

import warnings

import matplotlib

matplotlib.use("Agg")  # no display in tests

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from helpers import VARIANTS, add_pad_token  # noqa: E402
from helpers.plotting import (  # noqa: E402
    HIGHLIGHT_COLOR, IGNORED_COLOR, IGNORED_HATCH_COLOR, TRAINED_COLOR, TRAINED_HATCH_COLOR, plot_label_rows,
)
from post_facts import EOS_ID  # noqa: E402


@pytest.fixture(scope="module")
def rows(tokenizer, records):
    """The end of record 1's row in a batch with record 0, for variants A and C, as 02 draws it."""
    pad_tokenizer = add_pad_token(tokenizer)
    drawn = {}
    for name, tok in (("A", tokenizer), ("C", pad_tokenizer)):
        batch = VARIANTS[name].collator(tok)(records[:2])
        end = int(batch["attention_mask"][1].sum())
        window = slice(end - 4, end + 3)
        drawn[f"{name}: {tok.pad_token} pads"] = (tok, batch["input_ids"][1, window], batch["labels"][1, window], batch["attention_mask"][1, window])
    return drawn


def cells(fig):
    return [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]


def test_each_row_shows_its_own_tokens_and_labels(rows):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing-glyph warnings
        fig = plot_label_rows(rows, highlight_id=EOS_ID, highlight_label="eos in the input")
        fig.canvas.draw()
    patches = cells(fig)
    assert len(patches) == 14  # 2 rows x 7 tokens
    colours = [to_hex(p.get_facecolor()) for p in patches]
    # the window: 3 text tokens, the eos, 3 pads. A masks the eos with the pads; C trains it
    assert colours[:7] == [TRAINED_COLOR] * 3 + [IGNORED_COLOR] * 4
    assert colours[7:] == [TRAINED_COLOR] * 4 + [IGNORED_COLOR] * 3
    outlined = [i for i, p in enumerate(patches) if to_hex(p.get_edgecolor()) == HIGHLIGHT_COLOR]
    assert outlined == [3, 10]  # the eos that ends the text; A's padding (eos ids too) is not outlined
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "[PAD]" in texts and "<|endoftext|>" in texts and "-100" in texts and str(EOS_ID) in texts
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == ["A: <|endoftext|> pads", "C: [PAD] pads"]  # each row labelled with its setting, top to bottom
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["trained: label = token id", "ignored: label = -100", "padding (attention_mask = 0)",
                      "eos in the input"]
    hatched = [bool(p.get_hatch()) for p in patches]
    assert hatched == ([False] * 4 + [True] * 3) * 2
    plt.close(fig)


def test_hatched_padding_keeps_trained_and_ignored_apart(rows):
    tok, ids, labels, mask = rows["A: <|endoftext|> pads"]
    trained = labels.clone()
    trained[mask == 0] = ids[mask == 0]  # the same padding, trained (variant E's labels)
    fig = plot_label_rows({"ignored": (tok, ids, labels, mask), "trained": (tok, ids, trained, mask)})
    patches = cells(fig)
    hatch_colours = {to_hex(p.get_hatchcolor()) for p, m in zip(patches, list(mask) * 2) if m == 0}
    assert hatch_colours == {IGNORED_HATCH_COLOR, TRAINED_HATCH_COLOR} and IGNORED_HATCH_COLOR != TRAINED_HATCH_COLOR
    assert fig.axes[0].get_xlim()[0] == 0  # no empty margin left of the first cell: the names are tick labels
    plt.close(fig)


def test_rows_of_unequal_parts_are_refused(rows, tokenizer):
    tok, ids, labels, mask = rows["A: <|endoftext|> pads"]
    with pytest.raises(ValueError, match="row 'bad'"):
        plot_label_rows({"bad": (tok, ids, labels[:-1], mask)})
