"""Python models (`backend: python`): worker processes against the GIL, and against
Triton 2.51's python backend serving the same `model.py`.

    python benchmarks/python_models.py [--rounds 3] [--seconds 5] [--no-triton]

1. GIL-bound model (execute sums 1..100000 in pure Python per request), 10 clients (wrk):
   Conveyor with 2 instances / 1 instance (target >= 1.8 on 2 cores), and the same model.py
   on Triton with the same instance counts (target: Conveyor >= 1.0x Triton).
2. An identity model at 1 client, a 1x4 FP32 JSON request: p50, Conveyor / Triton
   (target <= 0.5: Triton's python backend pays its IPC on every request).
3. A 1x3x224x224 FP32 tensor (binary extension) through an identity Python model: the
   latency it adds over an ONNX Identity model on the same server, divided by the time to
   copy that tensor twice in memory, measured in the same run (aim <= 3).

Rounds alternate between the configurations; figures are medians of the rounds. Triton's
virtualenv is set up once as benchmarks/peers/triton.py says; without it the Triton rows
are skipped and said so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from _harness import CACHE, WrkResult, conveyor_server, median, wrk

GIL_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            total = 0
            for i in range(1, 100001):  # pure Python: holds the GIL
                total += i
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]))
        return responses
"""

IDENTITY_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN", data_type: TYPE_FP32, dims: [ {dims} ] }} ]
output [ {{ name: "OUT", data_type: TYPE_FP32, dims: [ {dims} ] }} ]
instance_group [ {{ count: {count}, kind: KIND_CPU }} ]
"""


def python_model(repo: Path, name: str, code: str, count: int, dims: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(code)
    (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name, count=count, dims=dims))


def onnx_identity(repo: Path, name: str, shape: list[int]) -> None:
    x = helper.make_tensor_value_info("IN", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("OUT", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["IN"], ["OUT"])], "id", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (repo / name / "1").mkdir(parents=True)
    onnx.save(model, str(repo / name / "1" / "model.onnx"))
    (repo / name / "config.yaml").write_text("max_batch_size: 0\n")


def repositories() -> tuple[Path, Path]:
    conveyor, triton = CACHE / "py-conveyor", CACHE / "py-triton"
    for root in (conveyor, triton):
        shutil.rmtree(root, ignore_errors=True)
        for count in (1, 2):
            python_model(root, f"gil{count}", GIL_MODEL, count, "4")
        python_model(root, "identity", IDENTITY_MODEL, 1, "4")
    python_model(conveyor, "identity_big", IDENTITY_MODEL, 1, "1, 3, 224, 224")
    onnx_identity(conveyor, "onnx_identity", [1, 3, 224, 224])
    onnx_identity(conveyor, "onnx_small", [4])  # the same server's path without a worker
    return conveyor, triton


SMALL = json.dumps(
    {"inputs": [{"name": "IN", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()
JSON_HEADERS = {"Content-Type": "application/json"}


def binary_body(shape: tuple[int, ...]) -> tuple[bytes, dict[str, str]]:
    data = np.random.default_rng(0).random(shape, dtype=np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "IN",
                    "shape": list(shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": "OUT", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + data, headers


def copy_twice_ms(shape: tuple[int, ...], repeat: int = 2000) -> float:
    """The time to copy the tensor twice (numpy's copyto, warm caches), in ms."""
    src = np.random.default_rng(0).random(shape, dtype=np.float32)
    dst = np.empty_like(src)
    for _ in range(50):
        np.copyto(dst, src)
    t0 = time.perf_counter()
    for _ in range(repeat):
        np.copyto(dst, src)
        np.copyto(src, dst)
    return (time.perf_counter() - t0) / repeat * 1e3


def show(label: str, results: list[WrkResult]) -> None:
    rps = median([r.rps for r in results])
    p50 = median([r.p50_ms for r in results])
    p99 = median([r.p99_ms for r in results])
    errors = sum(r.errors for r in results)
    print(f"  {label:34s} {rps:9.1f} req/s  p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  err {errors}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--no-triton", action="store_true")
    args = p.parse_args()
    conveyor_repo, triton_repo = repositories()
    server = conveyor_server(conveyor_repo)
    triton = None
    if not args.no_triton:
        from peers.triton import HTTP_PORT, start_triton_repo

        try:
            triton = start_triton_repo(triton_repo)
            triton_url = f"http://127.0.0.1:{HTTP_PORT}"
        except RuntimeError as exc:
            print(f"Triton skipped: {exc}")
    conveyor_url = f"http://{server.url}"
    big_body, big_headers = binary_body((1, 3, 224, 224))
    runs: dict[str, Callable[[], WrkResult]] = {}
    for count in (1, 2):
        runs[f"conveyor gil x{count} c=10"] = lambda count=count: wrk(  # type: ignore[misc]
            f"{conveyor_url}/v2/models/gil{count}/infer", SMALL, JSON_HEADERS, 10, args.seconds
        )
        if triton is not None:
            runs[f"triton gil x{count} c=10"] = lambda count=count: wrk(  # type: ignore[misc]
                f"{triton_url}/v2/models/gil{count}/infer", SMALL, JSON_HEADERS, 10, args.seconds
            )
    runs["conveyor identity c=1"] = lambda: wrk(
        f"{conveyor_url}/v2/models/identity/infer", SMALL, JSON_HEADERS, 1, args.seconds
    )
    runs["conveyor onnx identity c=1"] = lambda: wrk(
        f"{conveyor_url}/v2/models/onnx_small/infer", SMALL, JSON_HEADERS, 1, args.seconds
    )
    if triton is not None:
        runs["triton identity c=1"] = lambda: wrk(
            f"{triton_url}/v2/models/identity/infer", SMALL, JSON_HEADERS, 1, args.seconds
        )
    runs["conveyor python identity 1x3x224x224 c=1"] = lambda: wrk(
        f"{conveyor_url}/v2/models/identity_big/infer", big_body, big_headers, 1, args.seconds
    )
    runs["conveyor onnx identity 1x3x224x224 c=1"] = lambda: wrk(
        f"{conveyor_url}/v2/models/onnx_identity/infer", big_body, big_headers, 1, args.seconds
    )
    results: dict[str, list[WrkResult]] = {k: [] for k in runs}
    copies: list[float] = []
    try:
        for name, run in runs.items():  # warm-up
            run()
            print(f"  warmed {name}")
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}")
            for name, run in runs.items():
                results[name].append(run())
            copies.append(copy_twice_ms((1, 3, 224, 224)))
    finally:
        server.stop()
        if triton is not None:
            triton.stop()
    print("\nmedians of the rounds:")
    for name, rs in results.items():
        show(name, rs)

    def rps(name: str) -> float:
        return median([r.rps for r in results[name]])

    def p50(name: str) -> float:
        return median([r.p50_ms for r in results[name]])

    print("\nratios:")
    scale = rps("conveyor gil x2 c=10") / rps("conveyor gil x1 c=10")
    print(f"  conveyor gil x2 / x1 at c=10: {scale:.2f}  (target >= 1.8)")
    if triton is not None:
        scale = rps("triton gil x2 c=10") / rps("triton gil x1 c=10")
        print(f"  triton gil x2 / x1 at c=10: {scale:.2f}")
        for count in (1, 2):
            ratio = rps(f"conveyor gil x{count} c=10") / rps(f"triton gil x{count} c=10")
            print(f"  conveyor / triton, gil x{count} c=10 throughput: {ratio:.2f} (target >= 1)")
        ratio = p50("conveyor identity c=1") / p50("triton identity c=1")
        print(f"  conveyor / triton, identity c=1 p50: {ratio:.3f}  (target <= 0.5)")
        ratio = p50("conveyor onnx identity c=1") / p50("triton identity c=1")
        print(f"  the same without a worker process (ONNX Identity) / triton p50: {ratio:.3f}")
    added = p50("conveyor python identity 1x3x224x224 c=1") - p50(
        "conveyor onnx identity 1x3x224x224 c=1"
    )
    copy = median(copies)
    print(
        f"  1x3x224x224 through a Python identity: adds {added:.3f} ms over ONNX Identity; "
        f"copying it twice takes {copy:.3f} ms; ratio {added / copy:.2f}  (aim <= 3)"
    )


if __name__ == "__main__":
    main()
