"""The figures `make bench` reports that are cheap enough to hold on every test run."""

from benchmarks.run import GOALS, memory_estimate_rel_error, steps_to_exact_recall


def test_memory_rule_within_goal(tokenizer, records):
    assert memory_estimate_rel_error(tokenizer, records) <= GOALS["memory_estimate_rel_error"][1]


def test_default_recipe_recalls_every_poem_within_goal(tokenizer, records):
    steps = steps_to_exact_recall(tokenizer, records)
    assert steps is not None and steps <= GOALS["steps_to_exact_recall"][1]
