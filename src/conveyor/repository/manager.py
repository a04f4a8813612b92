"""Loads the models of a repository and answers "which model version serves this?".

A model that fails to load (bad config, broken file, config contradicting the model, a
file or directory leaving the repository) is recorded with its reason and the other
models still load.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.batching.scheduler import Scheduler
from conveyor.errors import (
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
    NotFoundError,
    UnavailableError,
)
from conveyor.repository.autocomplete import DEFAULT_MAX_BATCH_SIZE, complete
from conveyor.repository.config import ConfigError, ModelConfig, parse_config
from conveyor.repository.layout import (
    Fingerprint,
    ModelSource,
    check_inside_repository,
    fingerprint,
    model_names,
    model_path,
    read_config,
    scan,
    select_versions,
)
from conveyor.repository.warmup import warm_up
from conveyor.runtimes.base import Backend, Runtime

log = logging.getLogger("conveyor.repository")

READY, UNAVAILABLE = "READY", "UNAVAILABLE"


def unknown_model(name: str) -> ModelNotFoundError:
    # Triton's words (model_repository_manager.cc): its example clients match on them
    return ModelNotFoundError(f"Request for unknown model: '{name}' is not found")


@dataclass(slots=True)
class ModelVersion:
    name: str
    version: int
    config: ModelConfig
    scheduler: Scheduler
    load_seconds: float = 0.0  # warm-up included
    warmup_seconds: float = 0.0
    version_str: str = ""
    cache: dict[str, Any] = field(default_factory=dict)  # derived per-version state

    def __post_init__(self) -> None:
        self.version_str = str(self.version)


@dataclass(slots=True)
class ModelEntry:
    name: str
    config: ModelConfig | None = None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    state: str = UNAVAILABLE
    reason: str = ""

    def default_version(self) -> ModelVersion | None:
        return self.versions[max(self.versions)] if self.versions else None

    def route(self) -> ModelVersion | None:
        """The version for a request that names none: drawn by `traffic_split` weights
        among the loaded versions, else the highest."""
        split = self.config.traffic_split if self.config else None
        if split:
            choices = [(self.versions[v], w) for v, w in split.items() if v in self.versions and w]
            if choices:
                return random.choices([c[0] for c in choices], [c[1] for c in choices])[0]
        return self.default_version()


def check_routing(labels: dict[str, int], split: dict[int, float], versions: list[int]) -> None:
    """Labels and traffic weights may only name versions that are loaded."""
    for label, v in labels.items():
        if v not in versions:
            raise ConfigError(
                f"version label '{label}' names version {v}, which is not loaded "
                f"(loaded: {versions}; see version_policy)"
            )
    for v in split:
        if v not in versions:
            raise ConfigError(
                f"traffic_split names version {v}, which is not loaded (loaded: {versions})"
            )


def _check_warmup_files(config: ModelConfig, model_dir: Path) -> None:
    """Warm-up data files are read from the model's `warmup/` directory, and only there."""
    for sample in config.model_warmup:
        for spec in sample.inputs.values():
            if spec.source == "file":
                model_path(model_dir / "warmup", spec.file, "model_warmup input_data_file")


def _is_ensemble(source: ModelSource) -> bool:
    try:
        return read_config(source).platform in ("ensemble", "pipeline")
    except Exception:  # an unreadable config fails when the model loads, with its reason
        return False


