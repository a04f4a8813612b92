#!/usr/bin/env bash
# Set up, write the demo model repository (built offline, fixed seeds), serve it, and
# send requests through it with curl and with Python. Then keep serving until Ctrl-C
# (DEMO_ONESHOT=1 stops after the requests).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PORT=${PORT:-8000}
REPO=${DEMO_REPO:-.demo-repo}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e . 2>&1 \
  | grep -v "^WARNING: Location 'file:" || true

.venv/bin/conveyor demo-repo "$REPO"
.venv/bin/conveyor serve "$REPO" --host 127.0.0.1 --http-port "$PORT" \
  --grpc-port "$((PORT + 1))" --metrics-port "$((PORT + 2))" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  if .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/health/ready', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 $SERVER 2>/dev/null || { echo "the server exited; see its log above" >&2; exit 1; }
  sleep 0.2
done

echo
echo "== curl: POST /v2/models/simple/infer (INT32 add/sub, JSON)"
if command -v curl >/dev/null; then
  curl -sS -X POST "http://127.0.0.1:$PORT/v2/models/simple/infer" \
    -H 'content-type: application/json' \
    -d '{"inputs":[
          {"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
          {"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
  echo
else
  echo "(curl is not installed: skipped)"
fi
echo
echo "== python examples/client.py (JSON and binary tensors)"
.venv/bin/python examples/client.py --url "http://127.0.0.1:$PORT"

if [ "${DEMO_ONESHOT:-0}" = "1" ]; then
  exit 0
fi
echo
echo "Serving $REPO: KServe V2 REST on http://127.0.0.1:$PORT, gRPC on 127.0.0.1:$((PORT + 1)),"
echo "Prometheus metrics on http://127.0.0.1:$((PORT + 2))/metrics. Press Ctrl-C to stop."
wait $SERVER
