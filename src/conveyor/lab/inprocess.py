"""The in-process baselines: a framework called directly, measured in a child process.

    python -m conveyor.lab.inprocess {ort,torch,tf} MODEL_FILE --threads T < cells.json

stdin: {"check": "in.npy", "check_out": "out.npy", "cells": [...]}; each cell is
{"batch": B, "clients": C, "requests": N} (a fixed count, seed 000) or
{"batch": B, "clients": C, "seconds": S, "warmup_s": W} (closed loop, seed 004). Clients
are threads calling the same loaded model, as an application's threads would. stdout:
one JSON document, {"startup_s", "cells": [a bench result per cell, plus the process's
CPU cores and RSS]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

from conveyor.bench.results import Recorder, to_json

Call = Callable[[np.ndarray], np.ndarray]
MIN_CPU_WINDOW_S = 0.5


def load(framework: str, path: str, threads: int, input_name: str) -> Call:
    if framework == "ort":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return lambda x: np.asarray(sess.run(None, {input_name: x})[0])
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(path).eval()

        def call(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return np.asarray(module(torch.from_numpy(x)).numpy())

        return call
    if framework == "tf":
        import tensorflow as tf

        try:  # fixed once TensorFlow has run (in this child process it has not)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
        fn = tf.saved_model.load(path).signatures["serving_default"]
        key = next(iter(fn.structured_outputs))
        return lambda x: np.asarray(fn(**{input_name: tf.constant(x)})[key].numpy())
    raise SystemExit(f"unknown framework {framework!r}")


def _cell(call: Call, cell: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    clients = int(cell.get("clients", 1))
    left = [int(cell["requests"])] if "requests" in cell else None
    rec = Recorder()
    lock = threading.Lock()
    clock = time.perf_counter

    def loop(end: float) -> None:
        while True:
            if left is not None:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
            sent = clock()
            if left is None and sent >= end:
                return
            try:
                call(x)
            except Exception as exc:  # a crash of the framework is the cell's error
                with lock:
                    rec.error(type(exc).__name__, str(exc)[:200], clock())
                continue
            done = clock()
            with lock:
                rec.ok(sent, sent, done, len(x))

    if cell.get("warmup_s"):
        warm_end = clock() + float(cell["warmup_s"])
        threads = [threading.Thread(target=loop, args=(warm_end,)) for _ in range(clients)]
        saved, left = left, None
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        left = saved
        rec = Recorder()
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    t0 = clock()
    end = t0 + float(cell.get("seconds", 0))
    threads = [threading.Thread(target=loop, args=(end,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = clock() - t0 if left is not None else float(cell["seconds"])
    pattern = (
        {"kind": "FixedCount", "requests": cell["requests"], "concurrency": clients}
        if left is not None
        else {"kind": "ClosedLoop", "concurrency": clients}
    )
    result = to_json(rec, "in-process", pattern, elapsed)
    cpu = sum(me.cpu_times()[:2]) - cpu0
    # CPU times tick in 10 ms: over a shorter window the ratio says nothing
    result["server_cpu_cores"] = round(cpu / elapsed, 3) if elapsed >= MIN_CPU_WINDOW_S else None
    result["server_rss_mb"] = round(me.memory_info().rss / 2**20, 1)
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("framework", choices=["ort", "torch", "tf"])
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--input-name", default="x")
    args = p.parse_args()
    job = json.load(sys.stdin)
    t0 = time.perf_counter()
    call = load(args.framework, args.model, args.threads, args.input_name)
    item = tuple(int(d) for d in job["item_shape"])
    call(np.zeros((1, *item), np.float32))  # the first call completes the load
    startup = time.perf_counter() - t0
    if job.get("check"):
        np.save(job["check_out"], call(np.load(job["check"])))
    rng = np.random.default_rng(1)
    out = []
    for cell in job["cells"]:
        x = rng.standard_normal((int(cell["batch"]), *item)).astype(np.float32)
        call(x)  # warm at this batch size
        out.append(_cell(call, cell, x))
    json.dump({"startup_s": round(startup, 3), "cells": out}, sys.stdout)


if __name__ == "__main__":
    main()
