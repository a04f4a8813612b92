"""A null HTTP target: answers every request at once with 200 and `{}` (our HTTP layer,
no model), for measuring load generators' own ceilings.

    python benchmarks/null_http.py --port 8400
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop

from conveyor.http.server import HttpRequest, HttpResponse, HttpServer

OK = HttpResponse(200, [b"{}"])


async def app(request: HttpRequest) -> HttpResponse:
    return OK


async def main(port: int) -> None:
    server = HttpServer(app, "127.0.0.1", port, 1 << 20)
    await server.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8400)
    uvloop.run(main(p.parse_args().port))
