"""Seed 001's case (issue #9): a pipeline whose Python pre-processing saturates the CPU,
seen as such in `conveyor bench`'s breakdown and hardware figures.

    python benchmarks/preprocessing_bound.py [--seconds 30] [--concurrency 4]

The `classify` demo pipeline (`decode` function step -> ResNet-50 ONNX -> `top5`) fed a
12-megapixel JPEG (made here, fixed seed): decoding and resizing it costs more than the
model. `conveyor bench` runs against it twice, with the decode step on one worker
process and then on two (`instances: 2` on the step), monitoring the server and each
worker process. The breakdown shows each step's queue and compute time and how busy it
was (its executions' compute time over the window; 100% = one instance throughout).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

import numpy as np
import psutil
from PIL import Image

from _harness import CACHE, conveyor_server


def photo() -> bytes:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:3000, 0:4000]
    rgb = np.stack([x * 255 // 4000, y * 255 // 3000, (x + y) % 256], -1).astype(np.int16)
    rgb += rng.integers(-40, 40, rgb.shape, dtype=np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args()
    from conveyor.demo.pipelines import write_pipelines

    image = CACHE / "photo12mp.jpg"
    image.write_bytes(photo())
    repo = CACHE / "classify-repo"
    write_pipelines(repo, ["classify"])
    config = repo / "classify" / "config.yaml"
    original = config.read_text()
    for instances in (1, 2):
        text = original.replace(
            '{function: "steps.py:decode",',
            f'{{function: "steps.py:decode", instances: {instances},',
        )
        config.write_text(text)
        server = conveyor_server(repo)
        try:
            pids = [server.proc.pid] + [
                c.pid
                for c in psutil.Process(server.proc.pid).children()
                if "_boot.py" in " ".join(c.cmdline())
            ]
            out = CACHE / f"preprocessing-bound-{instances}.json"
            cmd = [sys.executable, "-m", "conveyor.cli", "bench", f"http://{server.url}",
                   "--model", "classify", "--input", f"IMAGE={image}", "--concurrency",
                   str(args.concurrency), "--duration", str(args.seconds), "--warmup", "5",
                   "--live", "off", "--output", str(out)]  # fmt: skip
            for pid in pids:
                cmd += ["--monitor-pid", str(pid)]
            print(f"\n== decode on {instances} worker process(es); monitored pids: server "
                  f"{pids[0]}, workers {pids[1:]} (decode first, then top5)")  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            print(proc.stdout.strip() or proc.stderr[-2000:])
            if proc.returncode == 0:
                result = json.loads(out.read_text())
                steps = result["server"]["steps"]
                print("busy: " + ", ".join(f"{n} {s.get('busy', 0):.0%}" for n, s in steps.items()))
        finally:
            server.stop()
    config.write_text(original)


if __name__ == "__main__":
    main()
