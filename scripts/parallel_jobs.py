"""How many of `make test`'s single-threaded jobs to run at once: prints one integer.

One job per CPU this process may use (its affinity mask, and a cgroup v2 CPU quota where one is
set, as in a container), at most one per 2 GB of physical memory (six jobs took about 7 GB
together here), and at most ``--max`` (the number of jobs). Standard library only: the Makefile
runs it with the system Python.
"""

import argparse
import math
import os
from pathlib import Path

GB = 1024**3
MEMORY_PER_JOB = 2 * GB


def usable_cpus() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota_file = Path("/sys/fs/cgroup/cpu.max")  # "max 100000" (no quota) or "200000 100000" (2 CPUs)
    try:
        quota, period = quota_file.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def parallel_jobs(max_jobs: int) -> int:
    jobs = min(max_jobs, usable_cpus())
    memory = physical_memory()
    if memory is not None:
        jobs = min(jobs, memory // MEMORY_PER_JOB)
    return max(1, jobs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=6, help="the number of jobs (default: 6)")
    print(parallel_jobs(parser.parse_args().max))
