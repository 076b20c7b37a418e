"""The figures of notebooks 06 and 07: what the eye should find is drawn, and the legend lists only what is drawn."""

import warnings

import matplotlib

matplotlib.use("Agg")  # no display in tests

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from helpers import (  # noqa: E402
    LoraSettings, estimate_lora_training_memory, estimate_training_memory, lora_parameter_counts_on_meta,
    pack_into_blocks, qwen25_05b_config,
)
from helpers.plotting import HIGHLIGHT_COLOR, MEMORY_PART_COLORS, plot_memory_stacks, plot_stream_blocks  # noqa: E402


def legend_labels(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def drawn_without_warnings(fig):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()
    plt.close(fig)


@pytest.fixture(scope="module")
def stream(tokenizer, records):
    documents = [tokenizer(r["instruct"] + r["input"] + r["label"])["input_ids"] for r in records]
    return [t for block in pack_into_blocks(documents, 16, tokenizer.eos_token_id) for t in block]


def test_blocks_figure_fills_exactly_the_eos_targets_red(tokenizer, stream):
    fig = plot_stream_blocks(tokenizer, stream, 16, tokenizer.eos_token_id)
    cells = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(cells) == len(stream) == 194
    red = [i for i, cell in enumerate(cells) if to_hex(cell.get_facecolor()) == HIGHLIGHT_COLOR.lower()]
    assert red == [79, 117, 146]  # after the eos at 78, 116, 145; the one at 47 ends block 2
    dashed = [i for i, cell in enumerate(cells) if cell.get_linestyle() == "--"]
    assert dashed == [48]
    assert len(legend_labels(fig)) == 4
    drawn_without_warnings(fig)


def test_blocks_figure_legend_has_no_entry_for_what_is_not_drawn(tokenizer):
    eos = tokenizer.eos_token_id
    fig = plot_stream_blocks(tokenizer, [1, 2, 3, eos], 4, eos)  # one block, no document after the eos
    assert legend_labels(fig) == ["a document's tokens (shade changes with the document)", "eos (separator)"]
    drawn_without_warnings(fig)


def test_memory_figure_has_a_colour_per_part_and_points_at_the_adapter():
    assert len(set(MEMORY_PART_COLORS.values())) == len(MEMORY_PART_COLORS)  # "weights" != "frozen weights"
    frozen, trainable = lora_parameter_counts_on_meta(qwen25_05b_config(), LoraSettings())
    bars = {"full, fp32": estimate_training_memory(frozen, "fp32").parts,
            "full, mixed": estimate_training_memory(frozen, "mixed").parts,
            "LoRA, bf16 base": estimate_lora_training_memory(frozen, trainable, "bf16").parts}
    fig = plot_memory_stacks(bars)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("7.90 GB") == 2 and "1.06 GB" in texts  # mixed precision: 16 bytes per parameter too
    assert sum("adapter + its gradients" in t for t in texts) == 1 and "70 MB" in " ".join(texts)
    assert set(legend_labels(fig)) == {"weights", "master weights", "gradients", "optimizer states",
                                       "frozen weights", "adapter weights"}
    drawn_without_warnings(fig)


def test_memory_figure_refuses_an_unknown_part():
    with pytest.raises(ValueError, match="unknown memory part"):
        plot_memory_stacks({"x": {"activations": 1}})


@pytest.mark.parametrize("trained_share, arrows", [(0.09, 1), (0.11, 0)])
def test_memory_figure_points_at_trained_parts_under_a_tenth_of_the_bar(trained_share, arrows):
    """The docstring's threshold is the code's: parts above the frozen weights under 10 % get an arrow."""
    from matplotlib.text import Annotation

    trained = int(1000 * trained_share)
    fig = plot_memory_stacks({"LoRA": {"frozen weights": 1000 - trained, "adapter weights": trained}}, unit=1)
    assert sum(isinstance(t, Annotation) for t in fig.axes[0].texts) == arrows
    assert "under 10 % of its height" in " ".join(plot_memory_stacks.__doc__.split())
    plt.close(fig)
