"""The hand-written floor (issue #11): the least a Python server can do per request for
the tiny model: asyncio Protocol + httptools' parser + orjson -> numpy -> x·W -> orjson,
one write per response, keep-alive, nothing else (no routing, validation, metrics or
errors beyond a 400). Conveyor's per-request cost is measured against it.

    python benchmarks/peers/floor.py MODEL.onnx --port 8200   # W read from the ONNX file
"""

from __future__ import annotations

import argparse
import asyncio

import httptools
import numpy as np
import onnx
import orjson
import uvloop
from onnx import numpy_helper

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "


class Floor(asyncio.Protocol):
    def __init__(self, w: np.ndarray) -> None:
        self.w = w
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        if self.url.endswith(b"/ready"):
            self.transport.write(HEAD + b"0\r\n\r\n")
            return
        try:
            inp = orjson.loads(body)["inputs"][0]
            x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        except (ValueError, KeyError, TypeError):
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        y = x @ self.w
        out = orjson.dumps(
            {"outputs": [{"name": "y", "datatype": "FP32", "shape": y.shape, "data": y}]},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        self.transport.write(HEAD + str(len(out)).encode() + b"\r\n\r\n" + out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", help="an ONNX file whose first initializer is W (256x256)")
    p.add_argument("--port", type=int, default=8200)
    args = p.parse_args()
    w = numpy_helper.to_array(onnx.load(args.model).graph.initializer[0]).astype(np.float32)
    uvloop.install()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: Floor(w), "127.0.0.1", args.port, reuse_address=True)
    )
    print(f"floor listening on 127.0.0.1:{args.port}", flush=True)
    loop.run_until_complete(server.serve_forever())


if __name__ == "__main__":
    main()
