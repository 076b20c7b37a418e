"""The pieces a teacher copies (helpers/README.md, "Use it in your project") work copied alone.

Each test copies one module, with only the modules its first lines say it needs, into an empty
temporary directory and runs a Python process there whose import path holds that directory and
the installed libraries only: ``helpers`` itself is made unimportable, so nothing of this project
can be reached. The offline tokenizer (and, for generation, the tiny model) is saved there with
``save_pretrained`` and loaded with ``AutoTokenizer.from_pretrained``, as a copier would load
their own. The outputs must equal the package's on the post's records.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

import helpers
from helpers import (
    ChatSFTCollator, DataError, Fields, PackingCollator, PretrainCollator, QWEN_TRAINING_TEMPLATE, SFTCollator,
    generate, load_model, pack_into_blocks,
)

HELPERS = Path(helpers.__file__).resolve().parent

#: What each piece needs, as the first lines of its module say.
PIECES = {
    "collators": ["collators.py"],
    "packing": ["packing.py", "collators.py"],
    "generation": ["generation.py"],
}

#: Run first in every process: the project's package cannot be imported (the editable install
#: would otherwise find it whatever the import path).
PRELUDE = """
import json, sys
sys.modules["helpers"] = None  # import helpers -> ImportError
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("tokenizer")
records = json.load(open("records.json", encoding="utf-8"))
out = {}
"""
EPILOGUE = """
assert not [name for name in sys.modules if name.startswith("helpers.")]
print("RESULT " + json.dumps(out))
"""


def first_lines(name):
    return "\n".join((HELPERS / name).read_text(encoding="utf-8").splitlines()[:5])


@pytest.mark.parametrize("piece", PIECES)
def test_each_module_says_what_it_needs_in_its_first_lines(piece):
    head = first_lines(PIECES[piece][0])
    assert "Standalone" in head, head
    for needed in PIECES[piece][1:]:
        assert needed in head, head


@pytest.mark.parametrize("piece", PIECES)
def test_a_standalone_module_imports_nothing_of_the_project_but_what_it_says(piece):
    """Within the package a module may use a sibling only through ``try: from .x`` / ``except ImportError: from x``."""
    source = (HELPERS / PIECES[piece][0]).read_text(encoding="utf-8")
    relative = set(re.findall(r"^\s*from \.(\w+) import", source, re.M))
    absolute = set(re.findall(r"^\s*from (\w+) import", source, re.M)) - {"__future__", "dataclasses", "typing",
                                                                          "contextlib", "numbers", "transformers"}
    needed = {name[:-3] for name in PIECES[piece][1:]}
    assert relative == absolute == needed
    assert "_encode" not in source  # packing uses the collators' public encode()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tokenizer, records):
    """A directory holding what a copier has: the tokenizer, their records (the post's here)."""
    directory = tmp_path_factory.mktemp("copied")
    tokenizer.save_pretrained(directory / "tokenizer")
    (directory / "records.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return directory


def run_alone(directory, piece, script, extra_files=(), timeout=300):
    """Copy ``piece``'s files (and ``extra_files``, paths under helpers/) into a fresh folder of
    ``directory`` and run ``script`` there; returns the dict the script stored in ``out``."""
    folder = Path(tempfile.mkdtemp(prefix=f"{piece}-", dir=directory))  # an empty folder per run
    for name in [*PIECES[piece], *extra_files]:
        (folder / Path(name).name).write_text((HELPERS / name).read_text(encoding="utf-8"), encoding="utf-8")
    for shared in ("tokenizer", "records.json"):
        (folder / shared).symlink_to(directory / shared)
    for name in ("model",):
        if (directory / name).exists():
            (folder / name).symlink_to(directory / name)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(folder), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    code = f"from pathlib import Path\nPROJECT = Path({str(HELPERS.parent)!r})\n" + PRELUDE + textwrap.dedent(script) + EPILOGUE
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def as_lists(batch):
    return {key: value.tolist() for key, value in batch.items()}


def test_collators_copied_alone(workdir, tokenizer, records):
    out = run_alone(workdir, "collators", """
        from pathlib import Path
        import collators
        from collators import ChatSFTCollator, DataError, Fields, PretrainCollator, SFTCollator
        assert Path(collators.__file__).parent == Path.cwd()
        try:
            import helpers
        except ImportError:
            out["helpers_importable"] = False
        out["project_on_path"] = any(Path(entry or ".").resolve() == PROJECT for entry in sys.path)
        assert tokenizer.is_fast
        lists = lambda batch: {key: value.tolist() for key, value in batch.items()}
        out["pretrain"] = lists(PretrainCollator(tokenizer)(records))
        out["sft"] = lists(SFTCollator(tokenizer)(records))
        out["sft_id"] = lists(SFTCollator(tokenizer, mask_pad="id")(records))
        qa = [{"question": r["instruct"] + r["input"], "answer": r["label"]} for r in records]
        out["sft_fields"] = lists(SFTCollator(tokenizer, prompt_response=Fields("question", "answer"))(qa))
        template = Path("qwen2.5_assistant_only.jinja").read_text(encoding="utf-8")
        out["chat"] = lists(ChatSFTCollator(tokenizer, chat_template=template)(records))
        try:
            SFTCollator(tokenizer)([records[0], {"instruct": "x", "input": ""}])
        except DataError as error:
            out["missing"] = str(error)
    """, extra_files=["templates/qwen2.5_assistant_only.jinja"])
    assert out["helpers_importable"] is False and out["project_on_path"] is False
    assert out["pretrain"] == as_lists(PretrainCollator(tokenizer)(records))
    assert out["sft"] == out["sft_fields"] == as_lists(SFTCollator(tokenizer)(records))
    assert out["sft_id"] == as_lists(SFTCollator(tokenizer, mask_pad="id")(records))
    assert out["chat"] == as_lists(ChatSFTCollator(tokenizer, chat_template=QWEN_TRAINING_TEMPLATE)(records))
    assert out["missing"] == "record 1 handed to SFTCollator: field 'label' is missing"
    with pytest.raises(DataError, match=f"^{re.escape(out['missing'])}$"):
        SFTCollator(tokenizer)([records[0], {"instruct": "x", "input": ""}])


def test_packing_copied_with_collators(workdir, tokenizer, records):
    out = run_alone(workdir, "packing", """
        from packing import PackingCollator, pack_into_blocks
        out["packed"] = {key: value.tolist() for key, value in PackingCollator(tokenizer)(records).items()}
        out["packed_sft"] = {key: value.tolist() for key, value in PackingCollator(tokenizer, sft=True)(records).items()}
        ids = [tokenizer(r["instruct"] + r["input"] + r["label"])["input_ids"] for r in records]
        out["blocks"] = pack_into_blocks(ids, 64, tokenizer.eos_token_id)
    """)
    assert out["packed"] == as_lists(PackingCollator(tokenizer)(records))
    assert out["packed_sft"] == as_lists(PackingCollator(tokenizer, sft=True)(records))
    ids = [tokenizer(r["instruct"] + r["input"] + r["label"])["input_ids"] for r in records]
    assert out["blocks"] == pack_into_blocks(ids, 64, tokenizer.eos_token_id)


@pytest.fixture(scope="module")
def tiny_model_dir(workdir, tokenizer):
    model = load_model(tokenizer=tokenizer)
    model.save_pretrained(workdir / "model")
    tokenizer.save_pretrained(workdir / "model")  # a copier's model directory holds both
    return workdir / "model"


def test_generation_copied_alone(workdir, tiny_model_dir, tokenizer, records):
    out = run_alone(workdir, "generation", """
        from transformers import AutoModelForCausalLM
        from generation import generate
        model = AutoModelForCausalLM.from_pretrained("model")
        prompt = records[0]["instruct"] + records[0]["input"]
        ran_out = generate(model, tokenizer, prompt, max_new_tokens=6, stop_token_ids=[])
        stopped = generate(model, tokenizer, prompt, max_new_tokens=6, stop_token_ids=[ran_out.token_ids[2]])
        out["generations"] = [[g.text, g.token_ids, g.stopped_on_eos] for g in (ran_out, stopped)]
    """)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompt = records[0]["instruct"] + records[0]["input"]
    ran_out = generate(model, tokenizer, prompt, max_new_tokens=6, stop_token_ids=[])
    stopped = generate(model, tokenizer, prompt, max_new_tokens=6, stop_token_ids=[ran_out.token_ids[2]])
    assert out["generations"] == [[g.text, g.token_ids, g.stopped_on_eos] for g in (ran_out, stopped)]
    assert len(ran_out.token_ids) == 6 and not ran_out.stopped_on_eos
    assert stopped.stopped_on_eos and len(stopped.token_ids) <= 3


def readme_example():
    text = (HELPERS / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_readme_example_trains_one_step_with_collators_py_alone(workdir, tiny_model_dir):
    """helpers/README.md's Trainer example, as written, with MODEL pointed at the saved tiny model."""
    code = readme_example()
    assert 10 <= len([line for line in code.splitlines() if line.strip()]) <= 15
    model_line = 'MODEL = "Qwen/Qwen2.5-0.5B"  # a hub id or a local directory\n'
    assert code.count(model_line) == 1
    code = code.replace(model_line, 'MODEL = "model"\n')
    script = code + textwrap.dedent("""
        out["steps"] = trainer.state.global_step
        out["loss"] = trainer.state.log_history[-1]["train_loss"]
    """)
    out = run_alone(workdir, "collators", script, timeout=600)
    assert out["steps"] == 1
    assert out["loss"] > 0


# --- the readme's claims, checked in the package ---------------------------------------------


def test_the_readme_names_every_piece_and_file():
    text = (HELPERS / "README.md").read_text(encoding="utf-8")
    for files in PIECES.values():
        for name in files:
            assert f"`{name}`" in text
    for template in sorted((HELPERS / "templates").glob("*.jinja")):
        assert f"`templates/{template.name}`" in text
    assert "remove_unused_columns=False" in text and "processing_class=tokenizer" in text


def test_copied_records_of_another_shape_give_the_same_batch(tokenizer, records):
    qa = [{"question": r["instruct"] + r["input"], "answer": r["label"]} for r in records]
    ours = SFTCollator(tokenizer)(records)
    theirs = SFTCollator(tokenizer, prompt_response=Fields("question", "answer"))(qa)
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
