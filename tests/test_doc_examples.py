"""Every public helper of the copy-paste modules has a runnable example in its docstring (issue 23).

``make test`` runs them (``pytest --doctest-modules helpers``); this test checks that none is
missing, so a new public function cannot arrive without one.
"""

import doctest
import importlib
import inspect

import pytest

#: Modules whose every public function, class and public method carries a ``>>>`` example.
WITH_EXAMPLES = ["collators", "packing", "generation", "chat_templates", "data", "settings", "model", "checkpoints",
                 "tokenizer", "memory", "pitfalls", "lora", "training", "plotting"]
#: Left out on purpose: they train models (tens of seconds each), or are shown inside another's example.
WITHOUT = {
    "checkpoints": {"train_both", "load_or_train",  # train two models
                    "load_checkpoint", "saves_as", "same_tokenizer_files"},  # in save_checkpoint's round trip
}


def public_callables(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                        yield f"{name}.{attr}", value.fget if isinstance(value, property) else value


@pytest.mark.parametrize("module_name", WITH_EXAMPLES)
def test_every_public_helper_has_an_example(module_name):
    module = importlib.import_module(f"helpers.{module_name}")
    missing = [name for name, obj in public_callables(module)
               if ">>>" not in (obj.__doc__ or "") and name not in WITHOUT.get(module_name, set())]
    assert missing == []


@pytest.mark.parametrize("module_name", WITH_EXAMPLES)
def test_the_examples_are_doctests_pytest_collects(module_name):
    module = importlib.import_module(f"helpers.{module_name}")
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert len(tests) >= sum(1 for _ in public_callables(module)) - len(WITHOUT.get(module_name, ()))
