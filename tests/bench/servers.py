"""A real HTTP server (ours) on a loop in a background thread, for tests that drive the
`conveyor bench` CLI in the test's own thread (the CLI runs its own event loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from conveyor.http.server import App, HttpServer


@contextmanager
def serving_in_thread(app: App) -> Iterator[str]:
    """Yields the server's base URL, http://127.0.0.1:PORT; shuts it down after."""
    loop = asyncio.new_event_loop()
    server = HttpServer(app, "127.0.0.1", 0, 1 << 20)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        # the deadlines only bound a hang: a loaded machine may take its time
        asyncio.run_coroutine_threadsafe(server.shutdown(1.0), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()
