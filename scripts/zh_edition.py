"""Keep the Chinese edition (中文版) identical to the English notebooks in everything but prose.

Each notebook under ``notebooks/`` has a counterpart at the same place under ``zh/notebooks/``.
A pair must have the same cells in the same order, with the same tags; code cells must hold the
same code once comments and docstrings are set aside (they are translated), and the same stored
outputs; a markdown cell and its counterpart must hold the same inline code spans, the same
numbers and links to the same files. Each Chinese cell also carries the fingerprint of the English
cell it was translated from (``translated_from`` in its metadata), so an English sentence changed
without carrying it over fails too. ``tests/test_zh_edition.py`` runs ``problems`` on every pair.

    python scripts/zh_edition.py check            # list what differs; exit 1 if anything does
    python scripts/zh_edition.py sync             # copy outputs from the English notebooks
    python scripts/zh_edition.py start notebooks/05_inference.ipynb   # a copy to translate
    python scripts/zh_edition.py stamp zh/notebooks/05_inference.ipynb  # "I carried the English over"

``sync`` is what a maintainer runs after re-executing English notebooks: where a pair's code
still agrees, the Chinese cells take the English outputs, execution counts and tags. Where
the code itself changed, it says which cell to carry over by hand (it never overwrites prose
or comments).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGLISH = ROOT / "notebooks"
CHINESE = ROOT / "zh" / "notebooks"
README_PAIR = (ROOT / "README.md", ROOT / "README.zh.md")

CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# digits with their decimal point, thousands separators and ratios: 1,500 · 0.5 · 5/5 · 2.5
NUMBER = re.compile(r"\d+(?:[.,/:]\d+)*")
LINK = re.compile(r"!?\[[^\]]*\]\(((?:[^()\s]|\([^()\s]*\))+)(?:\s+\"[^\"]*\")?\)")


def shown(path: Path) -> str:
    """A path as a maintainer reads it: from the project root when it lies inside."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def english_notebooks() -> list[Path]:
    return sorted(ENGLISH.glob("[0-9][0-9]_*.ipynb")) + sorted((ENGLISH / "appendix").glob("*.ipynb"))


def counterpart(english: Path) -> Path:
    return CHINESE / english.relative_to(ENGLISH)


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a notebook ({error})") from None


