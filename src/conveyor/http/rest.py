"""KServe V2 REST routes and Triton's REST extensions: decode, call the data plane,
encode. No logic beyond that.

- GET  /v2 : server metadata
- GET  /v2/health/live, /v2/health/ready
- GET  /v2/models/{m}[/versions/{v}] : model metadata
- GET  /v2/models/{m}[/versions/{v}]/ready
- GET  /v2/models/{m}[/versions/{v}]/config : model config (Triton's JSON form)
- POST /v2/models/{m}[/versions/{v}]/infer : JSON or binary tensors, shared memory
- GET  /v2/models/stats, /v2/models/{m}[/versions/{v}]/stats : Triton's statistics
- POST /v2/repository/index : every model and version with its state
- POST /v2/repository/models/{m}/load | unload : explicit model control
- POST /v2/systemsharedmemory/region/{r}/register, [region/{r}/]unregister
- GET  /v2/systemsharedmemory[/region/{r}]/status
- /v2/cudasharedmemory/...: not supported (empty status, no-op unregister, register fails)
- GET/POST /v2/logging : log level and access log, at run time
- /v1/models/... : TensorFlow Serving's REST API (http/tfserving.py)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson

from conveyor import logs
from conveyor.dataplane import DataPlane
from conveyor.errors import (
    ConveyorError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    UnavailableError,
)
from conveyor.http.server import HttpRequest, HttpResponse, error_response, json_response
from conveyor.http.tfserving import TfServingApp
from conveyor.protocol import v2
from conveyor.replies import Withdrawable
from conveyor.security import DATA, Security, http_group
from conveyor.sharedmem import CUDA_SHM_UNSUPPORTED
from conveyor.types import InferRequest, InferResponse

log = logging.getLogger("conveyor.http")

HEADER_LENGTH = "inference-header-content-length"
_OK_EMPTY = HttpResponse(200, [], "text/plain")


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        doc = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"malformed JSON in request body: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return doc


def _error(exc: BaseException, request: HttpRequest) -> HttpResponse:
    if isinstance(exc, ConveyorError):
        return error_response(exc.status, exc.message, exc.headers() or None)
    log.error("internal error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal server error")


def _method(request: HttpRequest, *allowed: str) -> None:
    if request.method not in allowed:
        raise MethodNotAllowedError(
            f"{request.method} is not allowed on {request.path} (use {'/'.join(allowed)})"
        )


class RestApp:
    def __init__(self, dataplane: DataPlane, security: Security | None = None) -> None:
        self.dataplane = dataplane
        self.tfserving = TfServingApp(dataplane)
        self.security = security  # None: open (the server passes None for no tokens)

    def answer(
        self, request: HttpRequest, reply: Callable[[HttpResponse], None]
    ) -> HttpResponse | Withdrawable | Awaitable[HttpResponse]:
        """The HTTP server's entry. An inference (POST /v2/models/M[/versions/V]/infer)
        starts here without a coroutine: a model that answers at once is answered at once
        (the response), else `reply` gets the response later and what is returned
        withdraws the request (`cancel()`). The rest is routed by `__call__` (a coroutine)."""
        path = request.path
        if request.method != "POST" or not path.endswith("/infer"):
            return self(request)
        parts = path.split("/")  # "", "v2", "models", name, ["versions", v,] "infer"
        if parts[1:3] != ["v2", "models"] or not (
            len(parts) == 5 or (len(parts) == 7 and parts[4] == "versions")
        ):
            return self(request)
        if self.security is not None:
            denied = self.security.check(DATA, request.headers.get("authorization"))
            if denied is not None:
                return error_response(denied.status, denied.message, denied.headers or None)
        name = unquote(parts[3]) if "%" in parts[3] else parts[3]

        def answered(outcome: InferResponse | BaseException) -> None:
            if isinstance(outcome, InferResponse):
                try:
                    reply(self._encoded(outcome, infer_request))
                    return
                except Exception as exc:
                    outcome = exc
            reply(_error(outcome, request))

        try:
            infer_request = self._infer_request(request, name, parts[5] if len(parts) == 7 else "")
            answer = self.dataplane.infer_nowait(infer_request, answered)
        except Exception as exc:
            return _error(exc, request)
        if isinstance(answer, InferResponse):
            return self._encoded(answer, infer_request)
        return answer

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.security is not None:
            denied = self.security.check(
                http_group(request.path), request.headers.get("authorization")
            )
            if denied is not None:
                return error_response(denied.status, denied.message, denied.headers or None)
        try:
            return await self._route(request)
        except ConveyorError as exc:
            return error_response(exc.status, exc.message, exc.headers() or None)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(500, "internal server error")

    async def _route(self, request: HttpRequest) -> HttpResponse:
        path = request.path.rstrip("/")
        parts = path.split("/")
        # parts[0] is "" (the leading slash)
        if len(parts) >= 3 and parts[1] == "v1" and parts[2] == "models":
            return await self.tfserving.route(request, parts[3:])
        if len(parts) < 2 or parts[1] != "v2":
            raise NotFoundError(f"no route for {request.path}")
        if len(parts) == 2:
            _method(request, "GET")
            return json_response(self.dataplane.server_metadata())
        section = parts[2]
        if section == "health" and len(parts) == 4:
            _method(request, "GET")
            return self._health(parts[3])
        if section == "models" and parts[3:] == ["stats"]:
            _method(request, "GET")
            return json_response({"model_stats": self.dataplane.statistics()})
        if section == "models" and len(parts) >= 4:
            return await self._model(request, parts[3:])
        if section == "logging" and len(parts) == 3:
            return self._logging(request)
        if section == "repository":
            return await self._repository(request, parts[3:])
        if section == "systemsharedmemory":
            return self._shared_memory(request, parts[3:])
        if section == "cudasharedmemory":
            return self._cuda_shared_memory(request, parts[3:])
        raise NotFoundError(f"no route for {request.path}")

    async def _repository(self, request: HttpRequest, rest: list[str]) -> HttpResponse:
        if rest == ["index"]:
            _method(request, "POST", "GET")
            body = _body(request)
            rows = self.dataplane.repository_index()
            if body.get("ready"):
                rows = [r for r in rows if r["state"] == "READY"]
            return json_response(rows)
        if len(rest) == 3 and rest[0] == "models" and rest[2] == "routing":
            _method(request, "POST")
            body = _body(request)
            self.dataplane.set_routing(
                unquote(rest[1]), body.get("version_labels"), body.get("traffic_split")
            )
            return _OK_EMPTY
        if len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload"):
            _method(request, "POST")
            name = unquote(rest[1])
            if rest[2] == "unload":
                await self.dataplane.unload_model(name)
            else:
                params = _body(request).get("parameters") or {}
                if not isinstance(params, dict):
                    raise InvalidRequestError("'parameters' must be an object")
                config = params.get("config")
                if config is not None and not isinstance(config, str):
                    config = orjson.dumps(config).decode()
                await self.dataplane.load_model(name, config)
            return _OK_EMPTY
        raise NotFoundError(f"no route for {request.path}")

    def _logging(self, request: HttpRequest) -> HttpResponse:
        """GET the log settings; POST {"log_level": ..., "access_log": ...} to change them."""
        _method(request, "GET", "POST")
        if request.method == "POST":
            body = _body(request)
            if "log_level" in body:
                try:
                    logs.set_level(str(body["log_level"]))
                except ValueError as exc:
                    raise InvalidRequestError(str(exc)) from None
            if "access_log" in body:
                self.dataplane.access_log = bool(body["access_log"])
        return json_response(
            {"log_level": logs.get_level(), "access_log": self.dataplane.access_log}
        )

    def _cuda_shared_memory(self, request: HttpRequest, rest: list[str]) -> HttpResponse:
        """Not supported: no region to list or unregister; registering fails."""
        action = rest[-1] if rest else ""
        if action == "status":
            _method(request, "GET")
            return json_response([])
        if action == "unregister":
            _method(request, "POST")
            return _OK_EMPTY
        if action == "register":
            raise InvalidRequestError(CUDA_SHM_UNSUPPORTED)
        raise NotFoundError(f"no route for {request.path}")

    def _shared_memory(self, request: HttpRequest, rest: list[str]) -> HttpResponse:
        region = ""
        if len(rest) >= 3 and rest[0] == "region":
            region, rest = unquote(rest[1]), rest[2:]
        action = rest[0] if len(rest) == 1 else ""
        shm = self.dataplane.shm
        if action == "status":
            _method(request, "GET")
            return json_response(list(shm.status(region).values()))
        if action == "register" and region:
            _method(request, "POST")
            body = _body(request)
            key, offset, size = body.get("key"), body.get("offset", 0), body.get("byte_size")
            if not (isinstance(key, str) and isinstance(offset, int) and isinstance(size, int)):
                raise InvalidRequestError(
                    "register needs 'key' (string), 'byte_size' (int) and optionally 'offset' (int)"
                )
            shm.register(region, key, offset, size)
            return _OK_EMPTY
        if action == "unregister":
            _method(request, "POST")
            shm.unregister(region)
            return _OK_EMPTY
        raise NotFoundError(f"no route for {request.path}")

    def _health(self, what: str) -> HttpResponse:
        if what == "live":
            return _OK_EMPTY
        if what == "ready":
            if not self.dataplane.ready:
                raise UnavailableError("server is not ready")
            return _OK_EMPTY
        raise NotFoundError(f"no health endpoint '{what}'")

    async def _model(self, request: HttpRequest, rest: list[str]) -> HttpResponse:
        name = unquote(rest[0]) if "%" in rest[0] else rest[0]
        version = ""
        if len(rest) >= 3 and rest[1] == "versions":
            version = rest[2]
            rest = [rest[0], *rest[3:]]
        if len(rest) == 1:
            _method(request, "GET")
            return json_response(self.dataplane.model_metadata(name, version))
        if len(rest) != 2:
            raise NotFoundError(f"no route for {request.path}")
        action = rest[1]
        if action == "infer":
            _method(request, "POST")
            return await self._infer(request, name, version)
        if action == "ready":
            _method(request, "GET")
            if not self.dataplane.model_ready(name, version):
                raise UnavailableError(f"model '{name}' is not ready")
            return _OK_EMPTY
        if action == "config":
            _method(request, "GET")
            return json_response(self.dataplane.model_config(name, version))
        if action == "stats":
            _method(request, "GET")
            return json_response({"model_stats": self.dataplane.statistics(name, version)})
        raise NotFoundError(f"no route for {request.path}")

    def _infer_request(self, request: HttpRequest, name: str, version: str) -> InferRequest:
        self.dataplane.check_started()
        raw_length = request.headers.get(HEADER_LENGTH)
        header_length = None
        if raw_length is not None:
            try:
                header_length = int(raw_length)
            except ValueError:
                raise InvalidRequestError(
                    f"Inference-Header-Content-Length is not an integer: {raw_length!r}"
                ) from None
        return v2.decode_request(request.body, header_length, name, version, self.dataplane.limits)

    @staticmethod
    def _encoded(response: InferResponse, request: InferRequest) -> HttpResponse:
        body, json_length = v2.encode_response(response, request)
        if json_length is None:
            return HttpResponse(200, body)
        return HttpResponse(
            200,
            body,
            "application/octet-stream",
            {"inference-header-content-length": str(json_length)},
        )

    async def _infer(self, request: HttpRequest, name: str, version: str) -> HttpResponse:
        infer_request = self._infer_request(request, name, version)
        return self._encoded(await self.dataplane.infer(infer_request), infer_request)
