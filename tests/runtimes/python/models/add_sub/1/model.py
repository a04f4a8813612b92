"""Sum and difference; REQUESTS tells how many requests its execute call received, and
a request parameter `scale` multiplies the sum (to prove parameters() arrive)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        self.args = args
        out = pb_utils.get_output_config_by_name(self.config, "OUTPUT0")
        self.dtype = pb_utils.triton_string_to_numpy(out["data_type"])
        pb_utils.Logger.log_info(f"add_sub initialised as {args['model_instance_name']}")

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            scale = json.loads(request.parameters()).get("scale", 1)
            count = np.full((a.shape[0], 1), len(requests), dtype=np.int32)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("OUTPUT0", ((a + b) * scale).astype(self.dtype)),
                        pb_utils.Tensor("OUTPUT1", (a - b).astype(self.dtype)),
                        pb_utils.Tensor("REQUESTS", count),
                    ]
                )
            )
        return responses
