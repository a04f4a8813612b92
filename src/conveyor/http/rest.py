"""KServe V2 REST routes: decode, call the data plane, encode. No logic beyond that.

GET  /v2                                    server metadata
GET  /v2/health/live | /v2/health/ready     health
GET  /v2/models/{m}[/versions/{v}]          model metadata
GET  /v2/models/{m}[/versions/{v}]/ready    model readiness
GET  /v2/models/{m}[/versions/{v}]/config   model config (Triton's JSON form)
POST /v2/models/{m}[/versions/{v}]/infer    inference (JSON or binary tensors)
POST /v2/repository/index                   models and their load state
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

import orjson

from conveyor.dataplane import DataPlane
from conveyor.errors import (
    ConveyorError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    UnavailableError,
)
from conveyor.http.server import HttpRequest, HttpResponse, error_response
from conveyor.protocol import v2

log = logging.getLogger("conveyor.http")

HEADER_LENGTH = "inference-header-content-length"
_OK_EMPTY = HttpResponse(200, [], "text/plain")


def _json(value: Any) -> HttpResponse:
    return HttpResponse(200, [orjson.dumps(value)])


def _method(request: HttpRequest, *allowed: str) -> None:
    if request.method not in allowed:
        raise MethodNotAllowedError(
            f"{request.method} is not allowed on {request.path} (use {'/'.join(allowed)})"
        )


class RestApp:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def __call__(self, request: HttpRequest) -> HttpResponse:
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
        if len(parts) < 2 or parts[1] != "v2":
            raise NotFoundError(f"no route for {request.path}")
        if len(parts) == 2:
            _method(request, "GET")
            return _json(self.dataplane.server_metadata())
        section = parts[2]
        if section == "health" and len(parts) == 4:
            _method(request, "GET")
            return self._health(parts[3])
        if section == "models" and len(parts) >= 4:
            return await self._model(request, parts[3:])
        if section == "repository" and parts[3:] == ["index"]:
            _method(request, "POST", "GET")
            return _json(self.dataplane.repository_index())
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
            return _json(self.dataplane.model_metadata(name, version))
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
            return _json(self.dataplane.model_config(name, version))
        raise NotFoundError(f"no route for {request.path}")

    async def _infer(self, request: HttpRequest, name: str, version: str) -> HttpResponse:
        raw_length = request.headers.get(HEADER_LENGTH)
        header_length = None
        if raw_length is not None:
            try:
                header_length = int(raw_length)
            except ValueError:
                raise InvalidRequestError(
                    f"Inference-Header-Content-Length is not an integer: {raw_length!r}"
                ) from None
        infer_request = v2.decode_request(request.body, header_length, name, version)
        response = await self.dataplane.infer(infer_request)
        body, json_length = v2.encode_response(response, infer_request)
        if json_length is None:
            return HttpResponse(200, body)
        return HttpResponse(
            200,
            body,
            "application/octet-stream",
            {"inference-header-content-length": str(json_length)},
        )
