"""One Python model instance: the worker process's two threads.

The reader thread reads every frame from the core and dispatches it: work (`autocomplete`,
`init`, `exec`, `stop`) goes to the main thread's inbox; BLS replies go straight to the
waiting call, so a model blocked in `exec()` (or any thread of it) gets its answer
whatever the main thread does. The main thread runs the model, one batch at a time.

Writes come from any thread (the main one, decoupled senders, loggers) under one lock.
Only the main thread, while `execute` runs, writes tensors into the worker->core arena
region of the batch's slot: it is reset when a batch of that slot starts, by which time
the core has read every frame of the slot's previous batch (it reuses a slot only after
that batch's `done`). Other threads send their tensors inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import os
import queue
import socket
import sys
import threading
import traceback
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from . import native, pb_utils, wire


def describe(exc: BaseException) -> str:
    if isinstance(exc, pb_utils.TritonModelException | native.RequestError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Waiter:
    """A BLS call's answers, filled by the reader thread."""

    def __init__(self, decoupled: bool, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.decoupled = decoupled
        self.cond = threading.Condition()
        self.items: deque[pb_utils.InferenceResponse] = deque()
        self.final = False
        self.loop = loop
        self.future: asyncio.Future[Any] | None = loop.create_future() if loop else None

    def put(self, response: pb_utils.InferenceResponse, final: bool) -> None:
        with self.cond:
            self.items.append(response)
            self.final = final
            self.cond.notify_all()
        if final and self.loop is not None:
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        assert self.future is not None
        if not self.future.done():
            items = list(self.items)
            self.future.set_result(iter(items) if self.decoupled else items[0])

    def get(self) -> pb_utils.InferenceResponse:
        with self.cond:
            self.cond.wait_for(lambda: self.final)
            return self.items[0]

    def iterate(self) -> Any:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.items or self.final)
                if not self.items:
                    return
                item = self.items.popleft()
                last = self.final and not self.items
            yield item
            if last:
                return


class _Function:
    """A plain function as a model (a pipeline's function step)."""

    def __init__(self, fn: Any) -> None:
        self.infer = fn


