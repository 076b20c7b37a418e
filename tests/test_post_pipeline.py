"""Notebook 04, step 1: the post's own pipeline (a Dataset of texts, a collator that tokenizes the
batch with padding="longest", labels copied from input_ids with [PAD] set to -100) runs in the
series' code, and its stored output is the post's printed batch, id for id."""

import ast
import json
import re
from pathlib import Path

from post_facts import PAD_ID, RECORD_0_IDS, RECORD_1_IDS

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "04_full_parameter_training.ipynb"


def pipeline_cell() -> dict:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    [cell] = [c for c in cells if c["cell_type"] == "code" and "def collate_texts" in "".join(c["source"])]
    return cell


def test_the_collator_tokenizes_the_batch_and_the_dataset_returns_text():
    source = "".join(pipeline_cell()["source"])
    assert 'padding="longest"' in source and "tokenizer(texts" in source  # tokenized inside the collator
    assert 'record["instruct"] + record["input"] + record["label"] + self.eos_token' in source
    assert 'add_special_tokens({"pad_token": "[PAD]"})' in source
    assert 'PretrainCollator(tokenizer_with_pad, mask_pad="id")' in source  # compared with the series'


def test_the_stored_output_is_the_posts_printed_batch():
    cell = pipeline_cell()
    out = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("name") == "stdout")
    ids_text = out.split("input_ids:")[1].split("labels of record 1")[0]
    width = len(RECORD_0_IDS)
    assert [int(x) for x in re.findall(r"\d+", ids_text)] == RECORD_0_IDS + RECORD_1_IDS + [PAD_ID] * (width - len(RECORD_1_IDS))
    labels = ast.literal_eval(out.split("labels of record 1 from position 28:")[1].strip())
    assert labels == RECORD_1_IDS[28:] + [-100] * (width - len(RECORD_1_IDS))
