"""TorchServe handler for the lab: a TorchScript model, `.npy` in and out.

Each request body is an FP32 batch saved with `np.save` (content type
application/octet-stream); the requests TorchServe's batcher hands over run as one
batch under `torch.inference_mode` and are split back, one `.npy` answer each.
`LAB_TORCH_THREADS` sets torch's intra-op threads in the worker. (TorchServe loads the
one class this file defines.)
"""

import io
import os

import numpy as np
import torch


class LabNpyHandler:
    def __init__(self):
        self.model = None
        self.initialized = False

    def initialize(self, context):
        threads = os.environ.get("LAB_TORCH_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        model_dir = context.system_properties.get("model_dir")
        serialized = context.manifest["model"]["serializedFile"]
        self.model = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu")
        self.model.eval()
        self.initialized = True

    @staticmethod
    def _payload(row):
        body = row.get("body")
        if body is None:
            body = row.get("data")
        if isinstance(body, str):
            body = body.encode("latin-1")
        return bytes(body)

    def handle(self, data, context):
        arrays = [np.load(io.BytesIO(self._payload(row)), allow_pickle=False) for row in data]
        sizes = [a.shape[0] for a in arrays]
        x = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        with torch.inference_mode():
            y = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
        out, start = [], 0
        for i, n in enumerate(sizes):
            buf = io.BytesIO()
            np.save(buf, y[start : start + n], allow_pickle=False)
            start += n
            out.append(buf.getvalue())
            context.set_response_content_type(i, "application/octet-stream")
        return out
