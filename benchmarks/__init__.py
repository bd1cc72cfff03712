"""Benchmarks run by `make bench`: speed and scale figures reported in closing notes."""
