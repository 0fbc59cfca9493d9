"""Benchmarks that print figures (never tests): ``python -m bench --help``."""
