"""A number-aware output comparison for nbval: printed decimals may differ in their last digit.

nbval compares a cell's new output with the stored one character by character. A float printed
with a fixed number of digits sits, now and then, on a rounding boundary: the same computation
prints ``8.40`` on one CPU and ``8.39`` on another (another instruction set, BLAS or thread
count changes the order of floating-point sums). Whatever the number of digits, some value will
sit on a boundary somewhere, so this plugin changes what "equal" means, and nothing else:

- A decimal number (``8.40``, ``-0.125``, ``1.5e-06``) matches its stored value when the two
  differ by at most one unit of the last printed digit (of the coarser of the two).
- Everything else compares exactly: integers (token ids, counts, ``5/5``), booleans, words,
  spacing, and numbers glued to letters or dots (``Qwen2.5``, ``v5.23.0``).
- A cell may allow more units in its metadata, with the reason beside it::

      "metadata": {"nbval-number-tolerance": {"units": 3, "reason": "..."}}

  Use it only where the claim itself is asserted inside the cell.

nbval's own comparison and its failure report are kept: where the numbers match within the
tolerance, the new output is given the stored text before nbval compares. Each value that moved
is listed in pytest's summary, so drift is seen before it grows. Loaded by the project's root
``conftest.py`` for every pytest run.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from decimal import Decimal

import pytest

#: Where a cell's metadata asks for a wider tolerance.
METADATA_KEY = "nbval-number-tolerance"

# A decimal point or an exponent makes a printed number a measurement; it must not be part of a
# name (letters, digits, "_" or "." before it) nor of a version ("5.23.0": a dot and a digit after).
DECIMAL = re.compile(r"(?<![A-Za-z0-9_.])[-+]?(?:\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)(?!\.?\d)")


@dataclass(frozen=True)
class Moved:
    """One printed decimal that differs from its stored value within the tolerance."""

    stored: str
    printed: str
    units: Decimal  # the difference in units of the last printed digit


def last_digit_unit(number: str) -> Decimal:
    """The value of one unit of the last printed digit.

    >>> last_digit_unit("8.40"), last_digit_unit("1.5e-06"), last_digit_unit("-12.148")
    (Decimal('0.01'), Decimal('1E-7'), Decimal('0.001'))
    """
    return Decimal(1).scaleb(Decimal(number).as_tuple().exponent)


def compare_text(stored: str, printed: str, units: int = 1) -> tuple[bool, list[Moved]]:
    """Whether ``printed`` matches ``stored``, and the decimals that moved within tolerance.

    >>> compare_text("prompt loss 8.40", "prompt loss 8.39")[0]
    True
    >>> compare_text("loss 12.148", "loss 15.148")[0], compare_text("stops 0/5", "stops 3/5")[0]
    (False, False)
    """
    if stored == printed:
        return True, []
    stored_parts, printed_parts = DECIMAL.split(stored), DECIMAL.split(printed)
    if stored_parts != printed_parts:  # the text around the numbers, integers included
        return False, []
    moved = []
    for old, new in zip(DECIMAL.findall(stored), DECIMAL.findall(printed)):
        if old == new:
            continue
        unit = max(last_digit_unit(old), last_digit_unit(new))
        difference = abs(Decimal(old) - Decimal(new)) / unit
        if difference > units:
            return False, []
        moved.append(Moved(old, new, difference))
    return True, moved


def tolerance_of(cell: dict, where: str) -> int:
    """The units a cell allows: 1, or what its metadata declares (with a reason)."""
    declared = cell.get("metadata", {}).get(METADATA_KEY)
    if declared is None:
        return 1
    if not isinstance(declared, dict) or not str(declared.get("reason", "")).strip():
        raise ValueError(f"{where}: metadata '{METADATA_KEY}' must be "
                         '{"units": N, "reason": "why one unit is not enough"}, '
                         f"got {declared!r}")
    units = declared.get("units")
    if not isinstance(units, int) or isinstance(units, bool) or units < 1:
        raise ValueError(f"{where}: metadata '{METADATA_KEY}' needs a whole number of units >= 1, got {units!r}")
    return units


def _texts(output) -> dict[str, str]:
    """The compared text fields of one output: a stream's text, or a result's text/* data."""
    if output.get("output_type") == "stream":
        return {"text": output.get("text", "")}
    return {key: value for key, value in output.get("data", {}).items()
            if key.startswith("text/") and isinstance(value, str)}


def _pairs(test: list, ref: list):
    """New and stored outputs paired as nbval pairs them: streams by name, the rest in order."""
    streams = {out.get("name"): out for out in ref if out.get("output_type") == "stream"}
    others = iter(out for out in ref if out.get("output_type") != "stream")
    for index, out in enumerate(test):
        if out.get("output_type") == "stream":
            stored = streams.get(out.get("name"))
        else:
            stored = next(others, None)
            if stored is not None and stored.get("output_type") != out.get("output_type"):
                stored = None
        if stored is not None:
            yield index, out, stored


def reconcile(test: list, ref: list, sanitize, units: int = 1) -> tuple[list, list[Moved]]:
    """``test`` with each text that matches its stored one within ``units`` replaced by the stored
    text, so that nbval's exact comparison passes there and reports everything else as before."""
    test = list(test)
    moved: list[Moved] = []
    for index, out, stored in _pairs(test, ref):
        stored_texts = _texts(stored)
        for key, text in _texts(out).items():
            if key not in stored_texts:
                continue
            same, moves = compare_text(sanitize(stored_texts[key]), sanitize(text), units)
            if same and moves:
                out = copy.deepcopy(out) if out is test[index] else out
                if key == "text" and out.get("output_type") == "stream":
                    out["text"] = stored_texts[key]
                else:
                    out["data"][key] = stored_texts[key]
                test[index] = out
                moved.extend(moves)
    return test, moved


_MOVED_KEY = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[_MOVED_KEY] = []
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval not installed: nothing to compare
        return
    if getattr(IPyNbCell.compare_outputs, "number_aware", False):
        return
    exact = IPyNbCell.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        where = f"{self.fspath.basename} cell {self.cell_num}"
        test, moved = reconcile(test, ref, self.sanitize, tolerance_of(self.cell, where))
        same = exact(self, test, ref, skip_compare)
        if same:
            config.stash[_MOVED_KEY].extend((where, m) for m in moved)
        return same

    compare_outputs.number_aware = True
    IPyNbCell.compare_outputs = compare_outputs


def pytest_terminal_summary(terminalreporter, config):
    moved = config.stash.get(_MOVED_KEY, [])
    if moved:
        terminalreporter.section("printed decimals within tolerance of their stored value")
        for where, m in moved:
            terminalreporter.write_line(f"{where}: stored {m.stored}, printed {m.printed} ({m.units} unit(s))")
