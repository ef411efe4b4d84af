"""Benchmarks behind `perception3d bench SUITE`: timed runs whose figures are recorded in benchmarks/results/.
Tests never assert timings; these are the place for them."""
