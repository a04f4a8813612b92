#!/usr/bin/env bash
# Run Triton's perf_analyzer (2.51.0, the last build that runs on glibc 2.36), setting it
# up on first use in $CONVEYOR_BENCH_CACHE/perf-analyzer (default /tmp/conveyor-bench):
# a virtualenv with tritonclient[all]==2.51.0 (which ships the binary) and the CUDA
# runtime library it links against, plus Debian's libb64 unpacked beside it (no root
# needed). Arguments go to perf_analyzer unchanged, e.g.
#   scripts/perf_analyzer.sh -m simple -u 127.0.0.1:8000 --concurrency-range 1:8:2
set -euo pipefail
CACHE=${CONVEYOR_BENCH_CACHE:-/tmp/conveyor-bench}
DIR="$CACHE/perf-analyzer"
PYTHON=${PYTHON:-python3}
if [ ! -x "$DIR/venv/bin/perf_analyzer" ] || [ ! -d "$DIR/libb64" ]; then
  mkdir -p "$DIR"
  {
    [ -x "$DIR/venv/bin/python" ] || "$PYTHON" -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q --disable-pip-version-check \
      "tritonclient[all]==2.51.0" nvidia-cuda-runtime-cu12
    (cd "$DIR" && rm -f libb64-0d_*.deb \
      && { apt-get download libb64-0d || { apt-get update -qq && apt-get download libb64-0d; }; } \
      && dpkg -x libb64-0d_*.deb libb64)
  } >"$DIR/setup.log" 2>&1 || { echo "perf_analyzer set-up failed: see $DIR/setup.log" >&2; exit 3; }
fi
CUDART=$(echo "$DIR"/venv/lib/python3*/site-packages/nvidia/cuda_runtime/lib)
export LD_LIBRARY_PATH="$DIR/libb64/usr/lib/x86_64-linux-gnu:$CUDART:${LD_LIBRARY_PATH:-}"
exec "$DIR/venv/bin/perf_analyzer" "$@"
