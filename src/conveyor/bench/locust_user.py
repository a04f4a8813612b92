"""Conveyor-style requests from Locust (`pip install conveyor[locust]`), for distributed
load with Locust's master/worker mode, with Conveyor's results JSON at the end.

A locustfile:

    from conveyor.bench.locust_user import ConveyorUser

    class Resnet(ConveyorUser):
        model = "resnet"          # a V2 model on --host
        protocol = "v2-binary"    # or v2-json, tfserving
        batch_size = 4

    locust -f locustfile.py --host http://127.0.0.1:8000 --conveyor-output result.json

Requests are built by the same code as `conveyor bench` (model metadata -> seeded
inputs -> V2 or TF Serving body). Every process records latencies in an HdrHistogram;
workers ship theirs to the master with Locust's own reports, the master merges them
exactly (no rounded percentiles) and writes the `conveyor.bench/1` JSON when it quits.
Locust users are a closed loop: latency is measured from each request's actual send.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from locust import events
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from conveyor.bench.inputs import model_inputs
from conveyor.bench.results import Recorder, pack, run_context, to_json, unpack
from conveyor.bench.targets import tfserving_body, v2_body

_recorder = Recorder()
_started: list[float] = []
_stopped: list[float] = []
_model: list[str] = []
_workers: set[str] = set()


class ConveyorUser(FastHttpUser):
    abstract = True
    model: ClassVar[str] = ""
    model_version: ClassVar[str] = ""
    protocol: ClassVar[str] = "v2-binary"
    batch_size: ClassVar[int] = 1
    shapes: ClassVar[dict[str, list[int]]] = {}
    input_data: ClassVar[str] = "random"
    seed: ClassVar[int] = 0
    _requests: ClassVar[dict[str, tuple[str, bytes, dict[str, str]]]] = {}

    def on_start(self) -> None:
        if not self.model:
            raise ValueError(f"{type(self).__name__}: set `model` to a V2 model name")
        if not _model:
            _model.append(self.model)
        key = type(self).__name__
        if key not in self._requests:
            self._requests[key] = self._build()

    def _build(self) -> tuple[str, bytes, dict[str, str]]:
        version = f"/versions/{self.model_version}" if self.model_version else ""
        meta = self.client.get(f"/v2/models/{self.model}{version}", name="metadata")
        if meta.status_code != 200:
            raise RuntimeError(f"model metadata: HTTP {meta.status_code} {meta.text}")
        inputs = model_inputs(
            json.loads(meta.content or b"{}"),
            self.batch_size,
            self.shapes,
            self.seed,
            self.input_data,
        )
        if self.protocol == "tfserving":
            v = f"/versions/{self.model_version}" if self.model_version else ""
            body = tfserving_body(inputs)
            return f"/v1/models/{self.model}{v}:predict", body, {"content-type": "application/json"}
        body, headers = v2_body(inputs, binary=self.protocol == "v2-binary")
        return f"/v2/models/{self.model}{version}/infer", body, headers

    def infer(self) -> None:
        path, body, headers = self._requests[type(self).__name__]
        sent = time.perf_counter()
        with self.client.post(
            path,
            data=body,  # type: ignore[arg-type]  # bytes go through as they are
            headers=headers,
            name=f"infer {self.model}",
            catch_response=True,
        ) as response:
            done = time.perf_counter()
            if response.status_code == 200:
                _recorder.ok(sent, sent, done)
            else:
                kind = f"http {response.status_code}" if response.status_code else "connection"
                _recorder.error(kind, (response.text or str(response.error))[:200])
                response.failure(kind)

    tasks: ClassVar[list[Any]] = [infer]  # type: ignore[misc]  # Locust's own attribute


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--conveyor-output",
        default="",
        help="write Conveyor's results JSON (conveyor.bench/1) here when the run ends",
        include_in_web_ui=False,
    )


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    global _recorder
    _recorder = Recorder()
    _started[:] = [time.perf_counter()]
    _stopped.clear()


@events.test_stop.add_listener
def _stop(environment: Environment, **_: Any) -> None:
    _stopped[:] = [time.perf_counter()]


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any]) -> None:
    """On a worker: ship what was recorded since the last report, then start afresh."""
    global _recorder
    data["conveyor"] = pack(_recorder) | {"model": _model[0] if _model else ""}
    _recorder = Recorder()


@events.worker_report.add_listener
def _merge(client_id: str, data: dict[str, Any]) -> None:
    """On the master: merge a worker's histograms exactly."""
    if "conveyor" in data:
        _recorder.merge(unpack(data["conveyor"]))
        _workers.add(client_id)
        if not _model and data["conveyor"].get("model"):
            _model.append(data["conveyor"]["model"])


@events.quitting.add_listener
def _write(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    path = getattr(options, "conveyor_output", "") if options else ""
    if not path or isinstance(environment.runner, WorkerRunner):
        return
    end = _stopped[0] if _stopped else time.perf_counter()
    duration = end - _started[0] if _started else 0.0
    runner = environment.runner
    pattern = {
        "kind": "Locust",
        "users": getattr(options, "num_users", None),
        "distributed": isinstance(runner, MasterRunner),
        "workers": len(_workers),
    }
    result = to_json(_recorder, f"locust:{_model[0] if _model else '?'}", pattern, duration)
    result.update(run_context(vars(options)))
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
