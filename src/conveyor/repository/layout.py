"""The on-disk layout: REPO/<model>/<version>/<file> plus REPO/<model>/config.{yaml,pbtxt}.

Triton's layout, so an existing Triton repository of ONNX models serves unchanged.
A model directory may hold `config.yaml` (native), `config.yml`, `config.json` or
Triton's `config.pbtxt`; the first found in that order wins. Version directories are
positive integers; anything else in the model directory is ignored.

A model's files stay inside its own directory: `model_path` is the one place a file
named by a config becomes a path, and it refuses one that leaves the version directory
(absolute, `..`, or a symlink pointing out); `check_inside_repository` refuses a model
directory, version directory or config file that is a symlink out of the repository. A
config is data from whoever can call the load API, and a backend may execute the file it
is given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.repository import pbtxt
from conveyor.repository.config import ConfigError, ModelConfig, VersionPolicy, parse_config

CONFIG_FILES = ("config.yaml", "config.yml", "config.json", "config.pbtxt")


@dataclass(slots=True)
class ModelSource:
    name: str
    path: Path
    config_file: Path | None
    versions: list[int]  # every numeric version directory, ascending


def _is_model_dir_name(name: str) -> bool:
    return not name.startswith((".", "_"))


def scan(root: Path) -> dict[str, ModelSource]:
    """Every model directory of the repository (hidden and `_` directories skipped)."""
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {root} is not a directory")
    models = {}
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or not _is_model_dir_name(entry.name):
            continue
        config_file = next((entry / n for n in CONFIG_FILES if (entry / n).is_file()), None)
        versions = sorted(
            int(v.name) for v in entry.iterdir() if v.is_dir() and v.name.isdigit() and int(v.name)
        )
        models[entry.name] = ModelSource(entry.name, entry, config_file, versions)
    return models


def model_names(root: Path) -> list[str]:
    """The names `scan` would find, from one directory listing (no file is opened, no
    model directory is read): cheap enough for the event loop. A repository that cannot
    be listed has no names."""
    try:
        with os.scandir(root) as entries:
            # is_dir() answers from the listing itself, except for a symlink (one stat)
            return sorted(e.name for e in entries if _is_model_dir_name(e.name) and e.is_dir())
    except OSError:
        return []


def _inside(path: Path, base: Path) -> bool:
    """Whether `path`, symlinks followed, is `base` (symlinks followed) or below it."""
    try:
        return path.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return False


def model_path(version_dir: Path, filename: str, what: str = "default_model_filename") -> Path:
    """The path of a file a config names inside a version directory (`what` is the config
    field, for the message). Raises ConfigError when the file would leave the directory:
    an absolute path, a `..` that climbs out, or a symlink that resolves outside it."""
    path = version_dir / filename
    if Path(filename).is_absolute() or not _inside(path, version_dir):
        raise ConfigError(f"{what} {filename!r} leaves the model's version directory: refused")
    return path


def check_inside_repository(root: Path, path: Path) -> None:
    """Raises ConfigError when a model directory, version directory or config file (a
    symlink, say) resolves outside the repository root."""
    if not _inside(path, root):
        raise ConfigError(
            f"{path} leaves the model repository {root} (it is a link to "
            f"{os.path.realpath(path)}): refused"
        )


def read_config(source: ModelSource) -> ModelConfig:
    """Parse the model's config file (or an empty one, completed later from the model)."""
    raw: Any = {}
    if source.config_file is not None:
        text = source.config_file.read_text()
        try:
            if source.config_file.suffix == ".pbtxt":
                raw = pbtxt.loads(text)
            elif source.config_file.suffix == ".json":
                raw = json.loads(text)
            else:
                raw = yaml.safe_load(text) or {}
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"{source.config_file.name} is not valid: {exc}") from None
    if (
        isinstance(raw, dict)
        and not raw.get("backend")
        and not raw.get("platform")
        and not raw.get("default_model_filename")
        and source.versions
    ):
        # no config naming the runtime: the model file tells (a model.py makes a
        # python model, as in Triton; model.onnx stays the default)
        latest = source.path / str(source.versions[-1])
        for filename, backend in _DETECTED:
            if (latest / filename).exists() and (
                backend == "python" or not (latest / "model.onnx").exists()
            ):
                raw = {**raw, "backend": backend}
                if filename == "model.pt2":
                    raw["default_model_filename"] = filename
                break
    return parse_config(raw, source.name)


_DETECTED = (
    ("model.py", "python"),
    ("model.pt", "pytorch"),
    ("model.pt2", "pytorch"),
    ("model.savedmodel", "tensorflow"),
    ("model.xml", "openvino"),
)


Fingerprint = tuple[object, ...]


def fingerprint(source: ModelSource) -> Fingerprint:
    """What poll mode compares: the config file and every file of every version directory
    (name, size, modification time)."""

    def stat(path: Path) -> tuple[str, int, int]:
        st = path.stat()
        return (path.name, st.st_size, st.st_mtime_ns)

    config = stat(source.config_file) if source.config_file else None
    versions = []
    for v in source.versions:
        vdir = source.path / str(v)
        files = sorted(stat(f) for f in vdir.rglob("*") if f.is_file())
        versions.append((v, tuple(files)))
    return (config, tuple(versions))


def select_versions(policy: VersionPolicy, available: list[int]) -> list[int]:
    if policy.kind == "all":
        return list(available)
    if policy.kind == "specific":
        missing = sorted(set(policy.versions) - set(available))
        if missing:
            raise ConfigError(f"version_policy names versions {missing} that are not on disk")
        return sorted(policy.versions)
    return available[-policy.num_versions :]
