"""Runtimes (issue #10): each served at saturation ÷ the same file in-process at its best
configuration, and a table of images/s per runtime so a user sees which one to pick.

    python benchmarks/runtimes.py [--seconds 8] [--rounds 3] [--runtimes onnx,torch,...]
                                  [--skip-table] [--skip-served]

The networks are `conveyor.demo.frameworks`' ResNet-50 and MobileNetV2: the same
fixed-seed weights in ONNX, TorchScript, a Keras SavedModel and OpenVINO IR (built once
under the cache; outputs checked to agree first).

1. Table: in-process images/s, batch 1 and 8, one instance with 2 threads, per runtime
   (ONNX Runtime, OpenVINO, PyTorch TorchScript, TensorFlow).
2. ResNet-50 served ÷ in-process, per runtime (target >= 0.95). In-process: the best of
   {1 instance x 2 threads, 2 instances x 1 thread} at batch 8, every call on a new array
   copied from the data (what an application that receives new images does, and what
   the server does when it joins 8 requests into a batch), in a child process with
   glibc's malloc as it comes ("system") and tuned as `conveyor serve` tunes it by
   default ("tuned", conveyor.allocator); the better of the two is the baseline.
   Served: `conveyor serve` with that instance/thread configuration, dynamic batching up to 8,
   binary V2 tensors (1x3x224x224 FP32 per request) from wrk at 8 connections per
   instance plus 8 more (saturation: when an instance finishes a batch, the next full
   batch is already queued, as it always is in-process). Served images/s are counted by
   the server (its statistics API) over `--seconds` of steady load, 5 s after wrk
   started and before it stops: wrk's own figure divides by its whole run, which
   includes filling the pipeline (no answer for the first batch's ~1 s), biasing it down
   by about latency / duration. Rounds alternate between in-process and served;
   figures are medians.

TensorFlow's thread pools are one per process and fixed once it runs: in-process and
served alike it keeps its defaults (a thread per core in each pool), and "2 x 1" means
two instances (threads) calling the same function.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from _harness import CACHE, conveyor_server, median, served_steady, wrk
from conveyor.demo import frameworks

RUNTIMES = ("onnx", "openvino", "torch", "tensorflow")
FILES = {
    "onnx": "model.onnx",
    "openvino": "model.xml",
    "torch": "model.pt",
    "tensorflow": "model.savedmodel",
}


def build(net_name: str) -> Path:
    root = CACHE / "frameworks" / net_name
    if (root / "done").exists():
        return root
    net = frameworks.NETWORKS[net_name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frameworks.build_onnx(net, root / "model.onnx")
        frameworks.build_torchscript(net, root / "model.pt")
        shutil.rmtree(root / "model.savedmodel", ignore_errors=True)
        frameworks.build_savedmodel(net, root / "model.savedmodel")
        frameworks.build_openvino(net, root / "model.xml")
    (root / "done").write_text("")
    return root


Call = Callable[[np.ndarray], np.ndarray]


def loader(runtime: str, root: Path, threads: int) -> Callable[[], Call]:
    """A function making one in-process instance (its own session / request)."""
    path = str(root / FILES[runtime])
    if runtime == "onnx":
        import onnxruntime as ort

        def make_ort() -> Call:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            return lambda x: sess.run(None, {"x": x})[0]

        return make_ort
    if runtime == "openvino":
        import openvino as ov

        core = ov.Core()
        props = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": str(threads),
            "INFERENCE_PRECISION_HINT": "f32",
        }

        def make_ov() -> Call:
            request = core.compile_model(path, "CPU", props).create_infer_request()
            return lambda x: np.array(request.infer({"x": x}, share_inputs=True)[0])

        return make_ov
    if runtime == "torch":
        import torch

        def make_torch() -> Call:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.jit.load(path).eval()
            state = {"set": False}

            def call(x: np.ndarray) -> np.ndarray:
                if not state["set"]:
                    torch.set_num_threads(threads)  # in the calling thread (OpenMP)
                    state["set"] = True
                with torch.inference_mode():
                    return np.asarray(module(torch.from_numpy(x)).numpy())

            return call

        return make_torch
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    return lambda: lambda x: fn(x=tf.constant(x))["output_0"].numpy()


def images_per_s(
    make: Callable[[], Call], instances: int, batch: int, seconds: float, fresh: bool = False
) -> float:
    """`fresh`: each call gets a new array copied from the data (as new images arrive),
    instead of the same array every time."""
    calls = [make() for _ in range(instances)]
    inputs = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    for call in calls:
        call(inputs)
        call(inputs)  # warm-up (TorchScript profiles its first runs)
    counts = [0] * instances
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            calls[i](np.array(inputs) if fresh else inputs)
            counts[i] += batch

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(instances)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def _in_child(
    runtime: str, root: Path, instances: int, threads: int, seconds: float, tuned: bool
) -> float:
    if tuned:
        from conveyor import allocator

        allocator.tune()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return images_per_s(loader(runtime, root, threads), instances, 8, seconds, fresh=True)


def in_child(
    runtime: str, root: Path, instances: int, threads: int, seconds: float, tuned: bool
) -> float:
    """Batch-8 images/s on fresh inputs in a new process (malloc settings are per process)."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(_in_child, runtime, root, instances, threads, seconds, tuned).result()


