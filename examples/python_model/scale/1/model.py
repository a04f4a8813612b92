"""y = k * x, k from the config's parameters. Nothing to import but numpy."""

from __future__ import annotations

import numpy as np


class Model:
    def load(self, context) -> None:  # type: ignore[no-untyped-def]
        self.k = np.float32(context.parameters["k"])

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]  # every request's rows, concatenated
        if not np.isfinite(x).all():
            raise ValueError("x must be finite")  # fails this request alone
        return {"y": x * self.k}
