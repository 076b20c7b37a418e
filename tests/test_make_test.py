"""`make test` is what a learner runs: the unit tests and every notebook once, one PyTorch thread
per job, on this CPU's own kernels; `make test-portable` (run by CI after it) repeats the notebooks
under other CPU settings. Read from `make -n`, which prints every command without running it."""

import json
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBVAL_FLAGS = ("--nbval ", "--nbval-current-env", "--nbval-sanitize-with tests/nbval_sanitize.cfg")
NOTEBOOKS = ([str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))]
             + [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("notebooks/appendix/*.ipynb"))])
ZH_EXECUTED = "zh/notebooks/05_inference.ipynb"


def make_env() -> dict:
    # a clean environment: under `make test` itself, make's own variables (and the ones it passes
    # on from its command line) would leak in
    leaking = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "BUILD", "JOBS", "PASS", "PASS_ENV")
    return {k: v for k, v in os.environ.items() if k not in leaking}


def planned(target: str, *variables: str) -> list[str]:
    out = subprocess.run(["make", "-n", "--no-print-directory", target, *variables], cwd=ROOT, env=make_env(),
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def notebook_runs(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"pytest .*--nbval\s", line)]


def notebooks_of(run: str) -> list[str]:
    return re.findall(r"\S+\.ipynb", run)


