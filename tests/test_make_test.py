"""`make test` checks every notebook twice, as the README says: once with this machine's own
kernels and once with PyTorch's portable ones, each on one thread, each notebook exactly once
per pass (a notebook added later included). Read from `make -n`, which prints the commands
without running them."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))


def planned_commands(*targets: str) -> list[str]:
    out = subprocess.run(["make", "-n", "--no-print-directory", *targets], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if "--nbval" in line]


def notebooks_in(commands: list[str]) -> list[str]:
    return sorted(name for command in commands for name in re.findall(r"notebooks/(\S+\.ipynb)", command))


def test_each_pass_runs_every_notebook_once_on_one_thread():
    assert len(NOTEBOOKS) >= 7
    for kernels, pass_target in (("native", "test-notebooks-native"), ("portable", "test-notebooks-portable")):
        commands = planned_commands(pass_target)
        assert notebooks_in(commands) == NOTEBOOKS, kernels
        assert all("OMP_NUM_THREADS=1" in command for command in commands)
        portable = ["ATEN_CPU_CAPABILITY=default" in command for command in commands]
        assert portable == [kernels == "portable"] * len(commands)
        assert len({re.search(r"cd (build/\S+)", command).group(1) for command in commands}) == len(commands)


def test_make_test_runs_both_passes_and_the_unit_tests():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest: setup\n", 1)[1].split("\n\n", 1)[0]
    for half in ("native-a", "native-b", "portable-a", "portable-b"):
        assert f"test-notebooks-{half}" in recipe
    assert "test-units-a" in recipe and "test-units-b" in recipe
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
