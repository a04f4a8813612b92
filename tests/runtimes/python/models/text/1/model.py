"""BYTES in and out: Triton hands an object array of bytes; anything else is a bug."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            if text.dtype != np.object_ or not all(isinstance(x, bytes) for x in text.flat):
                raise pb_utils.TritonModelException(f"expected bytes, got {text.dtype}")
            upper = np.array([x.upper() for x in text.flat], dtype=np.object_)
            length = np.array([len(x) for x in text.flat], dtype=np.int32)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("UPPER", upper), pb_utils.Tensor("LENGTH", length)]
                )
            )
        return responses
