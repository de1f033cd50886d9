"""Benchmarks: what a Cellosign secret costs against the engine's own floor, and
``validate`` against check-jsonschema.

    .venv/bin/python -m tests.bench [--quick] [--json PATH]

prints a markdown table and writes every sample as JSON (default
``.pulumi/bench.json``). Not a test: nothing here asserts a speed
(``tests/test_bench_smoke.py`` only proves that the pieces run).
"""
