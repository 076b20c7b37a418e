"""Every project file the notebooks and the documentation cite exists.

A citation is a backticked path that starts with one of the project's folders
(``benchmarks/``, ``scripts/``, ``helpers/``, ``data/``, ``notebooks/``, ``docs/``, ``tests/``,
possibly after ``../``), or the target of a Markdown link that is not a URL or an anchor
(``[notebook 03](../03_label_masking.ipynb)``, ``appendix/x.ipynb``). It must name a file or
folder relative to the project root or to the citing file; a path with ``*``, ``?`` or ``[...]``
must match at least one. Cited by: the numbered notebooks and ``notebooks/appendix/`` (every
cell's source, not its outputs), ``README*.md``, ``docs/*.md`` and every ``benchmarks/**/README.md``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("benchmarks", "scripts", "helpers", "data", "notebooks", "docs", "tests")
# A path starts a backticked span or follows a space, quote or bracket (so the `data/...` inside
# `transformers/data/data_collator.py` is not taken for the project's data/ folder).
PATH = re.compile(r"(?<![\w./-])((?:\.\./)*(?:" + "|".join(FOLDERS) + r")/[\w.*?\[\]{}/-]*)")
BACKTICKED = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")

#: Cited paths that are not in the repository on purpose, and why (each reason is checked).
NOT_IN_THE_REPOSITORY = {
    # written by scripts/gpu_check.sh when it runs without $OUT (benchmarks/gpu/README.md)
    "benchmarks/gpu/run/": lambda: "benchmarks/gpu/run" in (ROOT / "scripts" / "gpu_check.sh").read_text(),
    # transformers' own source file (transformers/data/data_collator.py), cited by notebook 02
    "data/data_collator.py": lambda: (Path(__import__("transformers").__file__).parent / "data" / "data_collator.py").is_file(),
}


def citing_files(root: Path = ROOT) -> list[Path]:
    notebooks = sorted(root.glob("notebooks/[0-9]*.ipynb")) + sorted(root.glob("notebooks/appendix/*.ipynb"))
    documents = sorted(root.glob("README*.md")) + sorted(root.glob("docs/*.md")) + sorted(root.glob("benchmarks/**/README.md"))
    return notebooks + documents


def texts(path: Path):
    """``(where, text)`` for each cell of a notebook, or the whole of a Markdown file."""
    if path.suffix == ".ipynb":
        for index, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            yield f"cell {index}", "".join(cell["source"])
    else:
        yield "text", path.read_text(encoding="utf-8")


def citations(path: Path) -> list[tuple[str, str]]:
    """``(where, cited path)`` for every citation in ``path``."""
    found = []
    for where, text in texts(path):
        for span in BACKTICKED.findall(text):
            found += [(where, cited) for cited in PATH.findall(span)]
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):  # a URL (http:, mailto:...) or an anchor
                continue
            found.append((where, target.split("#", 1)[0]))
    return found


def resolves(cited: str, citing: Path, root: Path = ROOT) -> bool:
    cited = cited.rstrip(".,;:")
    for base in (root, citing.parent):
        if any(char in cited for char in "*?["):
            if any(base.glob(cited.rstrip("/"))):
                return True
        elif (base / cited).exists():
            return True
    return False


def missing_citations(root: Path = ROOT) -> list[str]:
    return [
        f"{path.relative_to(root).as_posix()} {where}: {cited}"
        for path in citing_files(root)
        for where, cited in citations(path)
        if cited not in NOT_IN_THE_REPOSITORY and not resolves(cited, path, root)
    ]


def test_every_cited_project_file_exists():
    assert missing_citations() == []


def test_the_citations_are_found():
    """The search finds what it should (a broken pattern would find nothing and pass)."""
    found = {cited for path in citing_files() for _, cited in citations(path)}
    assert {"scripts/train_qwen05b_shape.py", "benchmarks/gpu/matrix-h200.log", "helpers/checkpoints.py"} <= found
    assert any(c.startswith("appendix/") for c in found) and any(c.startswith("../") for c in found)
    assert len(citing_files()) >= 10


@pytest.mark.parametrize("cited", sorted(NOT_IN_THE_REPOSITORY))
def test_each_path_left_out_of_the_repository_has_its_reason(cited):
    assert NOT_IN_THE_REPOSITORY[cited]()
    assert not (ROOT / cited).exists() or cited.endswith("/")  # not needed once it exists


def test_a_missing_file_is_caught(tmp_path):
    """What the check catches, on a copy: notebook 04 once cited benchmarks/gpu/matrix-h200-call1.log
    after that log had been merged into matrix-h200.log (issue 22)."""
    (tmp_path / "notebooks" / "appendix").mkdir(parents=True)
    (tmp_path / "benchmarks" / "gpu").mkdir(parents=True)
    (tmp_path / "benchmarks" / "gpu" / "matrix-h200.log").write_text("")
    (tmp_path / "notebooks" / "appendix" / "01_x.ipynb").write_text(json.dumps({"cells": []}))
    cells = [
        {"cell_type": "markdown", "source": ["Rows in `benchmarks/gpu/matrix-h200.log` and in\n",
                                             "`benchmarks/gpu/matrix-h200-call1.log`; see [the appendix](appendix/01_x.ipynb)\n",
                                             "and [a missing one](appendix/02_y.ipynb#part), [docs](https://example.org/a/b)."]},
        {"cell_type": "code", "source": ["# `transformers/data/data_collator.py` is not the project's data/ folder\n"]},
    ]
    (tmp_path / "notebooks" / "04_x.ipynb").write_text(json.dumps({"cells": cells}))
    assert missing_citations(tmp_path) == [
        "notebooks/04_x.ipynb cell 0: benchmarks/gpu/matrix-h200-call1.log",
        "notebooks/04_x.ipynb cell 0: appendix/02_y.ipynb",
    ]
