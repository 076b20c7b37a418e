"""The post's closing inference (notebook 05, section 3): it runs the pretraining model only, on the
first record's instruction, and prints that record's input and label; its SFT side is the series'."""

import json
from pathlib import Path

from post_facts import POST_INFERENCE_OUTPUT, POST_INFERENCE_PROMPT

ROOT = Path(__file__).resolve().parent.parent


def test_the_posts_prompt_is_record_0s_instruction_and_its_output_the_rest_of_that_record(records):
    assert records[0]["instruct"] == POST_INFERENCE_PROMPT
    assert records[0]["input"] + records[0]["label"] == POST_INFERENCE_OUTPUT


def test_notebook_05_says_the_sft_inference_is_the_series_own():
    cells = json.loads((ROOT / "notebooks" / "05_inference.ipynb").read_text())["cells"]
    text = " ".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
    text = " ".join(text.split())
    assert "The post runs no inference with an SFT model" in text
    assert POST_INFERENCE_PROMPT in text
