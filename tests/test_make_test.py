"""`make test` is what a learner runs: the unit tests and every notebook once, one PyTorch thread
per job, on this CPU's own kernels; `make test-portable` (run by CI after it) repeats the notebooks
under other CPU settings. Read from `make -n`, which prints every command without running it."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBVAL_FLAGS = ("--nbval ", "--nbval-current-env", "--nbval-sanitize-with tests/nbval_sanitize.cfg")
NOTEBOOKS = ([str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))]
             + [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("notebooks/appendix/*.ipynb"))])
ZH_EXECUTED = "zh/notebooks/05_inference.ipynb"
# what loads the checkpoints notebook 04 saves
AFTER_04 = re.compile(r"notebooks/(appendix/)?0[5-9]_|notebooks/appendix/04_")


def make_env() -> dict:
    # a clean environment: under `make test` itself, make's own variables would leak in
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def planned(target: str, *variables: str) -> list[str]:
    out = subprocess.run(["make", "-n", "--no-print-directory", target, *variables], cwd=ROOT, env=make_env(),
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def notebook_runs(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"pytest .*--nbval\s", line)]


def notebooks_of(run: str) -> list[str]:
    return re.findall(r"\S+\.ipynb", run)


def check_pooled_pass(runs: list[str], environment: str, folder: str):
    """Four groups that together run every notebook (and the Chinese 05) exactly once, each in name
    order, all with ENVIRONMENT and the checkpoints of one fresh folder; 04 alone and first."""
    assert len(runs) == 4
    for run in runs:
        assert all(flag in run for flag in NBVAL_FLAGS) and "--nbval-lax" not in run
        assert re.search(rf"(^|\s){environment} PVS_OUTPUTS=\S*/{folder} ", run)
        english = [nb for nb in notebooks_of(run) if nb != ZH_EXECUTED]
        assert english and english == sorted(english, key=NOTEBOOKS.index)  # never an empty group
    everything = [nb for run in runs for nb in notebooks_of(run)]
    assert sorted(everything) == sorted(NOTEBOOKS + [ZH_EXECUTED])
    assert notebooks_of(runs[0]) == ["notebooks/04_full_parameter_training.ipynb"]
    assert not any(AFTER_04.search(nb) for nb in notebooks_of(runs[1]))  # runs beside 04


def test_make_test_runs_the_units_and_every_notebook_once_one_thread_per_job():
    lines = planned("test")
    units = [line for line in lines if "-m pytest" in line and "--nbval" not in line]
    assert len(units) == 2 and "--doctest-modules helpers" in units[0]
    assert all(line.startswith("OMP_NUM_THREADS=1 ") for line in units)
    runs = notebook_runs(lines)
    check_pooled_pass(runs, "OMP_NUM_THREADS=1", "build/native-outputs")
    assert not any("ATEN_CPU_CAPABILITY" in run for run in runs)
    assert re.search(r"rm -rf build/native-outputs .*mkdir -p build/native-outputs", lines[0])  # fresh checkpoints


def test_what_loads_04s_checkpoints_waits_for_04():
    for group in ("nb-group-05-06", "nb-group-after-06"):
        runs = notebook_runs(planned(group, "PASS=x"))
        assert len(runs) == 2 and notebooks_of(runs[0]) == ["notebooks/04_full_parameter_training.ipynb"]
        assert all(AFTER_04.search(nb) or nb == ZH_EXECUTED for nb in notebooks_of(runs[1]))


def test_a_failure_in_04_still_runs_the_notebooks_after_it_and_fails_the_pass(tmp_path):
    # A stand-in for the venv's python that fails on notebook 04 and logs every other run.
    fake = tmp_path / "python"
    log = tmp_path / "runs.log"
    fake.write_text(f'#!/bin/sh\ncase "$*" in *04_full_parameter*) exit 1;; esac\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    stamp = tmp_path / "installed"
    stamp.touch()
    out = subprocess.run(["make", "--no-print-directory", "test-notebooks-portable", f"PY={fake}", f"STAMP={stamp}",
                          f"BUILD={tmp_path}"],
                         cwd=ROOT, env=make_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "failed (the reports are above): nb-group-04\n" in out.stdout
    assert (tmp_path / "portable-outputs").is_dir()  # the checkpoints' folder was made where BUILD says
    ran = log.read_text().splitlines()
    assert len(ran) == 3 and any("notebooks/05_inference.ipynb" in run for run in ran)
    assert any("notebooks/07_packing.ipynb" in run for run in ran)
    # `make -n` starts the inner make for real (to print its commands): it must not see the failure
    # just recorded, nor delete anything
    dry = subprocess.run(["make", "-n", "--no-print-directory", "test-notebooks-portable", f"PY={fake}",
                          f"STAMP={stamp}", f"BUILD={tmp_path}"], cwd=ROOT, env=make_env(), capture_output=True, text=True)
    assert dry.returncode == 0 and (tmp_path / "portable-failed").read_text() == "nb-group-04\n"


def test_make_test_portable_tries_the_portable_kernels_then_the_machines_thread_count():
    lines = planned("test-portable")
    runs = notebook_runs(lines)
    check_pooled_pass(runs[:4], "ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1", "build/portable-outputs")
    (defaults,) = runs[4:]
    assert all(flag in defaults for flag in NBVAL_FLAGS)
    assert "OMP_NUM_THREADS" not in defaults and "ATEN_CPU_CAPABILITY" not in defaults
    assert defaults.rstrip().endswith(f" notebooks {ZH_EXECUTED}")  # every notebook, in place, one process
    assert "PVS_OUTPUTS=" in defaults and "build/defaults-outputs" in defaults


def test_ci_runs_make_test_then_the_portable_passes():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-2:] == ["make test", "make test-portable"]


def test_the_comparison_is_number_aware_in_every_pytest_run():
    conftest = (ROOT / "conftest.py").read_text()
    assert 'pytest_plugins = ["nbval_numbers"]' in conftest