def agree(root: Path, runtimes: list[str]) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    outs = {r: loader(r, root, 2)()(x) for r in runtimes}
    first = outs[runtimes[0]]
    for r, out in outs.items():
        diff = float(np.abs(out - first).max())
        print(f"  {r:<11} max |logits - {runtimes[0]}| = {diff:.2e}")
        assert diff <= 1e-3, f"{r} disagrees"


CONFIG = """{platform}max_batch_size: 8
dynamic_batching: {{ max_queue_delay_microseconds: 20000, preferred_batch_size: [8] }}
instance_group: [{{ count: {instances}, kind: KIND_CPU }}]
parameters: {params}
{tensors}"""


def served_repo(root: Path, runtime: str, instances: int, threads: int) -> Path:
    repo = CACHE / f"runtimes-repo-{runtime}"
    shutil.rmtree(repo, ignore_errors=True)
    version = repo / "resnet" / "1"
    version.mkdir(parents=True)
    for name in (FILES[runtime], "model.bin") if runtime == "openvino" else (FILES[runtime],):
        src = root / name
        if src.is_dir():
            shutil.copytree(src, version / name)
        else:
            os.link(src, version / name)
    key = {
        "onnx": "intra_op_thread_count",
        "openvino": "INFERENCE_NUM_THREADS",
        "torch": "INTRA_OP_THREAD_COUNT",
        "tensorflow": "TF_NUM_INTRA_THREADS",
    }[runtime]
    params = [f'{{ key: "{key}" value: {{ string_value: "{threads}" }} }}']
    if runtime == "tensorflow":
        params = []  # as in-process: TensorFlow's own pools (one per process)
    platform, tensors, name = "", "", "x"
    if runtime == "torch":
        platform = 'platform: "pytorch_libtorch"\n'
        tensors = (
            'input [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [3, 224, 224] }]\n'
            'output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [1000] }]\n'
        )
        name = "INPUT__0"
    (repo / "resnet" / "config.pbtxt").write_text(
        CONFIG.format(
            platform=platform,
            instances=instances,
            params="[" + ", ".join(params) + "]",
            tensors=tensors,
        )
    )
    (repo / "input-name").write_text(name)
    return repo


def body(name: str) -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": [1, 3, 224, 224],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
        }
    ).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    return header + x.tobytes(), headers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runtimes", default=",".join(RUNTIMES))
    p.add_argument("--skip-table", action="store_true")
    p.add_argument("--skip-served", action="store_true", help="the table only")
    args = p.parse_args()
    runtimes = args.runtimes.split(",")
    roots = {net: build(net) for net in ("resnet50", "mobilenet_v2")}
    print("outputs agree (ResNet-50, batch 2):")
    agree(roots["resnet50"], runtimes)

    if not args.skip_table:
        print("\nin-process images/s, 1 instance x 2 threads:")
        print(f"  {'runtime':<11} {'ResNet-50 b1':>13} {'b8':>8} {'MobileNetV2 b1':>15} {'b8':>8}")
        for runtime in runtimes:
            cells = []
            for net in ("resnet50", "mobilenet_v2"):
                make = loader(runtime, roots[net], 2)
                for batch in (1, 8):
                    cells.append(images_per_s(make, 1, batch, args.seconds / 2))
            print(
                f"  {runtime:<11} {cells[0]:>13.1f} {cells[1]:>8.1f} {cells[2]:>15.1f} "
                f"{cells[3]:>8.1f}"
            )

    if args.skip_served:
        return
    print("\nResNet-50 served / in-process best (batch 8), medians of alternating rounds:")
    for runtime in runtimes:
        root = roots["resnet50"]
        configs = {(1, 2): 0.0, (2, 1): 0.0}
        for instances, threads in configs:
            make = loader(runtime, root, threads)
            configs[(instances, threads)] = images_per_s(make, instances, 8, args.seconds / 2)
        best = max(configs, key=lambda k: configs[k])
        repo = served_repo(root, runtime, *best)
        payload, headers = body((repo / "input-name").read_text())
        local: dict[str, list[float]] = {"system": [], "tuned": []}
        served = []
        for _ in range(args.rounds):
            for malloc in local:
                local[malloc].append(
                    in_child(runtime, root, *best, args.seconds, tuned=malloc == "tuned")
                )
            server = conveyor_server(repo)
            try:
                clients = 8 * best[0] + 8
                url = f"http://{server.url}/v2/models/resnet/infer"
                wrk(url, payload, headers, clients, 5, timeout_s=30)  # warm-up
                rate, r = served_steady(
                    server.url, "resnet", payload, headers, clients, args.seconds
                )
                served.append(rate)
            finally:
                server.stop()
            print(
                f"  {runtime:<11} round: in-process malloc system {local['system'][-1]:6.1f}, "
                f"tuned {local['tuned'][-1]:6.1f}; served {rate:6.1f} images/s "
                f"(wrk: {r.rps:.1f} over its whole run, p50 {r.p50_ms:.0f} ms, errors {r.errors})"
            )
        base = max(median(v) for v in local.values())
        print(
            f"  {runtime:<11} best in-process config {best[0]} x {best[1]} threads: "
            f"served / in-process = {median(served) / base:.3f} (best of malloc system "
            f"{median(local['system']):.1f}, tuned {median(local['tuned']):.1f})   "
            f"(target >= 0.95)"
        )


if __name__ == "__main__":
    main()
