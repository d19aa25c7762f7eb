"""Helpers for ``benchmarks/bench_receivers.py``: data sets, receivers, senders, checks.

Each module is small and importable on its own so that the smoke test
(``tests/test_benchmark_smoke.py``) can drive one receiver without the whole harness.
"""
