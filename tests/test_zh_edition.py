"""The Chinese edition (中文版, issue 24) is kept identical to the English notebooks by this test,
not by care: same cells, same code once comments are set aside, same outputs, the same code
spans, numbers and link targets in every markdown cell (scripts/zh_edition.py has the rules).
The checker itself is tried on mutants of a real pair, so a check that cannot fail shows here."""

import copy
import importlib.util
import re
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("zh_edition", ROOT / "scripts" / "zh_edition.py")
zh_edition = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zh_edition)

ENGLISH = zh_edition.english_notebooks()
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_english_notebook_has_a_chinese_counterpart_and_nothing_else_is_there():
    assert len(ENGLISH) == 25
    chinese = sorted(zh_edition.CHINESE.rglob("*.ipynb"))
    chinese = [p for p in chinese if ".ipynb_checkpoints" not in p.parts]
    assert chinese == sorted(zh_edition.counterpart(p) for p in ENGLISH)


@pytest.mark.parametrize("english", ENGLISH, ids=lambda p: str(p.relative_to(zh_edition.ENGLISH)))
def test_the_pair_agrees_in_everything_but_prose(english):
    assert zh_edition.problems(english) == []


@pytest.mark.parametrize("english", ENGLISH, ids=lambda p: str(p.relative_to(zh_edition.ENGLISH)))
def test_the_prose_and_comments_are_written_in_chinese(english):
    pairs = zip(zh_edition.read(english)["cells"], zh_edition.read(zh_edition.counterpart(english))["cells"])
    for i, (en, zh) in enumerate(pairs):
        en_text, zh_text = zh_edition.source(en), zh_edition.source(zh)
        if en["cell_type"] == "markdown":
            words = english_words(zh_edition.LINK.sub(r"(link)", zh_edition.CODE_SPAN.sub("", en_text)))
            assert len(CJK.findall(zh_text)) >= min(words, 10), f"{english.name} cell {i}: markdown left in English"
        if en["cell_type"] == "code":
            for comment in re.findall(r"#\s*(.+)", en_text):
                if english_words(comment) >= 3:
                    assert comment not in zh_text, f"{english.name} cell {i}: comment left in English: {comment}"


def english_words(text: str) -> int:
    """Words of prose: special tokens, identifiers and paths set aside."""
    text = re.sub(r"<\|[^|]*\|>|\S*[_./=()\[\]]\S*", " ", text)
    return len(re.findall(r"\b[A-Za-z]{3,}\b", text))


# --- the checker on mutants of notebook 05 (its English cells, re-pointed as a Chinese copy) -----------

BASE = zh_edition.ENGLISH / "05_inference.ipynb"


def chinese_copy() -> dict:
    notebook = zh_edition.read(BASE)
    for cell in notebook["cells"]:
        cell.setdefault("metadata", {})["translated_from"] = zh_edition.fingerprint(cell)
        if cell["cell_type"] == "markdown":
            cell["source"] = zh_edition.relink(zh_edition.source(cell), BASE.parent, zh_edition.CHINESE)
    return notebook


def problems_of(notebook: dict) -> list[str]:
    path = zh_edition.CHINESE / f"_mutant_{uuid.uuid4().hex}.ipynb"  # where its relative links resolve
    try:
        zh_edition.write(path, notebook)
        return zh_edition.problems(BASE, path)
    finally:
        path.unlink(missing_ok=True)


def first(notebook: dict, kind: str, where=lambda text: True) -> dict:
    return next(c for c in notebook["cells"] if c["cell_type"] == kind and where(zh_edition.source(c)))


def test_an_unchanged_copy_and_translated_comments_and_docstrings_pass():
    notebook = chinese_copy()
    assert problems_of(notebook) == []
    cell = first(notebook, "code", lambda s: "#" in s)
    cell["source"] = re.sub(r"#.*", "# 这是一条中文注释", zh_edition.source(cell))
    cell["source"] = "def helper():\n    \"\"\"中文文档字符串。\"\"\"\n    return 1\n\n" + cell["source"]
    english = zh_edition.read(BASE)
    en_cell = english["cells"][notebook["cells"].index(cell)]
    en_cell["source"] = "def helper():\n    \"\"\"An English docstring.\"\"\"\n    return 1\n\n" + zh_edition.source(en_cell)
    assert zh_edition.code_without_comments(zh_edition.source(en_cell)) == \
        zh_edition.code_without_comments(zh_edition.source(cell))


