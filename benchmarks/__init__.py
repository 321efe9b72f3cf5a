"""Benchmarks: run ``make bench`` (see docs/benchmarks.md)."""
