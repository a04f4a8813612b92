"""MLServer custom runtime for the lab: an ONNX file run with ONNX Runtime.

model-settings.json: "implementation": "mlserver_runtime.OnnxModel", the file in
parameters.uri, `intra_op_num_threads` in parameters.extra.
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(extra.get("intra_op_num_threads", 1))
        opts.inter_op_num_threads = 1
        path = await get_model_uri(self.settings, wellknown_filenames=["model.onnx"])
        self._sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self._in = [i.name for i in self._sess.get_inputs()]
        self._out = [o.name for o in self._sess.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        by_name = {inp.name: inp for inp in payload.inputs}
        feeds = {}
        for pos, name in enumerate(self._in):
            inp = by_name.get(name) or payload.inputs[pos]
            value = self.decode(inp, default_codec=NumpyCodec)
            feeds[name] = np.ascontiguousarray(value, dtype=np.float32)
        results = self._sess.run(self._out, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(n, a) for n, a in zip(self._out, results, strict=True)
            ],
        )
