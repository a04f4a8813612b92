#!/usr/bin/env bash
# Generate the gRPC/protobuf Python modules from proto/ (the one source of truth) into
# src/. With --check, generate into a temporary directory and fail if the committed
# modules differ (run by scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=src
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
"$PY" -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" proto/conveyor/grpc/inference.proto
# The messages go into a private descriptor pool, not protobuf's default one:
# tritonclient registers the same `inference.*` names in the default pool, and both
# must be importable in one process (the tests do that).
sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/_POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = _POOL.AddSerializedFile(/' \
  "$out/conveyor/grpc/inference_pb2.py"
if [ "${1:-}" = "--check" ]; then
  for f in inference_pb2.py inference_pb2.pyi inference_pb2_grpc.py; do
    if ! cmp -s "$out/conveyor/grpc/$f" "src/conveyor/grpc/$f"; then
      echo "src/conveyor/grpc/$f is stale: run scripts/gen_proto.sh" >&2
      exit 1
    fi
  done
fi
