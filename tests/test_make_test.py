"""`make test` checks every notebook twice, as the README says: once with the kernels PyTorch picks
for this CPU and once with its portable ones, each with one PyTorch thread, each notebook exactly
once per pass and in order (05-07 use what 04 saves), beside the unit tests. Read from
`make -n test`, which prints every command of the six jobs without running them."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERIES = sorted(path.name for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))

import parallel_jobs  # noqa: E402


def planned_commands() -> list[str]:
    # a clean environment: under `make test` itself, make's own variables would leak in
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ATEN_CPU_CAPABILITY")}
    out = subprocess.run(["make", "-n", "--no-print-directory", "test"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_each_pass_runs_every_notebook_once_in_order_on_one_thread():
    assert len(SERIES) >= 7
    nbval = [line for line in planned_commands() if re.search(r"--nbval\s", line)]
    passes = {"native": [], "portable": []}
    for command in nbval:
        assert "--nbval-current-env" in command and "--nbval-sanitize-with" in command
        assert "--nbval-lax" not in command
        assert re.search(r"(^|\s)OMP_NUM_THREADS=1\s", command)
        portable = re.search(r"(^|\s)ATEN_CPU_CAPABILITY=default\s", command) is not None
        notebooks = re.findall(r"notebooks/(\S+\.ipynb)", command.split("pytest", 1)[1])
        assert notebooks == sorted(notebooks)  # 04 before the notebooks that load its checkpoints
        passes["portable" if portable else "native"] += notebooks
    for kernels, notebooks in passes.items():
        assert sorted(notebooks) == SERIES, kernels
    assert len(nbval) == 4
    work_dirs = [re.search(r"cd (build/\S+) &&", command).group(1) for command in nbval]
    assert len(set(work_dirs)) == len(nbval)  # no two jobs share ../outputs


def test_make_test_runs_the_unit_tests_and_ci_runs_make_test():
    units = [line for line in planned_commands() if re.search(r"-m pytest (tests\b|-q tests/)", line)]
    assert len(units) == 2 and all(re.search(r"(^|\s)OMP_NUM_THREADS=1\s", line) for line in units)
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_parallel_jobs_is_bounded_by_cpus_memory_and_the_job_count(monkeypatch):
    monkeypatch.setattr(parallel_jobs, "usable_cpus", lambda: 16)
    monkeypatch.setattr(parallel_jobs, "physical_memory", lambda: 64 * parallel_jobs.GB)
    assert parallel_jobs.parallel_jobs(6) == 6
    monkeypatch.setattr(parallel_jobs, "physical_memory", lambda: 8 * parallel_jobs.GB)
    assert parallel_jobs.parallel_jobs(6) == 4
    monkeypatch.setattr(parallel_jobs, "usable_cpus", lambda: 2)
    assert parallel_jobs.parallel_jobs(6) == 2
    monkeypatch.setattr(parallel_jobs, "physical_memory", lambda: parallel_jobs.GB)
    assert parallel_jobs.parallel_jobs(6) == 1
    monkeypatch.setattr(parallel_jobs, "physical_memory", lambda: None)
    assert parallel_jobs.parallel_jobs(6) == 2
