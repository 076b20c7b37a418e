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
