"""async execute: two BLS calls to add_sub at once; Y = (X+X) + (X-X)."""

import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy().reshape(1, 4)
            calls = [
                pb_utils.InferenceRequest(
                    model_name="add_sub",
                    requested_output_names=[name],
                    inputs=[pb_utils.Tensor("INPUT0", x), pb_utils.Tensor("INPUT1", x)],
                ).async_exec()
                for name in ("OUTPUT0", "OUTPUT1")
            ]
            first, second = await asyncio.gather(*calls)
            y = (
                pb_utils.get_output_tensor_by_name(first, "OUTPUT0").as_numpy()
                + pb_utils.get_output_tensor_by_name(second, "OUTPUT1").as_numpy()
            )
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y.reshape(4))]))
        return responses
