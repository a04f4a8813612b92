"""BLS: X + X through the model MODEL names (add_sub, or a decoupled `repeat` whose
answers are summed), errors of the callee passed on as this model's errors."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            name = pb_utils.get_input_tensor_by_name(request, "MODEL").as_numpy()[0]
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if name == b"repeat":
                call = pb_utils.InferenceRequest(
                    model_name="repeat",
                    requested_output_names=["OUT"],
                    inputs=[
                        pb_utils.Tensor("N", np.array([3], dtype=np.int32)),
                        pb_utils.Tensor("VALUE", x[:1].astype(np.float32)),
                    ],
                )
                total = np.zeros(4, dtype=np.float32)
                for answer in call.exec(decoupled=True):
                    if answer.has_error():
                        raise pb_utils.TritonModelException(answer.error().message())
                    if answer.output_tensors():
                        total += pb_utils.get_output_tensor_by_name(answer, "OUT").as_numpy()
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", total)]))
                continue
            call = pb_utils.InferenceRequest(
                model_name=name,
                requested_output_names=["OUTPUT0"],
                inputs=[
                    pb_utils.Tensor("INPUT0", x.reshape(1, 4)),
                    pb_utils.Tensor("INPUT1", x.reshape(1, 4)),
                ],
            )
            answer = call.exec()
            if answer.has_error():
                responses.append(pb_utils.InferenceResponse(error=answer.error()))
                continue
            y = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy().reshape(4)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y)]))
        return responses
