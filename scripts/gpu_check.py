"""The GPU record: run the notebooks with nbclient, and turn the logs into ``summary.json``.

``scripts/gpu_check.sh`` calls this on a GPU machine (issue 13); it also runs anywhere.

    python scripts/gpu_check.py notebooks --results nb.jsonl --executed-dir executed notebooks/0*.ipynb
    python scripts/gpu_check.py summary --matrix-log matrix.log --notebook-results nb.jsonl \\
        --out benchmarks/gpu/summary.json

``notebooks`` executes each notebook top to bottom in a fresh kernel (the working directory
is the notebook's folder, as in ``make execute``) and appends one JSON line per notebook to
``--results``: its name, ``ok`` (every cell ran, so every claim the notebook asserts held),
seconds, and the first error. A notebook that fails is recorded and the next one runs.

``summary`` reads the ``MATRIX_ROW`` lines that ``train_qwen05b_shape.py --matrix`` prints
and the notebook results, and writes the record: ``device``, ``torch``, ``mfu_best``,
``tokens_per_s_best``, ``config_best`` (the option set with the highest MFU),
``peak_gb_batch8`` and ``state_gb`` (the batch-8 run of that option set, or else the batch-8
run with the lowest peak: ``peak_gb_batch8_config`` says which), ``notebooks_ok`` (notebook
name -> true/false), the goals and whether they were met, and every matrix row.
``goals.peak_batch8_met`` is that one run's (the best option set at batch 8, so that both goals
hold for one option set); ``goals.peak_batch8_met_by`` lists every batch-8 option set whose peak
is within the goal (activation checkpointing can meet it where the fastest set does not).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

GB = 10**9
MATRIX_PREFIX = "MATRIX_ROW "
MFU_FORMULA = ("6 x parameters x tokens/s (2 forward + 4 backward FLOPs per parameter and token; attention "
               "scores not counted) / the card's dense bf16 peak; mfu_with_attention adds 12 x layers x "
               "seq_len x hidden per token")
GOALS = {"mfu_at_least": 0.40, "peak_batch8_at_most_x_state": 1.5}  # issue 13 (b)


# ----------------------------------------------------------------------------------------------
# notebooks
# ----------------------------------------------------------------------------------------------

def first_error(notebook) -> str | None:
    """``cell N: ename: evalue`` of the first error output in an executed notebook, if any."""
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {index}: {output.get('ename')}: {output.get('evalue')}"[:500]
    return None


def run_notebook(path: Path, executed_dir: Path | None, cell_timeout: float) -> dict:
    """Execute ``path`` in a fresh kernel; ``{"notebook", "ok", "seconds", "error"}``."""
    import nbformat
    from nbclient import NotebookClient

    start = time.perf_counter()
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=int(cell_timeout), kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    error = None
    try:
        client.execute()
    except Exception as exc:  # CellExecutionError (a failed assert), CellTimeoutError, DeadKernelError...
        last_line = (str(exc).strip().splitlines() or [""])[-1]
        error = first_error(notebook) or f"{type(exc).__name__}: {last_line}"[:500]
    if executed_dir is not None:
        executed_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, executed_dir / path.name)
    return {"notebook": path.stem, "ok": error is None, "seconds": round(time.perf_counter() - start, 1),
            "error": error}


def notebooks_command(args: argparse.Namespace) -> int:
    deadline = time.perf_counter() + args.budget if args.budget else None
    for path in map(Path, args.notebooks):
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining < 10:
            result = {"notebook": path.stem, "ok": False, "seconds": 0.0,
                      "error": f"not run: the notebooks' time budget ({args.budget:g} s) was spent"}
        else:
            cell_timeout = args.cell_timeout if remaining is None else min(args.cell_timeout, remaining)
            result = run_notebook(path, args.executed_dir, cell_timeout)
        print(json.dumps(result), flush=True)
        with open(args.results, "a", encoding="utf-8") as out:
            out.write(json.dumps(result) + "\n")
    return 0


# ----------------------------------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------------------------------

def read_matrix_rows(path: Path) -> list[dict]:
    """The ``MATRIX_ROW`` JSON objects of a log (a run cut short still gives the rows it finished)."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(MATRIX_PREFIX):
            try:
                rows.append(json.loads(line[len(MATRIX_PREFIX):]))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
    return rows


def read_notebook_results(path: Path | None) -> list[dict]:
    if path is None or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _options_without_batch(row: dict) -> str:
    return " ".join(part for part in row["options"].split() if not re.fullmatch(r"b\d+", part))


