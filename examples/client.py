"""Send requests to a running `conveyor serve` with nothing but the standard library
and numpy: one JSON request to the MLP classifier, one binary-tensor request to the
ResNet-style model (Triton's binary extension), and print what comes back."""

from __future__ import annotations

import argparse
import json
import urllib.request

import numpy as np


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read(), dict(resp.headers)


def infer_json(base: str) -> None:
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [2, 64],
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
    ).encode()
    raw, _ = post(f"{base}/v2/models/mlp/infer", body, {"content-type": "application/json"})
    out = json.loads(raw)["outputs"][0]
    probs = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
    print(f"mlp (JSON): output {out['name']} shape {out['shape']}")
    for i, row in enumerate(probs):
        print(f"  sample {i}: class {int(row.argmax())} p={row.max():.3f} (sum {row.sum():.3f})")


def infer_binary(base: str) -> None:
    x = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    raw, headers = post(
        f"{base}/v2/models/resnet/infer",
        header + x.tobytes(),
        {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
        },
    )
    json_len = int(headers["inference-header-content-length"])
    meta = json.loads(raw[:json_len])["outputs"][0]
    logits = np.frombuffer(raw[json_len:], dtype=np.float32).reshape(meta["shape"])
    top = np.argsort(logits[0])[::-1][:3]
    print(
        f"resnet (binary): {x.nbytes} bytes in, logits shape {meta['shape']}, top-3 {top.tolist()}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    args = p.parse_args()
    infer_json(args.url)
    infer_binary(args.url)


if __name__ == "__main__":
    main()