class ModelRepository:
    def __init__(
        self,
        root: Path,
        backends: dict[str, Backend],
        default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        histograms: bool = True,
    ) -> None:
        self.root = root
        self.backends = backends
        self.default_max_batch_size = default_max_batch_size
        self.histograms = histograms  # latency histograms for /metrics
        self.models: dict[str, ModelEntry] = {}
        # poll mode: what each model's files looked like when it was loaded, and what
        # they looked like at the last poll (a change is acted on once it holds still)
        self.loaded_prints: dict[str, Fingerprint] = {}
        self._seen_prints: dict[str, Fingerprint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def load(self, names: list[str] | None = None) -> None:
        """Load every model (or only `names`); blocking: call before serving."""
        sources = scan(self.root)
        if names:
            unknown = sorted(set(names) - set(sources))
            for name in unknown:
                self._publish(ModelEntry(name, reason="no such model in the repository"))
                log.error("model %r: no such model in the repository %s", name, self.root)
            sources = {n: s for n, s in sources.items() if n in names}
        # ensembles last: their steps are checked against the models they name
        for source in sorted(sources.values(), key=_is_ensemble):
            self.loaded_prints[source.name] = fingerprint(source)
            self._publish(self._load_model(source))

    def _publish(self, entry: ModelEntry) -> None:
        # Loading runs off the event loop while the loop reads `models`: replace the dict
        # (one atomic reference swap) instead of mutating the one being read.
        self.models = {**self.models, entry.name: entry}

    def _load_model(
        self, source: ModelSource, override: dict[str, Any] | None = None
    ) -> ModelEntry:
        entry = ModelEntry(source.name)
        try:
            check_inside_repository(self.root, source.path)
            if override is None and source.config_file is not None:
                check_inside_repository(self.root, source.config_file)
            config = (
                read_config(source) if override is None else parse_config(override, source.name)
            )
            backend = self.backends.get(config.backend)
            if backend is None:
                raise ConfigError(
                    f"backend {config.backend!r} is not available "
                    f"(available: {', '.join(sorted(self.backends))})"
                )
            versions = select_versions(config.version_policy, source.versions)
            if not versions:
                raise ConfigError(f"no version directory (e.g. {source.path / '1'}) found")
            check_routing(config.version_labels, config.traffic_split, versions)
            for version in versions:
                entry.versions[version] = self._load_version(
                    backend, config, source.path / str(version), version
                )
            entry.config, entry.state = config, READY
            log.info("model %r loaded: versions %s", source.name, versions)
        except Exception as exc:  # one broken model must not stop the others
            for mv in entry.versions.values():
                mv.scheduler.close()
            entry.versions.clear()
            entry.reason = str(exc) or type(exc).__name__
            log.error("model %r failed to load: %s", source.name, entry.reason)
        return entry

    def _load_version(
        self, backend: Backend, config: ModelConfig, path: Path, version: int
    ) -> ModelVersion:
        start = time.perf_counter()
        runtimes: list[Runtime] = []
        warmup_s = 0.0
        try:
            # before any backend sees the config: no backend may open a file outside
            check_inside_repository(self.root, path)
            model_path(path, config.default_model_filename)
            _check_warmup_files(config, path.parent)
            for i in range(config.instance_count):
                runtime = backend.load(config, path, i)
                runtimes.append(runtime)
                if i == 0:
                    complete(config, runtime.inputs, runtime.outputs, self.default_max_batch_size)
            if config.model_warmup:
                warm_start = time.perf_counter()
                for runtime in runtimes:
                    warm_up(runtime, config.model_warmup, config, path.parent)
                warmup_s = time.perf_counter() - warm_start
        except ConfigError as exc:
            for rt in runtimes:
                rt.close()
            raise ConfigError(f"version {version}: {exc}") from None
        except Exception as exc:
            for rt in runtimes:
                rt.close()
            raise ConfigError(f"version {version}: cannot load {path}: {exc}") from None
        scheduler = Scheduler(config, version, runtimes, histograms=self.histograms)
        if self._loop is not None:
            scheduler.start(self._loop)
        mv = ModelVersion(config.name, version, config, scheduler, time.perf_counter() - start)
        mv.warmup_seconds = warmup_s
        if warmup_s:
            log.info("model %r version %d warmed up in %.3fs", config.name, version, warmup_s)
        return mv

    def model_names(self) -> list[str]:
        """Every model directory of the repository now (one directory listing)."""
        return model_names(self.root)

    def reload(self, name: str, override: dict[str, Any] | None = None) -> ModelEntry | None:
        """Load (or reload) one model beside what serves now, then switch to it at once.
        Returns the entry it replaced, for the caller to drain and close. If the load
        fails, what served keeps serving, and the failure is raised (and kept as the
        entry's reason, so the index shows it). Blocking: run it off the event loop."""
        source = scan(self.root).get(name)
        if source is None:
            raise ModelLoadError(f"failed to load '{name}': no such model in {self.root}")
        self.loaded_prints[name] = fingerprint(source)
        entry = self._load_model(source, override)
        old = self.models.get(name)
        if entry.state != READY:
            if old is not None and old.state == READY:
                old.reason = f"reload failed, previous versions still serve: {entry.reason}"
            else:
                self._publish(entry)
            raise ModelLoadError(f"failed to load '{name}': {entry.reason}")
        self._publish(entry)
        return old

    def set_routing(
        self, name: str, labels: dict[str, int] | None, split: dict[int, float] | None
    ) -> None:
        """Change a model's version labels and/or traffic split, without reloading."""
        entry = self.models.get(name)
        if entry is None or entry.config is None:
            raise unknown_model(name)
        new_labels = entry.config.version_labels if labels is None else labels
        new_split = entry.config.traffic_split if split is None else split
        try:
            check_routing(new_labels, new_split, sorted(entry.versions))
        except ConfigError as exc:
            raise InvalidRequestError(str(exc)) from None
        # two reference swaps: a request sees the old or the new mapping, never half
        entry.config.version_labels = dict(new_labels)
        entry.config.traffic_split = dict(new_split)

    def poll(self) -> tuple[list[str], list[str]]:
        """Poll mode: the models to (re)load and those to unload. A model directory that
        changed since it was loaded is acted on only when it is the same at two polls
        in a row, so a version still being copied in is not picked up. Blocking."""
        sources = scan(self.root)
        prints = {}
        for name, source in sources.items():
            try:
                prints[name] = fingerprint(source)
            except OSError:  # a file vanished mid-scan: look again next time
                continue
        changed = [
            name
            for name, fp in prints.items()
            if fp != self.loaded_prints.get(name) and fp == self._seen_prints.get(name)
        ]
        removed = [
            name for name in self.models if name not in sources and self.models[name].state == READY
        ]
        self._seen_prints = prints
        return changed, removed

    def unload(self, name: str) -> ModelEntry:
        """Stop routing to a model; returns its entry for the caller to drain and close."""
        old = self.models.get(name)
        if old is None:
            raise unknown_model(name)
        self._publish(ModelEntry(name, state=UNAVAILABLE, reason="unloaded"))
        self.loaded_prints.pop(name, None)
        return old

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for entry in self.models.values():
            for mv in entry.versions.values():
                mv.scheduler.start(loop)

    def get(self, name: str, version: str = "") -> ModelVersion:
        entry = self.models.get(name)
        if entry is None:
            raise unknown_model(name)
        if entry.state != READY:
            raise UnavailableError(f"model '{name}' is not ready: {entry.reason}")
        if not version:
            mv = entry.route()
        elif version.isdigit():
            mv = entry.versions.get(int(version))
        else:
            labels = entry.config.version_labels if entry.config else {}
            if version not in labels:
                raise NotFoundError(
                    f"model '{name}' has no version label '{version}'"
                    + (f" (labels: {', '.join(sorted(labels))})" if labels else "")
                )
            mv = entry.versions.get(labels[version])
        if mv is None:
            raise NotFoundError(
                f"unknown version '{version}' of model '{name}' "
                f"(available: {', '.join(map(str, sorted(entry.versions)))})"
            )
        return mv

    def close(self) -> None:
        for entry in self.models.values():
            for mv in entry.versions.values():
                mv.scheduler.close()

    async def drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for entry in self.models.values():
            for mv in entry.versions.values():
                await mv.scheduler.drain(max(0.0, deadline - time.monotonic()))
