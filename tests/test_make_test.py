"""`make test` is what a learner runs: the unit tests, then every notebook once with the
machine's own settings; `make test-portable` (run by CI after it) repeats the notebooks under
other CPU settings. Read from `make -n`, which prints every command without running it."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBVAL_FLAGS = ("--nbval ", "--nbval-current-env", "--nbval-sanitize-with tests/nbval_sanitize.cfg")


def planned(target: str) -> list[str]:
    # a clean environment: under `make test` itself, make's own variables would leak in
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def notebook_passes(target: str) -> list[str]:
    return [line for line in planned(target) if re.search(r"pytest .*--nbval\s", line)]


def test_make_test_runs_the_units_and_one_notebook_pass_with_the_machines_settings():
    units = [line for line in planned("test") if re.search(r"-m pytest (-q )?(--doctest-modules helpers )?tests", line)]
    assert len(units) == 2 and "--doctest-modules helpers" in units[0]
    (notebooks,) = notebook_passes("test")
    assert all(flag in notebooks for flag in NBVAL_FLAGS) and "--nbval-lax" not in notebooks
    # every notebook, appendix/ included, in name order; then one Chinese notebook from its own folder
    assert notebooks.rstrip().endswith(" notebooks zh/notebooks/05_inference.ipynb")
    assert "OMP_NUM_THREADS" not in notebooks and "ATEN_CPU_CAPABILITY" not in notebooks
    assert re.search(r"rm -rf (build/\S+-outputs) .*PVS_OUTPUTS=\S*\1 ", notebooks)  # fresh checkpoints


def test_make_test_portable_tries_other_cpu_settings_side_by_side():
    passes = notebook_passes("test-portable")
    assert len(passes) == 2 and all(all(flag in p for flag in NBVAL_FLAGS) for p in passes)
    assert all(re.search(r"(^|\s)OMP_NUM_THREADS=1\s", p) for p in passes)
    assert sum(bool(re.search(r"(^|\s)ATEN_CPU_CAPABILITY=default\s", p)) for p in passes) == 1
    folders = [re.search(r"PVS_OUTPUTS=(\S+)", p).group(1) for p in passes]
    assert len(set(folders)) == 2  # side by side, each with its own checkpoints


def test_ci_runs_make_test_then_the_portable_passes():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-2:] == ["make test", "make test-portable"]


def test_the_comparison_is_number_aware_in_every_pytest_run():
    conftest = (ROOT / "conftest.py").read_text()
    assert 'pytest_plugins = ["nbval_numbers"]' in conftest
