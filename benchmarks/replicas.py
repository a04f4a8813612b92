"""Scale-out on one machine (issue #14): N `conveyor serve` replicas behind nginx on
loopback.

    python benchmarks/replicas.py [--seconds 15] [--replicas 2] [--model resnet]

1. Throughput against replicas, 1..N (N up to the cores), through nginx (Debian's
   package; upstream keep-alive), wrk at 4 connections per replica; and one replica
   without nginx, for what the proxy costs.
2. A replica killed (SIGKILL) mid-run: the requests it held fail; said twice, with
   nginx's default `proxy_next_upstream error timeout` (a POST already sent is not
   retried) and with `http_503 non_idempotent` added (inference is idempotent: nginx
   retries it on the other replica).
3. A rolling restart, one replica at a time (SIGTERM -> not ready -> drained -> exits ->
   started again on its port -> ready), under load, nginx retrying as in 2: the failed
   requests (target: none). A replica listens before its models load and answers 503
   until then, which nginx (passive checks only) takes as "try the next one"; with
   `max_fails=0` no replica is ever marked down (with max_fails=1 both were, for their
   fail_timeout, while one restarted: "no live upstreams", hundreds of 502s), so a
   refused connection or a 503 costs a retry, not an error.

Every process is started here and stopped by its PID. Needs `apt-get install nginx wrk`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from _harness import CACHE, ServerProcess, demo_repo, model_repo, wait_ready, wrk_script
from tests.e2e.utils import free_port

NGINX = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_max_body_size 64m;
    client_body_buffer_size 4m;  # a request body stays in memory, not in a temp file
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream conveyor {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://conveyor;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream {next_upstream};
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, ports: list[int], retry_posts: bool) -> None:
        if shutil.which("nginx") is None:
            raise SystemExit("nginx is needed: apt-get install nginx")
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=CACHE))
        self.prefix.chmod(0o755)  # its workers run as another user
        self.port = free_port()
        self.retry_posts = retry_posts
        self.write(ports)
        self.proc = subprocess.Popen(
            [
                "nginx",
                "-p",
                str(self.prefix),
                "-c",
                str(self.prefix / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            stderr=subprocess.DEVNULL,
        )
        wait_ready(f"http://127.0.0.1:{self.port}/v2/health/ready", proc=self.proc)

    def write(self, ports: list[int]) -> None:
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=0;" for p in ports)
        # http_503: a replica still loading its models (or gone not-ready) answers 503
        next_upstream = "error timeout" + (" http_503 non_idempotent" if self.retry_posts else "")
        (self.prefix / "nginx.conf").write_text(
            NGINX.format(
                prefix=self.prefix, servers=servers, port=self.port, next_upstream=next_upstream
            )
        )

    def stop(self) -> None:
        self.proc.terminate()  # the nginx master we started, by its PID
        self.proc.wait(10)
        shutil.rmtree(self.prefix, ignore_errors=True)


def start_replica(repo: Path, model: str, port: int) -> ServerProcess:
    args = [
        "--model-control-mode",
        "explicit",
        "--load-model",
        model,
        "--http-port",
        str(port),
        "--allow-grpc",
        "false",
        "--allow-metrics",
        "false",
        "--exit-timeout-secs",
        "10",
    ]
    return ServerProcess(repo, *args, log_dir=CACHE).start()


def body_for(model: str) -> tuple[bytes, dict[str, str]]:
    """A binary V2 request for the demo model (its input, random, fixed seed)."""
    import json

    shape = {"resnet": [1, 3, 224, 224], "mlp": [1, 784], "linear": [1, 256]}[model]
    name = {"resnet": "images", "mlp": "x", "linear": "x"}[model]
    raw = np.random.default_rng(0).standard_normal(shape).astype(np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return header + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


class Load:
    """wrk in the background; its tally once it ends."""

    def __init__(self, url: str, body: bytes, headers: dict[str, str], conns: int, s: float):
        lua = wrk_script(body, headers, "replicas")
        self.proc = subprocess.Popen(
            [
                "wrk",
                "-t1",
                "-c",
                str(conns),
                "-d",
                f"{max(1, round(s))}s",
                "--latency",
                "--timeout",
                "30s",
                "-s",
                str(lua),
                url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    def result(self) -> dict[str, float]:
        out, _ = self.proc.communicate()
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        sock = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
        )
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
        return {
            "requests": requests,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
            "p99": p99.group(1) if p99 else "",  # type: ignore[dict-item]
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--replicas", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--model", default="resnet", choices=("resnet", "mlp", "linear"))
    args = p.parse_args()
    demo = demo_repo()
    # one instance of one thread per replica: N replicas, N cores
    config = (demo / args.model / "config.yaml").read_text()
    config = config.replace("count: 2", "count: 1")
    repo = model_repo("replicas-repo", {args.model: (args.model, config)}, demo)
    body, headers = body_for(args.model)
    ports = [free_port() for _ in range(args.replicas)]
    replicas = [start_replica(repo, args.model, port) for port in ports]
    path = f"/v2/models/{args.model}/infer"
    try:
        print(
            f"== 1. throughput ({args.model}, wrk 4 connections per replica, "
            f"{args.seconds:g} s each)"
        )
        direct = Load(f"http://127.0.0.1:{ports[0]}{path}", body, headers, 4, args.seconds)
        r = direct.result()
        print(f"  1 replica, no nginx: {r['rps']:8.1f} req/s  p99 {r['p99']}")
        for n in range(1, args.replicas + 1):
            nginx = Nginx(ports[:n], retry_posts=False)
            try:
                r = Load(
                    f"http://127.0.0.1:{nginx.port}{path}", body, headers, 4 * n, args.seconds
                ).result()
            finally:
                nginx.stop()
            print(
                f"  {n} replica(s) behind nginx: {r['rps']:8.1f} req/s  p99 {r['p99']}  "
                f"failed {r['non_2xx'] + r['socket_errors']}"
            )

        print("== 2. a replica killed (SIGKILL) mid-run")
        for retry in (False, True):
            nginx = Nginx(ports, retry_posts=retry)
            try:
                load = Load(
                    f"http://127.0.0.1:{nginx.port}{path}",
                    body,
                    headers,
                    4 * args.replicas,
                    args.seconds,
                )
                time.sleep(args.seconds / 2)
                victim = replicas[-1]
                assert victim.proc is not None
                victim.proc.send_signal(signal.SIGKILL)  # a replica we started
                victim.proc.wait()
                r = load.result()
            finally:
                nginx.stop()
            mode = "with non_idempotent" if retry else "default"
            print(
                f"  nginx proxy_next_upstream {mode}: {r['requests']} requests, "
                f"failed: {r['non_2xx']} non-2xx + {r['socket_errors']} socket errors"
            )
            replicas[-1] = start_replica(repo, args.model, ports[-1])

        print("== 3. rolling restart under load, one replica at a time")
        nginx = Nginx(ports, retry_posts=True)
        try:
            window = args.seconds * 2 * args.replicas + 20
            load = Load(
                f"http://127.0.0.1:{nginx.port}{path}", body, headers, 4 * args.replicas, window
            )
            time.sleep(3)
            started = time.monotonic()
            for i, port in enumerate(ports):
                t0 = time.monotonic()
                code = replicas[i].stop(60)  # SIGTERM: not ready, drain, exit
                drained = time.monotonic() - t0
                replicas[i] = start_replica(repo, args.model, port)
                print(
                    f"  replica {i}: drained and exited {code} in {drained:.1f} s, back and "
                    f"ready {time.monotonic() - t0:.1f} s after SIGTERM"
                )
            print(f"  restart done in {time.monotonic() - started:.1f} s; load goes on")
            r = load.result()
        finally:
            nginx.stop()
        print(
            f"  {r['requests']} requests, {r['rps']:.1f} req/s, failed: {r['non_2xx']} "
            f"non-2xx + {r['socket_errors']} socket errors (target: 0)"
        )
    finally:
        for replica in replicas:
            replica.stop()


if __name__ == "__main__":
    main()
