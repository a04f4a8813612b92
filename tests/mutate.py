"""Seeded mutations of valid request documents: what the fuzz tests send."""

from __future__ import annotations

import numpy as np

VALUES: list[object] = [None, True, 0, -1, 2, 1.5, "", "x", "FP32", [], [1], [-1], ["a"], {}]


def _any(rng: np.random.Generator) -> object:
    return VALUES[rng.integers(len(VALUES))]


def mutations(doc: object, rng: np.random.Generator) -> object:
    """`doc` with members dropped or replaced by a value of any JSON type, list items
    added, and a stray `parameters` here and there (seeded: the same each run)."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            roll = rng.random()
            if roll < 0.1:
                continue  # dropped
            out[key] = _any(rng) if roll < 0.3 else mutations(value, rng)
        if rng.random() < 0.1:
            out["parameters"] = _any(rng)
        return out
    if isinstance(doc, list) and doc and rng.random() < 0.5:
        extra = [_any(rng)] if rng.random() < 0.2 else []
        return [mutations(v, rng) for v in doc] + extra
    return doc
