#!/bin/sh
# The container image's two steps, in one script the Dockerfile runs (and the test suite
# runs in a fresh virtualenv, as no Docker engine runs on the build machines):
#
#   conveyor-image.sh install SRC [EXTRAS]   venv at $CONVEYOR_HOME (default /opt/conveyor)
#                                            with the package from SRC and its extras
#   conveyor-image.sh start [FLAGS...]       exec conveyor serve $CONVEYOR_REPOSITORY
#                                            (default /models) with the flags the
#                                            CONVEYOR_* variables below give, then FLAGS
#
# start: CONVEYOR_HTTP_PORT (8000), CONVEYOR_GRPC_PORT (8001), CONVEYOR_METRICS_PORT
# (8002), CONVEYOR_MODEL_CONTROL_MODE (none), CONVEYOR_EXIT_TIMEOUT_SECS (30),
# CONVEYOR_LOG_FORMAT (json), CONVEYOR_AUTH_TOKEN_FILE / CONVEYOR_CONTROL_TOKEN_FILE and
# CONVEYOR_TLS_CERT_FILE / CONVEYOR_TLS_KEY_FILE when set. `exec`: conveyor is the
# process the container's SIGTERM reaches (it drains, then exits 0).
set -eu
HOME_DIR=${CONVEYOR_HOME:-/opt/conveyor}

case "${1:-}" in
install)
    src=${2:?usage: conveyor-image.sh install SRC [EXTRAS]}
    extras=${3:-}
    python3 -m venv "$HOME_DIR"
    # (the image sets PIP_NO_CACHE_DIR=1: no cache left in a layer)
    if [ -n "$extras" ]; then
        "$HOME_DIR/bin/pip" install --disable-pip-version-check -q "$src[$extras]"
    else
        "$HOME_DIR/bin/pip" install --disable-pip-version-check -q "$src"
    fi
    "$HOME_DIR/bin/conveyor" --version
    ;;
start)
    shift
    # each prepended, so that FLAGS given on the command line come last and win
    if [ -n "${CONVEYOR_TLS_KEY_FILE:-}" ]; then set -- --tls-key-file "$CONVEYOR_TLS_KEY_FILE" "$@"; fi
    if [ -n "${CONVEYOR_TLS_CERT_FILE:-}" ]; then set -- --tls-cert-file "$CONVEYOR_TLS_CERT_FILE" "$@"; fi
    if [ -n "${CONVEYOR_CONTROL_TOKEN_FILE:-}" ]; then
        set -- --control-token-file "$CONVEYOR_CONTROL_TOKEN_FILE" "$@"
    fi
    if [ -n "${CONVEYOR_AUTH_TOKEN_FILE:-}" ]; then
        set -- --auth-token-file "$CONVEYOR_AUTH_TOKEN_FILE" "$@"
    fi
    set -- \
        --http-port "${CONVEYOR_HTTP_PORT:-8000}" \
        --grpc-port "${CONVEYOR_GRPC_PORT:-8001}" \
        --metrics-port "${CONVEYOR_METRICS_PORT:-8002}" \
        --model-control-mode "${CONVEYOR_MODEL_CONTROL_MODE:-none}" \
        --exit-timeout-secs "${CONVEYOR_EXIT_TIMEOUT_SECS:-30}" \
        --log-format "${CONVEYOR_LOG_FORMAT:-json}" \
        "$@"
    exec "$HOME_DIR/bin/conveyor" serve "${CONVEYOR_REPOSITORY:-/models}" "$@"
    ;;
ready)
    # the image's HEALTHCHECK: readiness on the HTTP port (a 200 only when serving); over
    # TLS when the server has it (loopback: the certificate is not checked)
    scheme=http
    if [ -n "${CONVEYOR_TLS_CERT_FILE:-}" ]; then scheme=https; fi
    exec "$HOME_DIR/bin/python" -c "import ssl, sys, urllib.request
url = '$scheme://127.0.0.1:${CONVEYOR_HTTP_PORT:-8000}/v2/health/ready'
try:
    urllib.request.urlopen(url, timeout=3, context=ssl._create_unverified_context())
except Exception as exc:
    sys.exit(f'not ready: {exc}')"
    ;;
*)
    echo "usage: conveyor-image.sh install SRC [EXTRAS] | start [FLAGS...] | ready" >&2
    exit 2
    ;;
esac
