"""Decoupled: N responses (VALUE, index) from a thread of its own, then the final flag
alone; N = 0 sends only the flag. N < 0 answers with an error."""

import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            value = pb_utils.get_input_tensor_by_name(request, "VALUE").as_numpy()
            sender = request.get_response_sender()
            thread = threading.Thread(target=self.answer, args=(sender, n, value))
            thread.start()
            self.threads.append(thread)
        return None

    def answer(self, sender, n, value):
        if n < 0:
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError("N must be >= 0")),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
            return
        for i in range(n):
            out = pb_utils.Tensor("OUT", value.copy())
            index = pb_utils.Tensor("INDEX", np.array([i], dtype=np.int32))
            sender.send(pb_utils.InferenceResponse([out, index]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for thread in self.threads:
            thread.join()
