"""`make bench`: measure the default recipe, the Trainer's overhead, the memory rule and the series.

Writes ``benchmarks/results.json`` with exactly these keys and prints them as a table:

- ``steps_to_exact_recall``: optimizer steps of the default pretraining recipe until greedy
  generation reproduces all five records (checked after every epoch). Goal <= 60.
- ``trainer_vs_raw_step_ratio``: seconds per step of ``helpers.train`` (the Trainer) over a
  minimal PyTorch loop doing the same math (same model, collator, batch size, fused AdamW,
  gradient clipping at 1.0), median of interleaved repeats. Goal <= 1.10.
- ``memory_estimate_rel_error``: |estimate - measured| / measured for the tiny model's
  parameter + gradient + AdamW-state bytes, measured at the allocator over loading and one
  training step (``helpers.memory.measure_training_memory``). Goal <= 0.02.
- ``series_vs_one_training_ratio``: wall time to execute every notebook (fresh kernel each,
  as nbval does) over the median wall time of one default training. Goal <= 10.
- ``series_seconds``: that wall time, for information.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from helpers import PretrainCollator, TrainConfig, generate, load_model, load_records, load_tokenizer, train
from helpers.memory import count_parameters, estimate_training_memory, measure_training_memory

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
GOALS = {
    "steps_to_exact_recall": ("<=", 60),
    "trainer_vs_raw_step_ratio": ("<=", 1.10),
    "memory_estimate_rel_error": ("<=", 0.02),
    "series_vs_one_training_ratio": ("<=", 10),
    "series_seconds": None,
}


def exact_recall(model, tokenizer, records) -> int:
    """How many records the model continues exactly from ``instruct`` alone (greedy)."""
    return sum(
        generate(model, tokenizer, r["instruct"], max_new_tokens=64).text == r["input"] + r["label"]
        for r in records
    )


class RecallEachEpoch(TrainerCallback):
    """Records the first optimizer step after which all records are recalled exactly."""

    def __init__(self, model, tokenizer, records):
        self.model, self.tokenizer, self.records = model, tokenizer, records
        self.first_step: int | None = None

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.first_step is None:
            self.model.eval()
            if exact_recall(self.model, self.tokenizer, self.records) == len(self.records):
                self.first_step = state.global_step
            self.model.train()


def steps_to_exact_recall(tokenizer, records) -> int | None:
    model = load_model(tokenizer=tokenizer)
    watcher = RecallEachEpoch(model, tokenizer, records)
    train(model, tokenizer, records, PretrainCollator(tokenizer), TrainConfig(print_loss=False), callbacks=[watcher])
    return watcher.first_step


def trainer_seconds_per_step(tokenizer, records) -> float:
    model = load_model(tokenizer=tokenizer)
    result = train(model, tokenizer, records, PretrainCollator(tokenizer), TrainConfig(print_loss=False))
    return result.seconds / result.steps


def raw_seconds_per_step(tokenizer, records) -> float:
    """The same training as ``helpers.train`` with nothing but PyTorch."""
    config = TrainConfig()
    model = load_model(tokenizer=tokenizer)
    model.train()
    collator = PretrainCollator(tokenizer)
    loader = torch.utils.data.DataLoader(
        records, batch_size=config.per_device_train_batch_size, shuffle=True, collate_fn=collator,
        generator=torch.Generator().manual_seed(config.seed),
    )
    start = time.perf_counter()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
    )
    steps = 0
    for _ in range(config.num_train_epochs):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the Trainer's max_grad_norm
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
    return (time.perf_counter() - start) / steps


def trainer_vs_raw(tokenizer, records, repeats: int) -> tuple[float, float]:
    trainer, raw = [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both alike
        trainer.append(trainer_seconds_per_step(tokenizer, records))
        raw.append(raw_seconds_per_step(tokenizer, records))
    return statistics.median(trainer), statistics.median(raw)


def memory_estimate_rel_error(tokenizer, records) -> float:
    measurement = measure_training_memory(lambda: load_model(tokenizer=tokenizer), PretrainCollator(tokenizer)(records[:2]),
                                          lambda model: torch.optim.AdamW(model.parameters(), lr=1e-3))
    measured = measurement.total
    estimate = estimate_training_memory(count_parameters(measurement.model), "fp32").total
    return abs(estimate - measured) / measured


def one_training_seconds(tokenizer, records) -> float:
    model = load_model(tokenizer=tokenizer)
    return train(model, tokenizer, records, PretrainCollator(tokenizer), TrainConfig(print_loss=False)).seconds


def series_seconds() -> float:
    """Execute every notebook top to bottom in a fresh kernel started in notebooks/."""
    import nbformat
    from nbclient import NotebookClient

    start = time.perf_counter()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the noisy timings (median)")
    args = parser.parse_args(argv)
    tokenizer, records = load_tokenizer(), load_records()

    results = {"steps_to_exact_recall": steps_to_exact_recall(tokenizer, records)}
    trainer, raw = trainer_vs_raw(tokenizer, records, args.repeats)
    results["trainer_vs_raw_step_ratio"] = round(trainer / raw, 3)
    results["memory_estimate_rel_error"] = float(f"{memory_estimate_rel_error(tokenizer, records):.3g}")
    trainings = [one_training_seconds(tokenizer, records)]
    series = series_seconds()
    trainings += [one_training_seconds(tokenizer, records) for _ in range(max(args.repeats - 1, 1))]
    results["series_vs_one_training_ratio"] = round(series / statistics.median(trainings), 2)
    results["series_seconds"] = round(series, 1)

    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{'figure':32s} {'value':>10s}  goal")
    for key, value in results.items():
        goal = GOALS[key]
        verdict = "" if goal is None else f"{goal[0]} {goal[1]}  " + (
            "ok" if value is not None and value <= goal[1] else "MISSED")
        print(f"{key:32s} {str(value):>10s}  {verdict}")
    print(f"(one training: median {statistics.median(trainings):.1f} s; Trainer {trainer * 1000:.0f} ms/step, "
          f"raw loop {raw * 1000:.0f} ms/step)")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    main()
