"""Answers the interpreter it runs under (EXECUTION_ENV_PATH picks it)."""

import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        exe = np.array([sys.executable.encode()], dtype=np.object_)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("EXE", exe)]) for _ in requests]