def loads_04s_checkpoints(notebook: str) -> bool:
    cells = json.loads((ROOT / notebook).read_text())["cells"]
    return any("load_or_train(" in "".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


def check_pooled_pass(runs: list[str], environment: str, folder: str):
    """Four groups that together run every notebook (and the Chinese 05) exactly once, each in name
    order, all with ENVIRONMENT and the checkpoints of one fresh folder; 04 alone and first."""
    assert len(runs) == 4
    for run in runs:
        assert all(flag in run for flag in NBVAL_FLAGS) and "--nbval-lax" not in run
        assert re.search(rf'(^|\s){environment} PVS_OUTPUTS="\S*/{folder}" ', run)
        english = [nb for nb in notebooks_of(run) if nb != ZH_EXECUTED]
        assert english and english == sorted(english, key=NOTEBOOKS.index)  # never an empty group
    everything = [nb for run in runs for nb in notebooks_of(run)]
    assert sorted(everything) == sorted(NOTEBOOKS + [ZH_EXECUTED])
    assert notebooks_of(runs[0]) == ["notebooks/04_full_parameter_training.ipynb"]


def test_make_test_runs_the_units_and_every_notebook_once_one_thread_per_job():
    lines = planned("test")
    units = [line for line in lines if "-m pytest" in line and "--nbval" not in line]
    assert len(units) == 2 and "--doctest-modules helpers" in units[0]
    assert all(line.startswith("OMP_NUM_THREADS=1 ") for line in units)
    runs = notebook_runs(lines)
    check_pooled_pass(runs, "OMP_NUM_THREADS=1", "build/native-outputs")
    assert not any("ATEN_CPU_CAPABILITY" in run for run in runs)
    assert re.search(r"rm -rf build/native-outputs build/native-failed .*mkdir -p build/native-outputs", lines[0])


def test_what_loads_04s_checkpoints_runs_after_04_one_group_at_a_time():
    """The groups are found by what `make -n GROUP` runs first: its prerequisites."""
    loaders = {nb for nb in NOTEBOOKS if loads_04s_checkpoints(nb)}
    assert "notebooks/05_inference.ipynb" in loaders and "notebooks/04_full_parameter_training.ipynb" not in loaders
    before = {}
    for group in ("nb-group-01-03", "nb-group-05-06", "nb-group-07"):
        *earlier, own = notebook_runs(planned(group, "PASS=x"))
        before[group] = [notebooks_of(run) for run in earlier]
        if loaders & set(notebooks_of(own)):
            assert ["notebooks/04_full_parameter_training.ipynb"] in before[group]
    assert before["nb-group-01-03"] == []  # starts beside 04
    assert len(before["nb-group-07"]) == 2  # after 05-06, which is after 04


def test_the_unit_tests_wait_for_a_group_only_with_two_jobs_or_fewer():
    def first_units(jobs):
        order = [line for line in planned("pooled-units-a", "PASS=x", f"JOBS={jobs}") if "-m pytest" in line]
        return "--nbval" not in order[0]
    assert not first_units(2) and first_units(4)


FAKE_PYTHON = """#!/bin/sh
# a stand-in for the venv's python: logs its arguments, fails when they contain $FAIL
echo "$*" >> "$LOG"
if [ -n "$FAIL" ]; then case "$*" in *"$FAIL"*) exit 1;; esac; fi
exit 0
"""


def run_make_with_fake_python(tmp_path, target: str, fail: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    fake, log, stamp = tmp_path / "python", tmp_path / "runs.log", tmp_path / "installed"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    stamp.touch()
    log.write_text("")
    out = subprocess.run(["make", "--no-print-directory", target, f"PY={fake}", f"STAMP={stamp}", f"BUILD={tmp_path}"],
                         cwd=ROOT, env={**make_env(), "LOG": str(log), "FAIL": fail},
                         capture_output=True, text=True, timeout=120)
    return out, log.read_text().splitlines()


def test_a_failure_fails_make_test_and_everything_else_still_runs(tmp_path):
    out, ran = run_make_with_fake_python(tmp_path, "test", fail="04_full_parameter")
    assert out.returncode != 0 and "failed (the reports are above): nb-group-04\n" in out.stdout
    assert len(ran) == 6  # four groups and two unit halves
    out, ran = run_make_with_fake_python(tmp_path, "test", fail="--doctest-modules")
    assert out.returncode != 0 and "failed (the reports are above): pooled-units-a\n" in out.stdout
    out, ran = run_make_with_fake_python(tmp_path, "test")  # the failures before are forgotten
    assert out.returncode == 0 and len(ran) == 6


def test_a_failure_fails_the_portable_pass_and_make_n_changes_nothing(tmp_path):
    out, ran = run_make_with_fake_python(tmp_path, "test-notebooks-portable", fail="04_full_parameter")
    assert out.returncode != 0 and "failed (the reports are above): nb-group-04\n" in out.stdout
    assert len(ran) == 4 and (tmp_path / "portable-outputs").is_dir()
    # `make -n` starts the inner make for real (to print its commands): it must not see the failure
    # just recorded, nor delete anything
    dry = subprocess.run(["make", "-n", "--no-print-directory", "test-notebooks-portable", f"BUILD={tmp_path}"],
                         cwd=ROOT, env=make_env(), capture_output=True, text=True)
    assert dry.returncode == 0 and (tmp_path / "portable-failed").read_text() == "nb-group-04\n"


def test_make_elsewhere_says_it_found_no_notebooks(tmp_path):
    out = subprocess.run(["make", "-n", "-f", str(ROOT / "Makefile"), "nb-group-04", "PASS=x"], cwd=tmp_path,
                         env=make_env(), capture_output=True, text=True)
    assert out.returncode != 0 and "no notebooks found" in out.stderr


def test_jobs_must_be_a_whole_number():
    for jobs in ("", "0", "two", "-1"):
        out = subprocess.run(["make", "-n", "test", f"JOBS={jobs}"], cwd=ROOT, env=make_env(),
                             capture_output=True, text=True)
        assert out.returncode != 0 and "JOBS must be a whole number" in out.stderr, jobs
    assert notebook_runs(planned("test", "JOBS=3"))


def test_make_test_portable_tries_the_portable_kernels_then_the_machines_thread_count():
    lines = planned("test-portable")
    runs = notebook_runs(lines)
    check_pooled_pass(runs[:4], "ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1", "build/portable-outputs")
    (defaults,) = runs[4:]
    assert all(flag in defaults for flag in NBVAL_FLAGS)
    assert "OMP_NUM_THREADS" not in defaults and "ATEN_CPU_CAPABILITY" not in defaults
    assert defaults.rstrip().endswith(f" notebooks {ZH_EXECUTED}")  # every notebook, in place, one process
    assert re.search(r'PVS_OUTPUTS="\S*/build/defaults-outputs" ', defaults)


def test_ci_runs_make_test_then_the_portable_passes():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-2:] == ["make test", "make test-portable"]


def test_the_comparison_is_number_aware_in_every_pytest_run():
    conftest = (ROOT / "conftest.py").read_text()
    assert 'pytest_plugins = ["nbval_numbers"]' in conftest