def mutant(change) -> list[str]:
    notebook = chinese_copy()
    change(notebook)
    return problems_of(notebook)


def test_an_english_sentence_changed_without_carrying_it_over_fails():
    english_cell = first(zh_edition.read(BASE), "markdown")
    reworded = dict(english_cell, source=zh_edition.source(english_cell).replace(" the ", " a ", 1))
    assert zh_edition.fingerprint(reworded) != zh_edition.fingerprint(english_cell)

    def stale(notebook):  # translated from an older English cell
        first(notebook, "markdown")["metadata"]["translated_from"] = zh_edition.fingerprint(reworded)
    assert any("changed since it was translated" in p for p in mutant(stale))


def test_a_changed_code_token_fails():
    def change(notebook):
        cell = first(notebook, "code", lambda s: "print(" in s)
        cell["source"] = zh_edition.source(cell) + "\nrecords = records[:1]"
    assert any("code differs" in p for p in mutant(change))


def test_a_translated_string_literal_fails():
    def change(notebook):
        cell = first(notebook, "code", lambda s: 'print(f"' in s)
        cell["source"] = zh_edition.source(cell).replace('print(f"', 'print(f"输出', 1)
    assert any("code differs" in p for p in mutant(change))


def test_a_changed_stored_output_fails():
    def change(notebook):
        cell = first(notebook, "code", lambda s: "print(" in s)
        cell["outputs"] = copy.deepcopy(cell["outputs"]) + [{"name": "stdout", "output_type": "stream", "text": ["3/5\n"]}]
    assert any("outputs differ" in p for p in mutant(change))


def test_a_dropped_code_span_a_changed_number_and_a_missing_cell_fail():
    def drop_span(notebook):
        cell = first(notebook, "markdown", lambda s: "`" in s)
        span = zh_edition.CODE_SPAN.search(zh_edition.source(cell)).group(0)
        cell["source"] = zh_edition.source(cell).replace(span, "它")
    assert any("code spans differ" in p for p in mutant(drop_span))

    def change_number(notebook):
        cell = first(notebook, "markdown", lambda s: bool(zh_edition.NUMBER.search(zh_edition.CODE_SPAN.sub("", s))))
        prose = zh_edition.CODE_SPAN.sub("", zh_edition.source(cell))
        number = zh_edition.NUMBER.search(prose).group(0)
        cell["source"] = zh_edition.source(cell).replace(number, number + "7")
    assert any("numbers differ" in p for p in mutant(change_number))

    assert any("cells, the English has" in p for p in mutant(lambda nb: nb["cells"].pop(3)))


def test_a_changed_tag_a_changed_link_and_a_broken_anchor_fail():
    def tag(notebook):
        first(notebook, "code").setdefault("metadata", {})["tags"] = ["raises-exception"]
    assert any("tags" in p for p in mutant(tag))

    def link(notebook):
        cell = first(notebook, "markdown")
        cell["source"] = zh_edition.source(cell) + "\n[另一个笔记本](06_lora_vs_full.ipynb)"
    assert any("links differ" in p for p in mutant(link))

    def anchor(notebook):
        cell = first(notebook, "markdown")
        cell["source"] = zh_edition.source(cell) + "\n[见下文](#没有这个标题)"
    assert any("not there" in p for p in mutant(anchor))

    def anchor_elsewhere(notebook):
        cell = first(notebook, "markdown")
        cell["source"] = zh_edition.source(cell) + "\n[见 06](06_lora_vs_full.ipynb#没有这个标题)"
    assert any("not there: 06_lora_vs_full.ipynb#" in p for p in mutant(anchor_elsewhere))


