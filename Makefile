# One entry point for routine tasks; CI runs `scripts/test.sh` (= make test).
.PHONY: test test-fast lint demo bench-core

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
	.venv/bin/python benchmarks/core.py
