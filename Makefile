# One entry point for routine tasks; CI runs `scripts/test.sh` (= make test).
.PHONY: test test-fast lint demo bench-core bench-python

test:
	./scripts/test.sh

test-fast:
	./scripts/test.sh -m "not slow"

lint:
	.venv/bin/ruff check src tests benchmarks examples
	.venv/bin/ruff format --check src tests benchmarks examples
	.venv/bin/mypy

demo:
	./scripts/demo.sh

bench-core:
	.venv/bin/python benchmarks/tiny_vs_peers.py

bench-python:
	.venv/bin/python benchmarks/python_models.py
