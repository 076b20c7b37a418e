"""Notebook 02's shape (issue 21): a short core, depth in appendices that link back.

Words are counted as issue 21 says: the markdown cells' text split on whitespace. What every
notebook must satisfy (tags not comments, "the post", clean stored runs) is in test_notebook_shape.py.
"""

import json
import re
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CORE = NOTEBOOKS / "02_pad_eos_pitfalls.ipynb"
APPENDICES = sorted((NOTEBOOKS / "appendix").glob("02_*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def markdown(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "markdown")


def test_core_markdown_is_at_most_1500_words():
    assert len(markdown(CORE).split()) <= 1500


def test_core_has_the_learners_path():
    text = markdown(CORE)
    for heading in ("**The question:**", "## Roadmap", "## Where the post differs", "## Summary", "## Exercises",
                    "## Going deeper"):
        assert heading in text, heading
    assert len(re.findall(r"^\d\. (🐢|🐕|🦁)", text, flags=re.M)) in (2, 3)


def test_greedy_decoding_is_defined_where_first_used():
    text = markdown(CORE)
    first = text.index("greedy decoding")
    assert "most probable next token" in text[first:first + 120]


def test_appendices_link_back_and_are_linked_from_the_core():
    names = {path.name for path in APPENDICES}
    assert {"02_padding_idx_and_resizing.ipynb", "02_variants_up_close.ipynb", "02_exercise_solutions.ipynb"} <= names
    core = markdown(CORE)
    for path in APPENDICES:
        assert f"appendix/{path.name}" in core, path.name
        first = "".join(cells(path)[0]["source"])
        assert "Branches off [02 Pad and eos pitfalls](../02_pad_eos_pitfalls.ipynb)" in first, path.name


def test_review_wording_stays_true():
    """The 21/22 review of notebook 02: claims that were too broad stay narrowed."""
    core = markdown(CORE)
    assert "Every plain-format training text" in core  # 06's ChatML targets end with <|im_end|> instead
    assert "reconstruction of the post's anecdote" in core and "this series' assumption" in core
    assert "checked in the [appendix" not in core and "guaranteed by construction" in core
    assert "Notebooks 04, 05 and 07" not in core
    assert 'Variant(name="F", pad_token="[PAD]", mask_pad=False,' in core  # keyword arguments
    padding_idx = markdown(NOTEBOOKS / "appendix" / "02_padding_idx_and_resizing.ipynb")
    assert "copies every special-token id" not in padding_idx and "eos, bos and pad" in padding_idx
    assert "learn only as a prediction target" not in padding_idx
    variants = markdown(NOTEBOOKS / "appendix" / "02_variants_up_close.ipynb")
    assert "no training shaped" not in variants and "usually truncated" not in variants
