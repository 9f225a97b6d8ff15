"""Benchmarks: `make bench` writes JSON under bench/results/."""