def test_sync_carries_outputs_over_and_keeps_the_translation(tmp_path, monkeypatch):
    monkeypatch.setattr(zh_edition, "CHINESE", tmp_path / "zh" / "notebooks")
    chinese = zh_edition.start(BASE)
    notebook = zh_edition.read(chinese)
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    commented = next(c for c in code if "#" in zh_edition.source(c))
    commented["source"] = re.sub(r"#.*", "# 中文注释", zh_edition.source(commented))
    code[0]["outputs"], code[0]["execution_count"] = [], None
    zh_edition.write(chinese, notebook)
    assert any("outputs differ" in p for p in zh_edition.problems(BASE, chinese))

    assert zh_edition.sync(BASE) == []
    synced = zh_edition.read(chinese)
    # only 05 was started in tmp_path, so its links to the appendix lead nowhere there
    assert [p for p in zh_edition.problems(BASE, chinese) if "links differ" not in p] == []
    assert "# 中文注释" in "".join(zh_edition.source(c) for c in synced["cells"])

    code = [c for c in synced["cells"] if c["cell_type"] == "code"]
    code[1]["source"] = zh_edition.source(code[1]) + "\nprint('new')"
    zh_edition.write(chinese, synced)
    assert any("carry it over by hand" in p for p in zh_edition.sync(BASE))


# --- the READMEs and the glossary ---------------------------------------------------------------------

README, README_ZH = zh_edition.README_PAIR
GLOSSARY = ROOT / "docs" / "glossary.md"


def relative_links(path: Path) -> list[str]:
    return [t for t in zh_edition.LINK.findall(zh_edition.CODE_SPAN.sub(" ", path.read_text(encoding="utf-8")))
            if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_the_readmes_link_each_other_and_the_glossary_at_the_top():
    for readme, other in ((README, "README.zh.md"), (README_ZH, "README.md")):
        top = "\n".join(readme.read_text(encoding="utf-8").splitlines()[:5])
        assert f"({other})" in top and "(docs/glossary.md)" in top, readme.name
    for readme in (README, README_ZH):
        for target in relative_links(readme):
            assert (readme.parent / target.partition("#")[0]).exists(), f"{readme.name}: {target}"
    for english in ENGLISH[:7]:
        assert str(zh_edition.counterpart(english).relative_to(ROOT)) in README_ZH.read_text(encoding="utf-8")


def glossary_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and ".ipynb" in cells[2]:
            english_nb, chinese_nb = re.findall(r"\(([^)]+\.ipynb)\)", cells[2])
            rows.append((cells[0].split(" / ")[0].strip(), cells[1].split(" / ")[0].strip(), english_nb, chinese_nb))
    return rows


def markdown_of(path: Path) -> str:
    """A notebook's prose as read: emphasis marks dropped, line breaks joined (a term may wrap)."""
    text = "\n".join(zh_edition.source(c) for c in zh_edition.read(path)["cells"] if c["cell_type"] == "markdown")
    return re.sub(r"\s+", " ", text.replace("**", "").replace("*", ""))


def test_the_glossary_names_each_term_where_it_is_introduced_in_both_editions():
    rows = glossary_rows()
    assert len(rows) >= 30
    numbered = ENGLISH[:7]
    wrong = []
    for english_term, chinese_term, english_link, chinese_link in rows:
        english_nb = (GLOSSARY.parent / english_link).resolve()
        chinese_nb = (GLOSSARY.parent / chinese_link).resolve()
        if english_nb not in numbered or chinese_nb != zh_edition.counterpart(english_nb):
            wrong.append(f"{english_term}: links {english_link} and {chinese_link}")
            continue
        term = re.compile(re.escape(english_term.strip("`")), re.I)
        first = next((p for p in numbered if term.search(markdown_of(p))), None)
        if first != english_nb:
            wrong.append(f"{english_term}: first used in {first and first.name}, the glossary says {english_nb.name}")
        if chinese_term not in markdown_of(chinese_nb):
            wrong.append(f"{chinese_term}: not in the Chinese {chinese_nb.name}")
    assert wrong == []
