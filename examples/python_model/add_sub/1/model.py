"""Sum and difference of two vectors, with Triton's triton_python_backend_utils."""

from __future__ import annotations

from typing import Any

import triton_python_backend_utils as pb_utils  # provided inside Conveyor's workers


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        pb_utils.Logger.log_info(f"{args['model_instance_name']} ready")

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]
                )
            )
        return responses
