"""Misbehaves on demand (MODE): 0 answers 1.0; 1 raises; 2 returns no responses; 3 returns
text for a number; 4 hangs; 5 kills its own process; 6 answers a TritonError(INVALID_ARG);
7 sleeps 0.2 s then answers (slow but fine); 8 returns float64 (cast to FP32)."""

import os
import signal
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        modes = [
            int(pb_utils.get_input_tensor_by_name(r, "MODE").as_numpy()[0, 0]) for r in requests
        ]
        if 1 in modes:
            raise ValueError("mode 1 asked me to fail")
        if 2 in modes:
            return []
        if 4 in modes:
            time.sleep(60)
        if 5 in modes:
            os.kill(os.getpid(), signal.SIGKILL)
        if 7 in modes:
            time.sleep(0.2)
        responses = []
        for mode in modes:
            if mode == 3:
                out = np.array([["one"]], dtype=np.object_)
            elif mode == 8:
                out = np.ones((1, 1), dtype=np.float64)
            elif mode == 6:
                err = pb_utils.TritonError(
                    "mode 6 is not a valid mode", pb_utils.TritonError.INVALID_ARG
                )
                responses.append(pb_utils.InferenceResponse(error=err))
                continue
            else:
                out = np.ones((1, 1), dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