def write(path: Path, notebook: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def source(cell: dict) -> str:
    return "".join(cell["source"])


def fingerprint(cell: dict) -> str:
    """A short hash of an English cell's source: what its Chinese cell was translated from."""
    return hashlib.sha1(source(cell).encode("utf-8")).hexdigest()[:12]


def stamp(chinese_path: Path) -> int:
    """Record that every cell of a Chinese notebook now carries its English cell over; returns how
    many fingerprints changed. Run it after carrying a change over, never instead of it."""
    english_path = ENGLISH / chinese_path.resolve().relative_to(CHINESE)
    english, chinese = read(english_path), read(chinese_path)
    if [c["cell_type"] for c in english["cells"]] != [c["cell_type"] for c in chinese["cells"]]:
        raise ValueError(f"{shown(chinese_path)}: its cells do not line up with {shown(english_path)}")
    changed = 0
    for en, zh in zip(english["cells"], chinese["cells"]):
        metadata = zh.setdefault("metadata", {})
        changed += metadata.get("translated_from") != fingerprint(en)
        metadata["translated_from"] = fingerprint(en)
    write(chinese_path, chinese)
    return changed


def code_without_comments(code: str) -> list[tuple[int, str]]:
    """The cell's tokens with comments, blank lines and docstrings left out (IPython magics allowed)."""
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(code)
    docstrings = set()
    for node in ast.walk(ast.parse(python)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add((first.lineno, first.col_offset))
    kept = []
    for token in tokenize.generate_tokens(io.StringIO(python).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL) or token.start in docstrings:
            continue
        kept.append((token.type, token.string))
    # a docstring's statement leaves its NEWLINE behind; drop runs of NEWLINE so both sides agree
    return [t for i, t in enumerate(kept) if not (t[0] == tokenize.NEWLINE and i and kept[i - 1][0] == tokenize.NEWLINE)]


def markdown_facts(text: str) -> tuple[list[str], list[str]]:
    """The inline code spans and the numbers outside them, each sorted."""
    spans = [match.group(2).strip() for match in CODE_SPAN.finditer(text)]
    prose = CODE_SPAN.sub(" ", text)
    prose = LINK.sub(lambda m: m.group(0).split("](")[0], prose)  # numbers in a link's path are not prose
    return sorted(spans), sorted(NUMBER.findall(prose))


def link_targets(text: str, folder: Path) -> list[str]:
    """Where each relative link of a markdown text leads, as a path in the English tree."""
    targets = []
    for target in LINK.findall(CODE_SPAN.sub(" ", text)):
        if re.match(r"[a-z]+:", target):
            targets.append(target)
            continue
        if target.startswith("#"):  # the headings are translated: anchors_missing checks these
            targets.append("#")
            continue
        path, _, anchor = target.partition("#")
        resolved = (folder / path).resolve()
        if not resolved.exists():
            targets.append(f"missing:{target}")
            continue
        if resolved.is_relative_to(CHINESE):
            resolved = ENGLISH / resolved.relative_to(CHINESE)
        elif resolved == README_PAIR[1]:
            resolved = README_PAIR[0]
        targets.append(str(resolved.relative_to(ROOT)) + (f"#{anchor}" if anchor and not resolved.suffix == ".ipynb" else ""))
    return sorted(targets)


def heading_ids(notebook: dict) -> set[str]:
    """The ids a link can jump to: each heading (JupyterLab's id: spaces become -) and each <a id>."""
    markdown = [source(c) for c in notebook["cells"] if c["cell_type"] == "markdown"]
    ids = {line.lstrip("#").strip().replace(" ", "-") for text in markdown
           for line in text.splitlines() if re.match(r"#{1,6} ", line)}
    return ids | {anchor for text in markdown for anchor in re.findall(r"<a (?:id|name)=\"([^\"]+)\"", text)}


def anchors_missing(notebook: dict, folder: Path) -> list[str]:
    """Links to a heading, in this notebook or another one, that is not there (headings are translated)."""
    missing = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for target in LINK.findall(CODE_SPAN.sub(" ", source(cell))):
            path, hash_, anchor = target.partition("#")
            if not hash_ or re.match(r"[a-z]+:", path):
                continue
            if not path:
                ids = heading_ids(notebook)
            elif path.endswith(".ipynb") and (folder / path).exists():
                ids = heading_ids(read(folder / path))
            else:
                continue
            if anchor not in ids:
                missing.append(target)
    return missing


def problems(english_path: Path, chinese_path: Path | None = None) -> list[str]:
    """Every way the Chinese notebook differs from the English one beyond prose and comments."""
    chinese_path = chinese_path or counterpart(english_path)
    name = shown(chinese_path)
    if not chinese_path.exists():
        return [f"{name}: missing (python scripts/zh_edition.py start {shown(english_path)})"]
    english, chinese = read(english_path), read(chinese_path)
    found = [f"{name}: a link to a heading that is not there: {target}"
             for target in anchors_missing(chinese, chinese_path.parent)]
    found += [f"{shown(english_path)}: a link to a heading that is not there: {target}"
              for target in anchors_missing(english, english_path.parent)]
    if len(english["cells"]) != len(chinese["cells"]):
        found.append(f"{name}: {len(chinese['cells'])} cells, the English has {len(english['cells'])}")
    for i, (en, zh) in enumerate(zip(english["cells"], chinese["cells"])):
        where = f"{name} cell {i}"
        if en["cell_type"] != zh["cell_type"]:
            found.append(f"{where}: a {zh['cell_type']} cell where the English has a {en['cell_type']} cell")
            continue
        if zh.get("metadata", {}).get("translated_from") != fingerprint(en):
            found.append(f"{where}: the English cell changed since it was translated; carry the change over, "
                         f"then python scripts/zh_edition.py stamp {shown(chinese_path)}")
        if en.get("metadata", {}).get("tags", []) != zh.get("metadata", {}).get("tags", []):
            found.append(f"{where}: tags {zh.get('metadata', {}).get('tags', [])}, English {en.get('metadata', {}).get('tags', [])}")
        if en["cell_type"] == "code":
            try:
                same_code = code_without_comments(source(en)) == code_without_comments(source(zh))
            except (SyntaxError, tokenize.TokenError) as error:
                found.append(f"{where}: does not parse ({error})")
                continue
            if not same_code:
                found.append(f"{where}: the code differs from the English beyond comments and docstrings")
            if en["outputs"] != zh["outputs"] or en["execution_count"] != zh["execution_count"]:
                found.append(f"{where}: stored outputs differ from the English (python scripts/zh_edition.py sync)")
        elif en["cell_type"] == "markdown":
            (en_spans, en_numbers), (zh_spans, zh_numbers) = markdown_facts(source(en)), markdown_facts(source(zh))
            for kind, en_items, zh_items in (("code spans", en_spans, zh_spans), ("numbers", en_numbers, zh_numbers)):
                only_en = sorted(set(en_items) - set(zh_items))
                only_zh = sorted(set(zh_items) - set(en_items))
                if only_en or only_zh:
                    found.append(f"{where}: {kind} differ: only in English {only_en}, only in Chinese {only_zh}")
            en_links = link_targets(source(en), english_path.parent)
            zh_links = link_targets(source(zh), chinese_path.parent)
            if sorted(set(en_links)) != sorted(set(zh_links)):
                found.append(f"{where}: links differ: English {en_links}, Chinese {zh_links}")
    return found


def sync(english_path: Path) -> list[str]:
    """Copy outputs, execution counts and tags into the Chinese notebook where the code agrees."""
    chinese_path = counterpart(english_path)
    if not chinese_path.exists():
        return [f"{shown(chinese_path)}: missing; start it first"]
    english, chinese = read(english_path), read(chinese_path)
    if [c["cell_type"] for c in english["cells"]] != [c["cell_type"] for c in chinese["cells"]]:
        return [f"{shown(chinese_path)}: the cells no longer line up with the English; carry the change over by hand"]
    left = []
    for i, (en, zh) in enumerate(zip(english["cells"], chinese["cells"])):
        zh.setdefault("metadata", {})
        if "tags" in en.get("metadata", {}):
            zh["metadata"]["tags"] = en["metadata"]["tags"]
        else:
            zh["metadata"].pop("tags", None)
        if en["cell_type"] != "code":
            continue
        if code_without_comments(source(en)) != code_without_comments(source(zh)):
            left.append(f"{shown(chinese_path)} cell {i}: the English code changed; carry it over by hand")
            continue
        zh["outputs"], zh["execution_count"] = en["outputs"], en["execution_count"]
    chinese["metadata"] = english["metadata"]
    write(chinese_path, chinese)
    return left


def start(english_path: Path) -> Path:
    """A copy of an English notebook at its Chinese place, to be translated cell by cell."""
    chinese_path = counterpart(english_path)
    if chinese_path.exists():
        raise FileExistsError(f"{shown(chinese_path)} exists; edit it instead")
    notebook = read(english_path)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = relink(source(cell), english_path.parent, chinese_path.parent)
    write(chinese_path, notebook)
    stamp(chinese_path)
    return chinese_path


def relink(text: str, english_folder: Path, chinese_folder: Path) -> str:
    """Links rewritten for the Chinese folder: notebooks to their Chinese counterparts, the README
    to README.zh.md, any other file by its path from one folder deeper."""

    def moved(match: re.Match) -> str:
        target = match.group(1)
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        resolved = (english_folder / path).resolve()
        if resolved.is_relative_to(ENGLISH):
            resolved = CHINESE / resolved.relative_to(ENGLISH)
        elif resolved == README_PAIR[0]:
            resolved = README_PAIR[1]
        new = Path(os.path.relpath(resolved, chinese_folder)).as_posix() + hash_ + anchor
        return match.group(0).replace(f"({target}", f"({new}", 1)

    return LINK.sub(moved, text)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "start" and len(argv) == 2:
        print(shown(start((Path.cwd() / argv[1]).resolve())))
        return 0
    if command == "stamp" and len(argv) >= 2:
        for path in argv[1:]:
            print(f"{path}: {stamp((Path.cwd() / path).resolve())} cells now carry a new English fingerprint")
        return 0
    if command not in ("check", "sync"):
        print(__doc__)
        return 2
    found = []
    for english in english_notebooks():
        found += sync(english) if command == "sync" and counterpart(english).exists() else []
        found += problems(english)
    print("\n".join(found) or f"{len(english_notebooks())} pairs agree")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