class Worker:
    def __init__(self, sock: socket.socket, arena: wire.Arena, model_file: Path) -> None:
        self.sock = sock
        self.arena = arena
        self.model_file = model_file
        self.inbox: queue.SimpleQueue[tuple[dict[str, Any], bytearray] | None] = queue.SimpleQueue()
        self.wlock = threading.Lock()
        self.pending: dict[int, _Waiter] = {}
        self.next_id = 0
        self.main_ident = threading.get_ident()
        self.in_execute = False
        self.slot = 0
        self.stopping = False
        self.module: Any = None
        self.model: Any = None
        self.native = False
        self.decoupled = False
        self.batched = False
        self.captured: dict[int, pb_utils.InferenceResponse | None] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    # --- sending -----------------------------------------------------------------------

    def writer(self) -> wire.Writer:
        own = self.in_execute and threading.get_ident() == self.main_ident
        return wire.Writer(self.arena.to_core[self.slot] if own else None)

    def send(self, header: dict[str, Any], writer: wire.Writer | None = None) -> None:
        parts = (writer or wire.Writer(None)).frame(header)
        try:
            with self.wlock:
                if len(parts) <= 3 and sum(len(p) for p in parts) < 65536:
                    self.sock.sendall(b"".join(parts))
                else:
                    for part in parts:
                        self.sock.sendall(part)
        except OSError:
            if not self.stopping:
                raise
            # being stopped: the core no longer listens; finalize() still runs

    def _outputs(self, writer: wire.Writer, tensors: list[pb_utils.Tensor]) -> list[Any]:
        return [writer.tensor(t.name(), t.as_numpy()) for t in tensors]

    # --- pb_utils.Host -----------------------------------------------------------------

    def _bls_frame(self, request: pb_utils.InferenceRequest, waiter: _Waiter) -> None:
        with self.wlock:
            self.next_id += 1
            call_id = self.next_id
        self.pending[call_id] = waiter
        writer = self.writer()
        header = {
            "k": "bls",
            "id": call_id,
            "model": request.model_name,
            "version": str(request.model_version) if request.model_version >= 0 else "",
            "out": list(request.requested_output_names()),
            "in": self._outputs(writer, request.inputs()),
            "params": request._parameters,
            "decoupled": waiter.decoupled,
            "timeout": int(request.timeout() or 0),
            "rid": request.request_id(),
        }
        self.send(header, writer)

    def bls(
        self, request: pb_utils.InferenceRequest, decoupled: bool, timeout: float | None
    ) -> Any:
        waiter = _Waiter(decoupled)
        self._bls_frame(request, waiter)
        return waiter.iterate() if decoupled else waiter.get()

    def bls_async(self, request: pb_utils.InferenceRequest, decoupled: bool) -> Any:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(decoupled, loop)
        self._bls_frame(request, waiter)
        assert waiter.future is not None
        return waiter.future

    def send_response(
        self, tag: int, response: pb_utils.InferenceResponse | None, flags: int
    ) -> None:
        if not self.decoupled:
            # a non-decoupled model may answer through the sender too: exactly one response
            if response is not None:
                self.captured[tag] = response
            return
        header: dict[str, Any] = {"k": "send", "tag": tag, "flags": flags}
        writer = self.writer()
        if response is not None:
            if response.has_error():
                err = response.error()
                header["err"] = err.message() if err is not None else "error"
            else:
                header["out"] = self._outputs(writer, response.output_tensors())
                header["params"] = response._parameters
        self.send(header, writer)

    def log(self, level: str, message: str) -> None:
        self.send({"k": "log", "lvl": level, "msg": message})

    def metric(
        self, family: pb_utils.MetricFamily, labels: dict[str, str], op: str, value: float
    ) -> None:
        self.send(
            {
                "k": "metric",
                "name": family.name,
                "desc": family.description,
                "kind": "counter" if family.kind == pb_utils.MetricFamily.COUNTER else "gauge",
                "labels": labels,
                "op": op,
                "v": value,
            }
        )

    # --- reading -----------------------------------------------------------------------

    def read_loop(self) -> None:
        try:
            while True:
                header, payload = wire.read_frame(self.sock)
                if header["k"] == "bls_reply":
                    self._bls_reply(header, payload)
                else:
                    if header["k"] == "stop":
                        self.stopping = True
                        # finalize() gets 10 s; then the process ends regardless
                        deadline = threading.Timer(10.0, os._exit, args=(0,))
                        deadline.daemon = True
                        deadline.start()
                    self.inbox.put((header, payload))
        except (EOFError, OSError):
            if self.stopping:
                return  # asked to stop: the main thread finalizes and exits
            # the core is gone: nothing is left to serve
            os._exit(0)

    def _bls_reply(self, header: dict[str, Any], payload: bytearray) -> None:
        waiter = self.pending.get(header["id"])
        if waiter is None:
            return
        final = bool(header.get("final", True))
        if final:
            del self.pending[header["id"]]
        if "err" in header:
            response = pb_utils.InferenceResponse(
                error=pb_utils.TritonError(header["err"], header.get("code", 1))
            )
        else:
            tensors = [
                pb_utils.Tensor(*wire.read_tensor(d, self.arena.whole, memoryview(payload), True))
                for d in header.get("out", [])
            ]
            response = pb_utils.InferenceResponse(tensors, parameters=header.get("params"))
        waiter.put(response, final)

    # --- the model ------------------------------------------------------------------------

    def import_model(self) -> None:
        pb_utils.model_dir = str(self.model_file.parent)
        spec = importlib.util.spec_from_file_location("model", self.model_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {self.model_file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["model"] = module
        spec.loader.exec_module(module)
        self.module = module
        self.native = not hasattr(module, "TritonPythonModel")

    def autocomplete(self, config: dict[str, Any]) -> dict[str, Any]:
        cls = None if self.native else self.module.TritonPythonModel
        if cls is None or not hasattr(cls, "auto_complete_config"):
            return config
        completed = cls.auto_complete_config(pb_utils.ModelConfig(config))
        result: dict[str, Any] = completed.as_dict()
        return result

    def initialize(self, args: dict[str, str]) -> None:
        config = wire.loads(args["model_config"].encode())
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.batched = int(config.get("max_batch_size", 0) or 0) > 0
        function = (config.get("parameters", {}).get("conveyor_function") or {}).get("string_value")
        if function:  # a pipeline's function step: NAME(inputs) -> outputs
            fn = getattr(self.module, function, None)
            if not callable(fn):
                raise ImportError(f"{self.model_file.name} defines no function {function!r}")
            self.model = _Function(fn)
            self.native = True
            return
        if self.native and not hasattr(self.module, "Model"):
            raise ImportError(
                f"{self.model_file.name} defines neither TritonPythonModel (Triton's python "
                "backend) nor Model (Conveyor's form)"
            )
        if self.native:
            self.model = self.module.Model()
            if hasattr(self.model, "load"):
                ctx = native.Context(
                    model_name=args["model_name"],
                    model_version=int(args["model_version"]),
                    model_dir=self.model_file.parent,
                    instance_name=args["model_instance_name"],
                    instance_index=int(args.get("model_instance_index", 0)),
                    config=config,
                    parameters={
                        k: v.get("string_value", "")
                        for k, v in config.get("parameters", {}).items()
                    },
                )
                self.model.load(ctx)
            return
        self.model = self.module.TritonPythonModel()
        if hasattr(self.model, "initialize"):
            result = self.model.initialize(args)
            if inspect.iscoroutine(result):
                self._run_async(result)

    def _run_async(self, coro: Any) -> Any:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(coro)

    def execute(self, header: dict[str, Any], payload: bytearray) -> None:
        self.slot = int(header.get("slot", 0))
        self.arena.to_core[self.slot].reset()
        view, inline = self.arena.whole, memoryview(payload)
        copy = self.decoupled  # a decoupled model may use its inputs after execute returns
        batch = [
            {
                name: arr
                for name, arr in (wire.read_tensor(d, view, inline, copy) for d in req["in"])
            }
            for req in header["reqs"]
        ]
        self.in_execute = True
        try:
            if self.native:
                results = self._execute_native(header, batch)
            else:
                results = self._execute_triton(header, batch)
            writer = self.writer()
            res: list[Any] = []
            for req, result in zip(header["reqs"], results, strict=True):
                if result is None:
                    res.append(None)
                elif isinstance(result, str):
                    res.append({"err": result})
                elif isinstance(result[0], str):  # (message, TritonError code)
                    res.append({"err": result[0], "code": result[1]})
                else:
                    outputs, params = result
                    wanted = req["out"]
                    res.append(
                        {
                            "out": [writer.tensor(n, a) for n, a in outputs.items() if n in wanted],
                            "params": params,
                        }
                    )
            self.send({"k": "done", "id": header["id"], "res": res}, writer)
        except Exception as exc:
            traceback.print_exc()
            self.send({"k": "done", "id": header["id"], "err": describe(exc)})
        finally:
            self.in_execute = False

    def _execute_triton(
        self, header: dict[str, Any], batch: list[dict[str, np.ndarray]]
    ) -> list[Any]:
        requests = []
        for req, inputs in zip(header["reqs"], batch, strict=True):
            r = pb_utils.InferenceRequest(
                model_name=header.get("model", ""),
                requested_output_names=req["out"],
                inputs=[pb_utils.Tensor(n, a) for n, a in inputs.items()],
                request_id=req.get("id") or "",
                correlation_id=req.get("corr", 0),
                parameters=req.get("params") or {},
                flags=req.get("flags", 0),
            )
            r._tag = req["tag"]
            requests.append(r)
        self.captured = {}
        try:
            returned = self.model.execute(requests)
            if inspect.iscoroutine(returned):
                returned = self._run_async(returned)
        except Exception as exc:
            traceback.print_exc()
            return [describe(exc)] * len(requests)
        if self.decoupled:
            if returned is not None:
                return [
                    "a decoupled model's execute must return None (it answers through "
                    "the response sender)"
                ] * len(requests)
            return [None] * len(requests)
        if returned is None:
            returned = [self.captured.get(r._tag) for r in requests]
        if not isinstance(returned, list | tuple) or len(returned) != len(requests):
            got = len(returned) if isinstance(returned, list | tuple) else type(returned).__name__
            message = f"execute returned {got} responses for {len(requests)} requests"
            return [message] * len(requests)
        results: list[Any] = []
        for response in returned:
            if not isinstance(response, pb_utils.InferenceResponse):
                results.append(
                    f"execute returned a {type(response).__name__}, not an InferenceResponse"
                )
            elif response.has_error():
                err = response.error()
                results.append((err.message(), err.code()) if err is not None else "error")
            else:
                outputs = {t.name(): t.as_numpy() for t in response.output_tensors()}
                results.append((outputs, response._parameters))
        return results

    def _execute_native(
        self, header: dict[str, Any], batch: list[dict[str, np.ndarray]]
    ) -> list[Any]:
        rows = [int(req.get("rows", 1)) for req in header["reqs"]]
        if len(batch) > 1:
            merged = {n: np.concatenate([b[n] for b in batch]) for n in batch[0]}
            try:
                return self._split(self.model.infer(merged), rows)
            except Exception:
                traceback.print_exc()  # then each request alone: a bad one fails by itself
        results: list[Any] = []
        for inputs, n in zip(batch, rows, strict=True):
            try:
                results.extend(self._split(self.model.infer(inputs), [n]))
            except Exception as exc:
                results.append(describe(exc))
        return results

    def _split(self, outputs: Any, rows: list[int]) -> list[Any]:
        if not isinstance(outputs, dict):
            raise TypeError(f"infer returned a {type(outputs).__name__}, not a dict of arrays")
        outputs = {k: np.asarray(v) for k, v in outputs.items()}
        if len(rows) == 1:
            return [(outputs, {})]
        total = sum(rows)
        for name, arr in outputs.items():
            if arr.ndim == 0 or arr.shape[0] != total:
                raise ValueError(f"output '{name}' has shape {list(arr.shape)} for {total} rows")
        parts: list[Any] = []
        start = 0
        for n in rows:
            parts.append(({k: v[start : start + n] for k, v in outputs.items()}, {}))
            start += n
        return parts

    def finalize(self) -> None:
        if self.model is not None:
            end = getattr(self.model, "finalize" if not self.native else "close", None)
            if end is not None:
                with contextlib.suppress(Exception):
                    end()

    # --- the main loop ----------------------------------------------------------------------

    def run(self) -> int:
        pb_utils.host = self
        threading.Thread(target=self.read_loop, name="conveyor-reader", daemon=True).start()
        while (item := self.inbox.get()) is not None:
            header, payload = item
            kind = header["k"]
            if kind == "exec":
                self.execute(header, payload)
                continue
            if kind == "stop":
                self.finalize()
                return 0
            try:
                if kind == "autocomplete":
                    if self.module is None:
                        self.import_model()
                    self.send({"k": "config", "config": self.autocomplete(header["config"])})
                elif kind == "init":
                    if self.module is None:
                        self.import_model()
                    self.initialize(header["args"])
                    self.send({"k": "ready", "native": self.native})
            except BaseException as exc:
                traceback.print_exc()
                self.send({"k": "error", "msg": describe(exc)})
                return 1
        return 0
