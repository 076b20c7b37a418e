"""`make bench`: the figures that keep the series fast and exact (see benchmarks/run.py)."""
