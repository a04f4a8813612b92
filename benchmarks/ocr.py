"""OCR served at saturation ÷ rapidocr in-process (issue #9): does stage concurrency pay
for the transport?

    python benchmarks/ocr.py [--seconds 20] [--rounds 3]

The same PP-OCR models and settings on both sides, on the same images (scikit-image's
page.png, text.png and camera.png, the last without text), taken in turn:

- in-process: `rapidocr_onnxruntime.RapidOCR` called in a loop, at each thread
  configuration of its ONNX Runtime sessions (`intra_op_num_threads` -1 = its default,
  1, 2); and, beyond what the issue asks, two engines of 1 thread each called from two
  Python threads (rapidocr's own code does not run its stages concurrently; this does,
  by hand);
- served: `conveyor serve` with `conveyor demo-repo --pipelines ocr` (detector,
  classifier and recogniser as three ONNX models of one thread each, Python steps in
  worker processes of their own), a keep-alive HTTP connection per client thread, binary BYTES in,
  at 1..4 requests in flight.

Both sides are checked to read the same text first. Rounds alternate between the two
sides; pages/s are medians over rounds. Target: best served ÷ best single-engine
in-process >= 1.0. Needs `pip install '.[ocr,test]'` (scikit-image comes with `test`).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _harness import CACHE, conveyor_server, median

IMAGES = ("page.png", "text.png", "camera.png")


def images() -> list[bytes]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return [(data / name).read_bytes() for name in IMAGES]


def closed_loop(
    make: Callable[[], Callable[[bytes], object]], clients: int, seconds: float, pages: list[bytes]
) -> float:
    """Pages per second from `clients` threads, each with its own caller, for `seconds`."""
    callers = [make() for _ in range(clients)]
    for call in callers:  # warm-up, outside the measured time
        call(pages[0])
    done = [0] * clients
    stop = time.perf_counter() + seconds
    start = time.perf_counter()

    def run(i: int) -> None:
        for page in itertools.cycle(pages):
            if time.perf_counter() >= stop:
                return
            callers[i](page)
            done[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def rapidocr_engine(threads: int) -> Callable[[], Callable[[bytes], object]]:
    from rapidocr_onnxruntime import RapidOCR

    def make() -> Callable[[bytes], object]:
        engine = RapidOCR(intra_op_num_threads=threads)
        return lambda page: engine(page)[0]

    return make


def served_client(url: str) -> Callable[[], Callable[[bytes], object]]:
    """A caller on its own keep-alive connection: the image as a binary BYTES tensor
    (Triton's binary extension), the text back as JSON."""

    def make() -> Callable[[bytes], object]:
        host, _, port = url.partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)

        def call(page: bytes) -> object:
            raw = struct.pack("<I", len(page)) + page
            header = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "IMAGE",
                            "shape": [1],
                            "datatype": "BYTES",
                            "parameters": {"binary_data_size": len(raw)},
                        }
                    ],
                    "outputs": [{"name": "TEXT"}],
                }
            ).encode()
            conn.request(
                "POST",
                "/v2/models/ocr/infer",
                header + raw,
                {
                    "Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(len(header)),
                },
            )
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:300]!r}")
            return [t.encode() for t in json.loads(body)["outputs"][0]["data"]]

        return call

    return make


def check_same(url: str, pages: list[bytes]) -> None:
    engine = rapidocr_engine(-1)()
    served = served_client(url)()
    for name, page in zip(IMAGES, pages, strict=True):
        ours = [t.decode() for t in served(page)]  # type: ignore[attr-defined]
        theirs = [line[1] for line in (engine(page) or [])]  # type: ignore[attr-defined]
        if ours != theirs:
            raise SystemExit(f"{name}: served {ours} but rapidocr reads {theirs}")
        print(f"{name}: both read {len(ours)} lines {ours[:2]}{' ...' if len(ours) > 2 else ''}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", default="1,2,3,4", help="served: requests in flight")
    args = p.parse_args()
    from conveyor.demo.pipelines import write_pipelines

    pages = images()
    repo = CACHE / "ocr-repo"
    write_pipelines(repo, ["ocr"])
    server = conveyor_server(repo)
    url = server.url
    inproc: dict[str, Callable[[], float]] = {
        f"rapidocr intra_op {t}": (
            lambda t=t: closed_loop(rapidocr_engine(t), 1, args.seconds, pages)  # type: ignore[misc]
        )
        for t in (-1, 1, 2)
    }
    inproc["rapidocr 2 engines x 1 thread, 2 Python threads"] = lambda: closed_loop(
        rapidocr_engine(1), 2, args.seconds, pages
    )
    served = {
        f"conveyor serve, {c} in flight": (
            lambda c=c: closed_loop(served_client(url), c, args.seconds, pages)  # type: ignore[misc]
        )
        for c in (int(x) for x in args.clients.split(","))
    }
    results: dict[str, list[float]] = {name: [] for name in [*inproc, *served]}
    try:
        check_same(url, pages)
        for r in range(args.rounds):
            order = [*inproc.items(), *served.items()]
            if r % 2:
                order.reverse()
            for name, run in order:
                results[name].append(run())
                print(f"round {r + 1}: {name:52s} {results[name][-1]:6.2f} pages/s", flush=True)
    finally:
        server.stop()
    print(f"\nmedians over {args.rounds} rounds of {args.seconds:g} s, images {', '.join(IMAGES)}")
    for name, values in results.items():
        print(f"  {name:52s} {median(values):6.2f} pages/s")
    single = max(median(results[n]) for n in inproc if "engines" not in n)
    both = max(median(results[n]) for n in inproc)
    best = max(median(results[n]) for n in served)
    print(f"served ÷ best single-engine in-process: {best / single:.2f} (target >= 1.0)")
    print(f"served ÷ best in-process incl. 2 engines by hand: {best / both:.2f}")


if __name__ == "__main__":
    main()
