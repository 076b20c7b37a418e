"""Every pytest run in the project compares notebook outputs with tests/nbval_numbers.py: printed
decimals may differ from the stored ones by one unit of their last digit, all else exactly."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
pytest_plugins = ["nbval_numbers"]
