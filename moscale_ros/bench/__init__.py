"""Benchmarks behind ``moscale bench``: one module per area, each with ``run(args) -> dict``."""
