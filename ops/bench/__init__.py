"""Benchmarks: ``python -m ops.bench NAME [--quick]`` (see :mod:`ops.bench.harness`)."""
