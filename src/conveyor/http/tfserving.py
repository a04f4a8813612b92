"""TensorFlow Serving's REST API on the same HTTP port, over the same data plane.

- GET  /v1/models/{m}[/versions/{v}]            version status
- GET  /v1/models/{m}[/versions/{v}]/metadata   signatures (a SavedModel's own)
- POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict   row or columnar format
"""

from __future__ import annotations

from typing import Any

import orjson

from conveyor.dataplane import DataPlane
from conveyor.errors import InvalidRequestError, MethodNotAllowedError, NotFoundError
from conveyor.http.server import HttpRequest, HttpResponse, json_response
from conveyor.protocol import tfserving


class TfServingApp:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def route(self, request: HttpRequest, parts: list[str]) -> HttpResponse:
        # parts: the path after /v1/models/, split on "/"
        action = ""
        if parts and ":" in parts[-1]:
            parts[-1], action = parts[-1].split(":", 1)
        if not parts or not parts[0]:
            raise NotFoundError(f"no route for {request.path}")
        name, rest = parts[0], parts[1:]
        version = ""
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        elif len(rest) >= 2 and rest[0] == "labels":
            version, rest = rest[1], rest[2:]  # the repository resolves label names
        if action:
            if action != "predict" or rest:
                raise NotFoundError(f"unsupported method ':{action}' (only :predict)")
            if request.method != "POST":
                raise MethodNotAllowedError(":predict needs POST")
            return await self._predict(request, name, version)
        if request.method != "GET":
            raise MethodNotAllowedError(f"{request.method} is not allowed on {request.path}")
        if rest == ["metadata"]:
            return json_response(self._metadata(name, version))
        if not rest:
            return json_response(self._status(name, version))
        raise NotFoundError(f"no route for {request.path}")

    def _status(self, name: str, version: str) -> dict[str, Any]:
        meta = self.dataplane.model_metadata(name, version)
        versions = [self.dataplane.resolve_version(name, version)] if version else meta["versions"]
        return {
            "model_version_status": [
                {
                    "version": v,
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for v in versions
            ]
        }

    def _metadata(self, name: str, version: str) -> dict[str, Any]:
        _, signatures = self.dataplane.model_signatures(name, version)

        def tensors(items: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                t["name"]: {
                    "dtype": tfserving.DT_NAMES[t["datatype"]],
                    "tensor_shape": {
                        "dim": [{"size": str(d), "name": ""} for d in t["shape"]],
                        "unknown_rank": False,
                    },
                    "name": t["name"],
                }
                for t in items
            }

        return {
            "model_spec": {
                "name": name,
                "signature_name": "",
                "version": self.dataplane.resolve_version(name, version),
            },
            "metadata": {
                "signature_def": {
                    "signature_def": {
                        sig: {
                            "inputs": tensors(tensor_lists["inputs"]),
                            "outputs": tensors(tensor_lists["outputs"]),
                            "method_name": "tensorflow/serving/predict",
                        }
                        for sig, tensor_lists in signatures.items()
                    }
                }
            },
        }

    async def _predict(self, request: HttpRequest, name: str, version: str) -> HttpResponse:
        self.dataplane.check_started()
        try:
            doc = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"malformed JSON in request body: {exc}") from None
        self.dataplane.limits.check_json_depth(doc, raw=request.body)
        meta = self.dataplane.model_metadata(name, version)
        wanted = doc.get("signature_name") if isinstance(doc, dict) else None
        if wanted:
            served, signatures = self.dataplane.model_signatures(name, version)
            if wanted != served:
                others = ", ".join(repr(s) for s in sorted(signatures))
                raise InvalidRequestError(
                    f"model '{name}' serves signature '{served}', not '{wanted}' (its "
                    f"signatures: {others}); a model whose config sets parameters "
                    f"TF_SIGNATURE_DEF: {wanted} serves that one"
                )
        inputs = [tfserving.TensorInfo(t["name"], t["datatype"]) for t in meta["inputs"]]
        infer_request, row_format = tfserving.decode_predict(doc, name, version, inputs)
        response = await self.dataplane.infer(infer_request)
        return json_response(tfserving.encode_predict(response.outputs, row_format))
