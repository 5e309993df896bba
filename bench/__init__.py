"""Benchmarks: run with ``uv run python -m bench.<name>``; see bench/README.md."""
