"""Triton python-backend model running an ONNX file with ONNX Runtime (Triton 2.51 as
bundled in nvidia-pytriton has no ONNX Runtime backend). The requests Triton's dynamic
batcher hands over are run as one batch and split back.

Parameters (config.pbtxt): `onnx_file` (next to this file), `intra_op_thread_count`.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_thread_count", "1"))
        opts.inter_op_num_threads = 1
        path = Path(__file__).with_name(params.get("onnx_file", "model.onnx"))
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]

    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        (y,) = self.session.run(None, {self.input: x})
        answers, start = [], 0
        for part in xs:
            end = start + part.shape[0]
            tensor = pb_utils.Tensor(self.output, np.ascontiguousarray(y[start:end]))
            answers.append(pb_utils.InferenceResponse([tensor]))
            start = end
        return answers
