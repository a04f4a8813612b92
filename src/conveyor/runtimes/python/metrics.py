"""Custom metrics of Python models (`pb_utils.MetricFamily`), and worker restarts, kept in
the core and rendered on /metrics. Every instance's worker reports its operations here,
so a family is one series per label set whichever instance updated it, as in Triton."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass(slots=True)
class _Family:
    name: str
    description: str
    kind: str  # counter | gauge
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class CustomMetrics:
    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}
        self.restarts: dict[tuple[str, str], int] = {}  # (model, version) -> restarts

    def apply(self, model: str, op: dict[str, Any]) -> None:
        name = str(op.get("name", ""))
        if not _NAME.match(name):
            return
        family = self.families.get(name)
        if family is None:
            kind = "counter" if op.get("kind") == "counter" else "gauge"
            family = self.families[name] = _Family(name, str(op.get("desc", "")), kind)
        if op.get("op") == "family":
            return
        labels = tuple(sorted((str(k), str(v)) for k, v in (op.get("labels") or {}).items()))
        value = float(op.get("v", 0.0))
        current = family.values.get(labels, 0.0)
        if op.get("op") == "inc":
            family.values[labels] = current + value
        elif op.get("op") == "set":
            family.values[labels] = value
        else:  # create
            family.values.setdefault(labels, 0.0)

    def render(self) -> str:
        lines = [
            "# HELP conveyor_python_worker_restarts_total Python model worker processes "
            "restarted after they died or hung",
            "# TYPE conveyor_python_worker_restarts_total counter",
        ]
        for (model, version), n in sorted(self.restarts.items()):
            lines.append(
                f'conveyor_python_worker_restarts_total{{model="{_escape(model)}",'
                f'version="{version}"}} {n}'
            )
        for family in sorted(self.families.values(), key=lambda f: f.name):
            lines.append(f"# HELP {family.name} {_escape(family.description)}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            for labels, value in sorted(family.values.items()):
                rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{family.name}{{{rendered}}} {value:.17g}")
        return "\n".join(lines) + "\n"
