"""Drawing labels token by token: which positions a loss trains and which it ignores (-100).

Introduced in notebook 03_label_masking. :func:`plot_label_grid` draws one record as a grid
of cells, one column per token position and one row per labelling (for example pretraining
above SFT): each cell shows the token's text and its label (the token id where trained,
-100 where ignored), coloured by trained vs ignored, with padding hatched.

Chinese text needs a CJK font, which matplotlib does not ship. This module uses the first
one it finds: an installed system font, else the Noto Sans CJK SC file of the ``mplfonts``
package (registered with matplotlib, without changing any matplotlib setting). Characters
that no available font can draw are shown as ``\\uXXXX`` escapes instead of empty boxes, so
a figure never triggers matplotlib's missing-glyph warnings.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

from .collators import IGNORE_INDEX

# pyplot and patches are imported when a figure is drawn, so that `import helpers` stays light.

TRAINED_COLOR = "#9fd8b0"  # light green: this position adds to the loss
IGNORED_COLOR = "#d4d4d4"  # light grey: label -100, no loss
HIGHLIGHT_COLOR = "#c0392b"  # red outline for positions the caller wants to point at
PAD_HATCH = "///"
TRAINED_HATCH_COLOR = "#3f8f5a"  # dark green hatching: trained padding (plot_label_rows)
IGNORED_HATCH_COLOR = "#a0a0a0"  # dark grey hatching: ignored padding (plot_label_rows)
BASE_FAMILY = "DejaVu Sans"  # matplotlib's bundled default font
#: Visible stand-ins for whitespace inside a token.
WHITESPACE_SIGNS = {" ": "\u2423", "\n": "\u21b5", "\t": "\u2192", "\r": "\u240d"}
#: A character every CJK font has and no Latin one does.
_CJK_PROBE = "\u5412"  # 吒
_CJK_NAME_HINTS = ("cjk", "han", "hei", "song", "ming", "kai", "wenquanyi", "wqy", "yahei",
                   "pingfang", "hiragino", "noto sans sc", "noto serif sc", "simsun", "fang")


@functools.lru_cache(maxsize=None)
def _charmap(path: str) -> frozenset[int]:
    return frozenset(FT2Font(path).get_charmap())


def _mplfonts_noto_path() -> Path | None:
    """Noto Sans CJK SC inside the ``mplfonts`` package, found without importing it."""
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "NotoSansCJKsc-Regular.otf"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=None)
def cjk_font() -> tuple[str, str] | None:
    """``(family name, file)`` of a font that draws Chinese, or None when there is none.

    Introduced in notebook 03_label_masking. Installed system fonts come first; then the
    Noto Sans CJK SC file that the ``mplfonts`` package ships, registered with matplotlib.
    """
    for entry in font_manager.fontManager.ttflist:
        if any(hint in entry.name.lower() for hint in _CJK_NAME_HINTS):
            try:
                if ord(_CJK_PROBE) in _charmap(entry.fname):
                    return entry.name, entry.fname
            except (OSError, RuntimeError):
                continue
    path = _mplfonts_noto_path()
    if path is not None:
        font_manager.fontManager.addfont(str(path))
        return font_manager.FontProperties(fname=str(path)).get_name(), str(path)
    return None


def _font_setup() -> tuple[list[str], frozenset[int]]:
    """Font families to draw with (fallback order) and the characters they can draw."""
    families = [BASE_FAMILY]
    drawable = set(_charmap(font_manager.findfont(BASE_FAMILY, fallback_to_default=False)))
    cjk = cjk_font()
    if cjk is not None:
        families.append(cjk[0])
        drawable |= _charmap(cjk[1])
    return families, frozenset(drawable)


def token_display_text(text: str, drawable: frozenset[int] | None = None) -> str:
    """A token's text made visible: whitespace as signs, undrawable characters escaped.

    Introduced in notebook 03_label_masking. ``" "`` becomes ``␣``, ``"\\n"`` becomes ``↵``; with
    ``drawable`` (the code points the figure's fonts have), any other character outside it
    becomes ``\\uXXXX``. An empty string (a token that decodes to nothing) shows as ``∅``.

    >>> token_display_text(" a\\n")
    '␣a↵'
    >>> token_display_text("é", drawable=frozenset(map(ord, "abc")))
    '\\\\u00e9'
    >>> token_display_text("")
    '∅'
    """
    shown = []
    for char in text:
        char = WHITESPACE_SIGNS.get(char, char)
        if drawable is not None and ord(char) not in drawable:
            char = f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"
        shown.append(char)
    return "".join(shown) or "\u2205"


def _as_list(values) -> list[int]:
    return [int(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def plot_label_grid(
    tokenizer,
    input_ids: Sequence[int],
    rows: Mapping[str, Sequence[int]],
    attention_mask: Sequence[int] | None = None,
    *,
    tokens_per_line: int = 16,
    highlight: Sequence[int] = (),
    highlight_label: str = "highlighted",
    title: str | None = None,
):
    """Draw one record's tokens with one row of labels per entry of ``rows``; returns the Figure.

    Introduced in notebook 03_label_masking. ``rows`` maps a row name to that row's labels,
    drawn top to bottom in the mapping's order (pass pretraining first, then SFT). Each
    cell shows the token's text and the label at that position: green where the label is
    trained, grey where it is -100. Positions where ``attention_mask`` is 0 (padding) are
    hatched. Positions in ``highlight`` get a red outline, explained in the legend by
    ``highlight_label``. Long records wrap every
    ``tokens_per_line`` tokens; small grey numbers above each line are token positions.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from helpers import load_tokenizer
    >>> tok = load_tokenizer()
    >>> ids = tok("Hello, world!")["input_ids"] + [tok.eos_token_id]
    >>> fig = plot_label_grid(tok, ids, {"pretrain": ids, "SFT": [-100] * 3 + ids[3:]}, title="labels")
    >>> len(ids), len(fig.axes) >= 1
    (5, True)
    >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    ids = _as_list(input_ids)
    label_rows = {name: _as_list(labels) for name, labels in rows.items()}
    for name, labels in label_rows.items():
        if len(labels) != len(ids):
            raise ValueError(f"row {name!r} has {len(labels)} labels for {len(ids)} tokens")
    mask = _as_list(attention_mask) if attention_mask is not None else [1] * len(ids)
    families, drawable = _font_setup()
    texts = [token_display_text(tokenizer.decode([i]), drawable) for i in ids]
    marked = set(highlight)

    n_rows = len(label_rows)
    n_lines = -(-len(ids) // tokens_per_line)
    columns = min(len(ids), tokens_per_line)
    line_height = n_rows + 0.6  # label rows plus a gap holding the position numbers
    fig_width = 1.9 + 0.78 * columns
    fig_height = 0.9 + 0.62 * line_height * n_lines
    fig, ax = plt.subplots(figsize=(fig_width, fig_height))

    for line in range(n_lines):
        top = line * line_height
        first = line * tokens_per_line
        for column, position in enumerate(range(first, min(first + tokens_per_line, len(ids)))):
            ax.text(column + 0.5, top + 0.25, str(position), ha="center", va="center",
                    fontsize=6.5, color="#777777", fontfamily=families)
            for r, (name, labels) in enumerate(label_rows.items()):
                y = top + 0.5 + r
                label = labels[position]
                padding = mask[position] == 0
                ax.add_patch(Rectangle(
                    (column + 0.04, y + 0.04), 0.92, 0.92,
                    facecolor=IGNORED_COLOR if label == IGNORE_INDEX else TRAINED_COLOR,
                    edgecolor=HIGHLIGHT_COLOR if position in marked else "white",
                    linewidth=2.2 if position in marked else 0.8,
                    hatch=PAD_HATCH if padding else None,
                ))
                text = texts[position]
                size = 9.5 if len(text) <= 5 else max(5.5, 9.5 * 5 / len(text))
                ax.text(column + 0.5, y + 0.36, text, ha="center", va="center", fontsize=size,
                        fontfamily=families)
                ax.text(column + 0.5, y + 0.74, str(label), ha="center", va="center", fontsize=6.5,
                        fontfamily=families, color="#333333" if label != IGNORE_INDEX else "#8a1c1c")
        for r, name in enumerate(label_rows):
            ax.text(-0.15, top + 1.0 + r, name, ha="right", va="center", fontsize=9, fontfamily=families)

    ax.set_xlim(-2.3, columns + 0.05)
    ax.set_ylim(n_lines * line_height, 0)
    ax.set_axis_off()
    legend = [
        Patch(facecolor=TRAINED_COLOR, label="trained: label = token id"),
        Patch(facecolor=IGNORED_COLOR, label="ignored: label = -100"),
    ]
    if 0 in mask:
        legend.append(Patch(facecolor="white", edgecolor="#555555", hatch=PAD_HATCH,
                            label="padding (attention_mask = 0)"))
    if marked:
        legend.append(Patch(facecolor="white", edgecolor=HIGHLIGHT_COLOR, linewidth=2, label=highlight_label))
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(legend),
              frameon=False, prop={"family": families, "size": 8})
    if title:
        ax.set_title(title, fontsize=10, fontfamily=families, loc="left")
    fig.tight_layout()
    return fig


def plot_stream_blocks(tokenizer, stream: Sequence[int], block_size: int, separator_id: int, *, title: str | None = None):
    """Draw pretraining's stream cut into blocks, one block per line; returns the Figure.

    Introduced in notebook 07_packing. Cells are muted, shaded by document (two alternating
    shades), with the separator (eos) cells dark. What the eye should find is red: the
    positions whose token an eos is asked to predict, i.e. the first token of the next
    document when that eos is not the last token of its block (a target that crosses
    documents). A token right after an eos that starts a new block is never a target; it gets
    a dashed red outline. Legend entries appear only for what is drawn.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from helpers import load_tokenizer
    >>> tok = load_tokenizer()
    >>> eos = tok.eos_token_id
    >>> stream = tok("one two")["input_ids"] + [eos] + tok("three four five")["input_ids"] + [eos]
    >>> len(stream)
    7
    >>> fig = plot_stream_blocks(tok, stream, block_size=6, separator_id=eos)
    >>> len(fig.axes) >= 1
    True
    >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    ids = _as_list(stream)
    if block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    families, drawable = _font_setup()
    document, documents = 0, []
    for token in ids:
        documents.append(document)
        document += token == separator_id
    after_separator = [p + 1 for p, token in enumerate(ids[:-1]) if token == separator_id]
    crossing = {p for p in after_separator if p % block_size}
    block_start = {p for p in after_separator if p % block_size == 0}
    shades = ("#dfe7f2", "#f2eadb")  # pale blue, pale sand: one per document, alternating
    n_blocks = -(-len(ids) // block_size)
    fig, ax = plt.subplots(figsize=(1.2 + 0.62 * block_size, 0.8 + 0.42 * n_blocks))
    for position, token in enumerate(ids):
        block, column = divmod(position, block_size)
        is_separator = token == separator_id
        face = "#4d4d4d" if is_separator else HIGHLIGHT_COLOR if position in crossing else shades[documents[position] % 2]
        ax.add_patch(Rectangle((column + 0.04, block + 0.06), 0.92, 0.88, facecolor=face,
                               edgecolor=HIGHLIGHT_COLOR if position in block_start else "white",
                               linestyle="--" if position in block_start else "-",
                               linewidth=1.8 if position in block_start else 0.6))
        text = "eos" if is_separator else token_display_text(tokenizer.decode([token]), drawable)
        size = 8 if len(text) <= 4 else max(5, 8 * 4 / len(text))
        ax.text(column + 0.5, block + 0.5, text, ha="center", va="center", fontsize=size, fontfamily=families,
                color="white" if is_separator or position in crossing else "#555555")
    ax.set_xlim(0, block_size)
    ax.set_ylim(n_blocks, 0)
    ax.set_xticks([c + 0.5 for c in range(block_size)], [str(c) for c in range(block_size)], fontsize=7)
    ax.set_yticks([b + 0.5 for b in range(n_blocks)], [str(b) for b in range(n_blocks)], fontsize=7)
    ax.set_xlabel("position in the block", fontsize=8)
    ax.set_ylabel("block", fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    legend = [Patch(facecolor=shades[0], label="a document's tokens (shade changes with the document)"),
              Patch(facecolor="#4d4d4d", label="eos (separator)")]
    if crossing:
        legend.append(Patch(facecolor=HIGHLIGHT_COLOR, label="target of the eos before it: the next document's first token"))
    if block_start:
        legend.append(Patch(facecolor="white", edgecolor=HIGHLIGHT_COLOR, linestyle="--", linewidth=1.5,
                            label="after an eos, but first in its block: no target"))
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.06 - 0.5 / n_blocks), ncol=2,
              frameon=False, prop={"family": families, "size": 8})
    if title:
        ax.set_title(title, fontsize=10, fontfamily=families, loc="left")
    fig.tight_layout()
    return fig


#: Colours of the memory parts drawn by :func:`plot_memory_stacks`: one colour per part.
MEMORY_PART_COLORS = {
    "frozen weights": "#b0b0b0",  # grey: kept, never updated
    "weights": "#4c72b0",  # blue
    "master weights": "#8172b3",  # purple: mixed precision's fp32 copy
    "adapter weights": "#c0392b",  # red: LoRA's A and B
    "gradients": "#dd8452",  # orange
    "optimizer states": "#55a868",  # green
}


def plot_memory_stacks(bars: Mapping[str, Mapping[str, int]], *, title: str | None = None, unit: float = 1e9):
    """Stacked bars of training memory, one bar per setting; returns the Figure.

    Introduced in notebook 06_lora_vs_full. ``bars`` maps a bar's label to its parts (a part
    name of :data:`MEMORY_PART_COLORS` -> bytes), stacked bottom to top in the mapping's order.
    Each bar is labelled with its total in GB (``unit`` bytes). A bar whose parts above
    ``frozen weights`` are under 10 % of its height (a LoRA adapter, its gradients and its
    optimizer states) gets an arrow and a label giving their size, so that they can be seen.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> bars = {"full": {"weights": 2_000_000_000, "gradients": 2_000_000_000, "optimizer states": 4_000_000_000},
    ...         "LoRA": {"frozen weights": 2_000_000_000, "adapter weights": 10_000_000}}
    >>> fig = plot_memory_stacks(bars, title="memory")
    >>> len(fig.axes), [t.get_text() for t in fig.axes[0].get_xticklabels()]
    (1, ['full', 'LoRA'])
    >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(9, 4.6))
    drawn = []
    tallest = max(sum(parts.values()) for parts in bars.values()) / unit
    for x, (label, parts) in enumerate(bars.items()):
        bottom = 0.0
        for part, size in parts.items():
            if part not in MEMORY_PART_COLORS:
                raise ValueError(f"unknown memory part {part!r}; known: {sorted(MEMORY_PART_COLORS)}")
            ax.bar(x, size / unit, bottom=bottom, width=0.6, color=MEMORY_PART_COLORS[part], edgecolor="white",
                   linewidth=0.5)
            bottom += size / unit
            if part not in drawn:
                drawn.append(part)
        ax.text(x, bottom + 0.015 * tallest, f"{bottom:.2f} GB", ha="center", va="bottom", fontsize=9)
        trained = sum(size for part, size in parts.items() if part != "frozen weights") / unit
        if "frozen weights" in parts and trained < 0.1 * bottom:
            ax.annotate(f"adapter + its gradients\n+ AdamW states: {trained * 1000:.0f} MB", xy=(x + 0.3, bottom),
                        xytext=(x + 0.05, bottom + 0.2 * tallest), fontsize=8, ha="center",
                        color=MEMORY_PART_COLORS["adapter weights"],
                        arrowprops={"arrowstyle": "->", "color": MEMORY_PART_COLORS["adapter weights"]})
    ax.set_xticks(range(len(bars)), list(bars), fontsize=9)
    ax.set_ylabel(f"GB ({unit:.0e} bytes)".replace("1e+09", "10⁹"))
    ax.set_ylim(0, 1.3 * tallest)
    ax.legend(handles=[Patch(facecolor=MEMORY_PART_COLORS[part], label=part) for part in drawn], loc="upper right",
              fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def plot_label_rows(
    rows: Mapping[str, tuple],
    *,
    highlight_id: int | None = None,
    highlight_label: str = "highlighted",
    title: str | None = None,
):
    """Draw token windows one above the other, each row with its own tokens and labels; returns the Figure.

    Introduced in notebook 02_pad_eos_pitfalls. Where :func:`plot_label_grid` draws several
    labellings of *one* token sequence, here every row has its own ``input_ids`` (the variants
    of 02 pad with different tokens). ``rows`` maps a row name to ``(tokenizer, input_ids,
    labels, attention_mask)``, all of the same length, drawn top to bottom. Each cell shows the
    token's text and its label: green where trained, grey where -100, hatched where
    ``attention_mask`` is 0 (dark green hatching on green, dark grey on grey, so trained and
    ignored padding stay apart). Real (not padding) positions holding ``highlight_id`` get a red
    outline, explained in the legend by ``highlight_label``: with pad == eos, only the eos that
    ends the text is outlined, not the padding that is the same token. The row names are the
    y-axis labels (e.g. ``"A: pad = eos, masked by id"``), so the left margin fits them.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from helpers import load_tokenizer
    >>> tok = load_tokenizer()
    >>> ids = tok("Hi")["input_ids"] + [tok.eos_token_id] * 2
    >>> rows = {"A": (tok, ids, ids[:-1] + [-100], [1] * (len(ids) - 1) + [0]),
    ...         "B": (tok, ids, [-100] + ids[1:], [1] * len(ids))}
    >>> fig = plot_label_rows(rows, highlight_id=tok.eos_token_id, highlight_label="eos")
    >>> len(fig.axes) >= 1
    True
    >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    families, drawable = _font_setup()
    prepared = []
    for name, (tokenizer, input_ids, labels, attention_mask) in rows.items():
        ids, labs, mask = _as_list(input_ids), _as_list(labels), _as_list(attention_mask)
        if not len(ids) == len(labs) == len(mask):
            raise ValueError(f"row {name!r}: {len(ids)} ids, {len(labs)} labels, {len(mask)} mask values")
        texts = [token_display_text(tokenizer.decode([i]), drawable) for i in ids]
        prepared.append((name, ids, labs, mask, texts))
    columns = max(len(ids) for _, ids, _, _, _ in prepared)
    fig, ax = plt.subplots(figsize=(0.6 + 0.07 * max(len(name) for name, *_ in prepared) + 1.2 * columns,
                                    1.0 + 0.62 * len(prepared)))
    any_padding = any_marked = False
    for r, (name, ids, labs, mask, texts) in enumerate(prepared):
        for column, (token_id, label, attended, text) in enumerate(zip(ids, labs, mask, texts)):
            marked = highlight_id is not None and token_id == highlight_id and attended != 0
            any_padding |= attended == 0
            any_marked |= marked
            ax.add_patch(Rectangle(
                (column + 0.04, r + 0.04), 0.92, 0.92,
                facecolor=IGNORED_COLOR if label == IGNORE_INDEX else TRAINED_COLOR,
                edgecolor=HIGHLIGHT_COLOR if marked else "white",
                linewidth=2.2 if marked else 0.8,
                hatch=PAD_HATCH if attended == 0 else None,
                hatchcolor=IGNORED_HATCH_COLOR if label == IGNORE_INDEX else TRAINED_HATCH_COLOR,
            ))
            size = 9.5 if len(text) <= 9 else max(6.5, 9.5 * 9 / len(text))
            ax.text(column + 0.5, r + 0.36, text, ha="center", va="center", fontsize=size, fontfamily=families)
            ax.text(column + 0.5, r + 0.74, str(label), ha="center", va="center", fontsize=6.5,
                    fontfamily=families, color="#333333" if label != IGNORE_INDEX else "#8a1c1c")
    ax.set_xlim(0, columns + 0.05)
    ax.set_ylim(len(prepared), 0)
    ax.set_yticks([r + 0.5 for r in range(len(prepared))], [name for name, *_ in prepared],
                  fontsize=9, fontfamily=families)
    ax.tick_params(left=False, bottom=False, labelbottom=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    legend = [
        Patch(facecolor=TRAINED_COLOR, label="trained: label = token id"),
        Patch(facecolor=IGNORED_COLOR, label="ignored: label = -100"),
    ]
    if any_padding:
        legend.append(Patch(facecolor="white", edgecolor="#555555", hatch=PAD_HATCH,
                            label="padding (attention_mask = 0)"))
    if any_marked:
        legend.append(Patch(facecolor="white", edgecolor=HIGHLIGHT_COLOR, linewidth=2, label=highlight_label))
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
              frameon=False, prop={"family": families, "size": 8})
    if title:
        ax.set_title(title, fontsize=10, fontfamily=families, loc="left")
    fig.tight_layout()
    return fig
