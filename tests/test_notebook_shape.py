"""The shape of the series a learner reads (docs: ../shared NOTEBOOK_SHAPE, issue 21): a short
core per numbered notebook, exercises with solutions that run, depth in appendices linked back,
the post named and never called "the seed", test markup invisible, and stored outputs that come
from a clean top-to-bottom run."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NUMBERED = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
APPENDIX = sorted((NOTEBOOKS / "appendix").glob("*.ipynb"))
ALL = NUMBERED + APPENDIX
CORE_WORD_BUDGET = 1500
POST_TITLE = "大模型预训练代码实战"


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def markdown(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "markdown")


def test_there_are_seven_numbered_notebooks():
    assert [p.name[:2] for p in NUMBERED] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_core_fits_the_word_budget(path):
    words = len(markdown(path).split())
    assert words <= CORE_WORD_BUDGET, f"{path.name}: {words} words of markdown, budget {CORE_WORD_BUDGET}"


@pytest.mark.parametrize("path", NUMBERED, ids=lambda p: p.name)
def test_core_has_a_roadmap_a_summary_and_exercises_with_solutions(path):
    text = markdown(path)
    headings = [h.lower() for h in re.findall(r"^#+\s*(.+)$", text, re.M)]
    for part in ("roadmap", "summary", "exercises"):
        assert any(part in h for h in headings), f"{path.name}: no '{part}' heading"
    solutions = NOTEBOOKS / "appendix" / f"{path.name[:2]}_exercise_solutions.ipynb"
    assert solutions.exists(), f"{path.name}: no {solutions.relative_to(ROOT)}"
    assert f"appendix/{solutions.name}" in text, f"{path.name}: does not link its exercise solutions"


@pytest.mark.parametrize("path", APPENDIX, ids=lambda p: p.name)
def test_each_appendix_links_back_to_the_notebook_it_branches_from(path):
    parent = next(p for p in NUMBERED if p.name[:2] == path.name[:2])
    first = "".join(cells(path)[0]["source"])
    assert f"../{parent.name}" in first, f"{path.name}: its first cell does not link ../{parent.name}"
    assert f"appendix/{path.name}" in markdown(parent), f"{parent.name} does not link {path.name}"


def test_the_post_is_named_in_the_first_notebook():
    assert POST_TITLE in markdown(NUMBERED[0])


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_the_post_is_never_called_the_seed_and_markers_are_tags(path):
    for i, cell in enumerate(cells(path)):
        source = "".join(cell["source"])
        assert not re.search(r"\bthe seed\b|\bseed's\b|seed walkthrough", source, re.I), f"{path.name} cell {i}"
        if cell["cell_type"] == "code":
            assert "NBVAL_" not in source, f"{path.name} cell {i}: an nbval comment; use a cell tag"
            assert not re.search(r"""["']\.\./(outputs|benchmarks|data)\b""", source), \
                f"{path.name} cell {i}: a path relative to the working directory; use helpers.PROJECT_ROOT / outputs_dir()"
            # a printed docstring goes stale the moment a helper's documentation changes (it broke CI once)
            assert "getsource(" not in source, f"{path.name} cell {i}: prints helper source; show what it builds instead"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_stored_outputs_come_from_a_clean_run(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), path.name
    local = re.compile("|".join(re.escape(p) for p in (str(ROOT), "/tmp/", str(Path.home()) + "/")))
    for i, cell in enumerate(code):
        raises = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        for out in cell["outputs"]:
            assert out["output_type"] != "error" or raises, f"{path.name} code cell {i}: a stored error"
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            assert not local.search(text), f"{path.name} code cell {i}: a machine-local path in its output"
            if out.get("name") == "stderr":
                assert not re.search(r"Warning|Traceback", text), f"{path.name} code cell {i}: a warning in stderr"
