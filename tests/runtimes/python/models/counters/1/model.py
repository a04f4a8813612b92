"""Custom metrics: a counter of requests and a gauge of the last X."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        labels = {"model": args["model_name"], "version": args["model_version"]}
        self.requests = pb_utils.MetricFamily(
            name="test_requests_total",
            description="Requests seen",
            kind=pb_utils.MetricFamily.COUNTER,
        ).Metric(labels=labels)
        self.last = pb_utils.MetricFamily(
            name="test_last_x", description="The last X", kind=pb_utils.MetricFamily.GAUGE
        ).Metric(labels=labels)

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X")
            self.requests.increment(1)
            self.last.set(float(x.as_numpy()[0]))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x.as_numpy())]))
        return responses