def summarize(rows: list[dict], notebook_results: list[dict], torch_version: str | None = None) -> dict:
    """The record of issue 13 (c) from matrix rows and notebook results."""
    measured = [row for row in rows if not row.get("error") and not row.get("skipped")]
    with_mfu = [row for row in measured if row.get("mfu") is not None]
    best = max(with_mfu, key=lambda row: row["mfu"]) if with_mfu else (
        max(measured, key=lambda row: row["tokens_per_second"]) if measured else None)
    batch8 = [row for row in measured if row["batch_size"] == 8 and row.get("peak_allocated_bytes") is not None]
    same_as_best = [row for row in batch8 if best is not None and _options_without_batch(row) == _options_without_batch(best)]
    row8 = same_as_best[0] if same_as_best else (min(batch8, key=lambda row: row["peak_allocated_bytes"]) if batch8 else None)
    peak8 = None if row8 is None else row8["peak_allocated_bytes"] / GB
    state = None if row8 is None else row8["measured_state_bytes"] / GB
    notebook_results = sorted(notebook_results, key=lambda result: result["notebook"])
    notebooks_ok = {result["notebook"]: bool(result["ok"]) for result in notebook_results}
    return {
        "device": next((row["device"] for row in measured), None),
        "torch": next((row["torch"] for row in measured), torch_version),
        "transformers": next((row["transformers"] for row in measured), None),
        "mfu_best": None if best is None else best.get("mfu"),
        "mfu_best_with_attention": None if best is None else best.get("mfu_with_attention"),
        "tokens_per_s_best": None if best is None else best["tokens_per_second"],
        "config_best": None if best is None else best["options"],
        "peak_gb_batch8": peak8,
        "peak_gb_batch8_config": None if row8 is None else row8["options"],
        "state_gb": state,
        "notebooks_ok": notebooks_ok,
        "notebook_errors": {r["notebook"]: r["error"] for r in notebook_results if not r["ok"]},
        "goals": {
            **GOALS,
            "mfu_met": None if best is None or best.get("mfu") is None else best["mfu"] >= GOALS["mfu_at_least"],
            "peak_batch8_met": None if peak8 is None else peak8 <= GOALS["peak_batch8_at_most_x_state"] * state,
            "peak_batch8_met_by": [
                row["options"] for row in batch8
                if row["peak_allocated_bytes"] <= GOALS["peak_batch8_at_most_x_state"] * row["measured_state_bytes"]
            ],
        },
        "mfu_formula": MFU_FORMULA,
        "peak_tflops": None if best is None else best.get("peak_tflops"),
        "seq_len": None if best is None else best.get("seq_len"),
        "rows": [
            {key: row.get(key) for key in ("option_set", "options", "batch_size", "tokens_per_second", "mfu",
                                            "mfu_with_attention", "peak_allocated_bytes", "measured_state_bytes",
                                            "peak_over_state", "fused_ce", "wall_seconds", "first_loss",
                                            "last_loss", "error", "skipped")}
            for row in rows
        ],
    }


def summary_command(args: argparse.Namespace) -> int:
    rows = read_matrix_rows(args.matrix_log) if args.matrix_log.is_file() else []
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    summary = summarize(rows, read_notebook_results(args.notebook_results), torch_version)
    text = json.dumps(summary, indent=2) + "\n"
    for out in args.out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    nb = commands.add_parser("notebooks", help="execute notebooks with nbclient, one JSON line each")
    nb.add_argument("notebooks", nargs="+")
    nb.add_argument("--results", type=Path, required=True, help="JSON-lines file the results are appended to")
    nb.add_argument("--executed-dir", type=Path, default=None, help="where the executed notebooks are written")
    nb.add_argument("--cell-timeout", type=float, default=600, help="seconds per cell (default 600)")
    nb.add_argument("--budget", type=float, default=None, help="seconds for all notebooks; later ones are not started")
    summary = commands.add_parser("summary", help="write summary.json from the matrix log and notebook results")
    summary.add_argument("--matrix-log", type=Path, required=True)
    summary.add_argument("--notebook-results", type=Path, default=None)
    summary.add_argument("--out", type=Path, action="append", required=True, help="file to write (repeatable)")
    args = parser.parse_args(argv)
    return notebooks_command(args) if args.command == "notebooks" else summary_command(args)


if __name__ == "__main__":
    sys.exit(main())
