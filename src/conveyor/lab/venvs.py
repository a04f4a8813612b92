"""A virtualenv per peer, created on first use from the package registries with pinned
requirements, under the lab's cache; reused while its requirements are the same."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conveyor.lab.process import PeerError


def _key(requirements: list[str]) -> str:
    text = "\n".join([sys.version, *requirements])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def ensure(cache: Path, name: str, requirements: list[str], say: object = print) -> Path:
    """The virtualenv for `requirements` (its root), created if missing. A failed
    installation is a PeerError holding pip's last lines; it is tried again next run."""
    root = cache / "venvs" / f"{name}-{_key(requirements)}"
    ready = root / ".ready"
    if ready.exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two labs at once install it once
        if ready.exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        say(f"  installing {name} into {root} (once): {' '.join(requirements)}")  # type: ignore[operator]
        t0 = time.perf_counter()
        log = root.parent / f"{root.name}.log"
        base = getattr(sys, "_base_executable", sys.executable)
        with open(log, "wb") as out:
            steps = [
                [base, "-m", "venv", str(root)],
                [
                    str(root / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    *requirements,
                ],
            ]
            for cmd in steps:
                rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
                if rc != 0:
                    lines = log.read_text(errors="replace").strip().splitlines()
                    errors = [line for line in lines if "ERROR" in line] or lines[-3:]
                    raise PeerError(f"installing {name} failed ({log}): {' | '.join(errors[-3:])}")
        freeze = subprocess.run(
            [str(root / "bin" / "python"), "-m", "pip", "freeze"],
            capture_output=True,
            text=True,
            check=False,
        )
        (root / "freeze.txt").write_text(freeze.stdout)
        ready.write_text(f"{time.perf_counter() - t0:.1f}\n")
        say(f"  installed {name} in {time.perf_counter() - t0:.0f} s")  # type: ignore[operator]
    return root


def version_of(root: Path, package: str) -> str | None:
    """The version pip installed of `package` in the virtualenv at `root`."""
    try:
        lines = (root / "freeze.txt").read_text().splitlines()
    except OSError:
        return None
    wanted = package.lower().replace("_", "-")
    for line in lines:
        name, _, version = line.partition("==")
        if name.lower().replace("_", "-") == wanted:
            return version
    return None
