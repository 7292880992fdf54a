"""Benchmarks: each bench_<topic>.py has run(quick) -> rows; `python -m bench` prints them all."""
