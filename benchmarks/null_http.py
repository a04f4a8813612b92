"""The null V2 HTTP target (conveyor.bench.null_server) on a fixed port.

python benchmarks/null_http.py --port 8400
"""

from __future__ import annotations

import argparse

import uvloop

from conveyor.bench.null_server import serve

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8400)
    uvloop.run(serve(p.parse_args().port))
