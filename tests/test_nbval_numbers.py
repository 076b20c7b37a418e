"""The number-aware comparison (tests/nbval_numbers.py): one unit of a printed decimal's last
digit is tolerated, and nothing else: not a changed digit beyond it, an integer, a word, a
number where a word was, or a missing line."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nbval_numbers import compare_text, reconcile, tolerance_of

ROOT = Path(__file__).resolve().parent.parent

MATCH = [
    ("SFT prompt loss 8.40", "SFT prompt loss 8.39"),  # the AVX2 / AVX-512 case
    ("10.00 GB", "9.99 GB"),  # one unit across a power of ten
    ("margin -0.00", "margin 0.00"),
    ("p = 1.5e-06", "p = 1.6e-06"),
    ("9.9e-06", "1.0e-05"),
    ("[0.125, 0.250]", "[0.126, 0.249]"),
    ("loss 2.2 at step 3", "loss 2.3 at step 3"),
    ("8.4 GB", "8.39 GB"),  # the coarser format's unit
    ("same text 5/5 True", "same text 5/5 True"),
]
DIFFER = [
    ("loss 12.148", "loss 15.148"),  # a digit beyond the last one
    ("loss 8.40", "loss 8.38"),  # two units
    ("stops 0/5", "stops 3/5"),  # counts are integers: exact
    ("id 151643", "id 151644"),  # token ids: exact
    ("stopped True", "stopped False"),
    ("pretrain loss 8.40", "pre-train loss 8.40"),  # a changed word
    ("loss 8.40", "loss nan"),  # a word where a number was
    ("loss high", "loss 8.40"),  # a number where a word was
    ("a 1.25\nb 2.50\n", "a 1.25\n"),  # a missing line
    ("transformers 5.23.0", "transformers 5.24.0"),  # a version is not a measurement
    ("Qwen2.5-0.5B", "Qwen2.4-0.5B"),  # nor a name
    ("8.40 8.40", "8.40"),  # a missing number
]


@pytest.mark.parametrize("stored, printed", MATCH)
def test_within_one_unit_of_the_last_digit_matches(stored, printed):
    assert compare_text(stored, printed)[0]


@pytest.mark.parametrize("stored, printed", DIFFER)
def test_everything_else_differs(stored, printed):
    assert not compare_text(stored, printed)[0]


def test_moved_values_are_reported_with_their_distance():
    same, moved = compare_text("a 8.40 b 1.00", "a 8.39 b 1.00")
    assert same and [(m.stored, m.printed, float(m.units)) for m in moved] == [("8.40", "8.39", 1.0)]


def test_a_cell_may_widen_the_tolerance_with_a_reason():
    cell = {"metadata": {"nbval-number-tolerance": {"units": 3, "reason": "asserted in the cell"}}}
    assert tolerance_of(cell, "x") == 3 and compare_text("0.50", "0.53", 3)[0] and not compare_text("0.50", "0.54", 3)[0]
    assert tolerance_of({"metadata": {}}, "x") == 1
    with pytest.raises(ValueError, match="nb.ipynb cell 4: .*reason"):
        tolerance_of({"metadata": {"nbval-number-tolerance": {"units": 3}}}, "nb.ipynb cell 4")
    with pytest.raises(ValueError, match="whole number"):
        tolerance_of({"metadata": {"nbval-number-tolerance": {"units": 0.5, "reason": "r"}}}, "x")


def test_reconcile_pairs_streams_by_name_and_results_in_order():
    stored = [nbformat.v4.new_output("stream", name="stdout", text="loss 8.40\n"),
              nbformat.v4.new_output("execute_result", data={"text/plain": "0.25"}, execution_count=1)]
    printed = [nbformat.v4.new_output("stream", name="stdout", text="loss 8.39\n"),
               nbformat.v4.new_output("execute_result", data={"text/plain": "0.26"}, execution_count=1)]
    new, moved = reconcile(printed, stored, lambda s: s)
    assert new[0]["text"] == "loss 8.40\n" and new[1]["data"]["text/plain"] == "0.25" and len(moved) == 2
    assert printed[0]["text"] == "loss 8.39\n"  # the outputs nbval executed are not changed in place
    stderr = [nbformat.v4.new_output("stream", name="stderr", text="loss 8.39\n")]
    assert reconcile(stderr, stored, lambda s: s)[0][0]["text"] == "loss 8.39\n"  # stdout is not stderr


def _notebook(cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for count, (source, stored, metadata) in enumerate(cells, 1):
        cell = nbformat.v4.new_code_cell(source, execution_count=count, metadata=metadata)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored)]
        nb.cells.append(cell)
    return nb


def test_nbval_runs_with_the_number_aware_comparison(tmp_path):
    """Through nbval itself, as `make test` runs it (a notebook inside the project, so that the
    root conftest.py loads the plugin): one unit passes, the mutations fail."""
    cells = [
        ('print(f"{8.394:.2f}")', "8.40\n", {}),  # one unit: passes
        ('print(f"{12.148:.3f}")', "15.148\n", {}),  # a loss changed beyond the last digit
        ('print("0/5")', "3/5\n", {}),  # a stop rate
        ('print(151643)', "151644\n", {}),  # a token id
        ('print("stops")', "stop\n", {}),  # a word
        ('print(0.53)', "0.50\n", {"nbval-number-tolerance": {"units": 3, "reason": "asserted in the cell"}}),
        ('print(0.53)', "0.50\n", {"nbval-number-tolerance": {"units": 3}}),  # no reason: an error
    ]
    folder = ROOT / "build" / f"test-nbval-numbers-{tmp_path.name}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "numbers.ipynb"
    nbformat.write(_notebook(cells), path)
    report = tmp_path / "report.json"
    try:
        subprocess.run([sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", "--nbval",
                        "--nbval-current-env", str(path.relative_to(ROOT))],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(folder)
    import xml.etree.ElementTree as ET

    outcome = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcome[int(case.get("name").rsplit(" ", 1)[-1]) + 1] = "failed" if failed else "passed"
    assert outcome == {1: "passed", 2: "failed", 3: "failed", 4: "failed", 5: "failed", 6: "passed", 7: "failed"}
