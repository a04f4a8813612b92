"""One instance of a Python model: its worker process, seen from the core.

Lifecycle: `spawn` (blocking; at load time, and off the loop on restarts) starts the
worker with a socketpair and a memfd arena, then the handshake: `autocomplete` (first
instance only), `init`; `start(loop)` hands the socket to the event loop, where every
frame from the worker is dispatched (`done`, decoupled `send`s, BLS calls, logs,
metrics). The scheduler gives an instance one batch at a time (`execute`).

Supervision: a worker that exits, is killed (OOM, kill -9) or hangs past
`execute_timeout_secs` (then it is killed) fails only what it was executing, with the
cause; the instance is not ready until a new worker has initialised, restarted with
exponential backoff (counted in `conveyor_python_worker_restarts_total`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.errors import (
    ConveyorError,
    InternalError,
    ModelExecutionError,
    UnavailableError,
)
from conveyor.runtimes.base import (
    BatchItem,
    Caller,
    LoadedRuntime,
    NotStartedError,
    OnResponse,
    Outputs,
    RequestRuntime,
    TensorSpec,
)
from conveyor.runtimes.python.metrics import CustomMetrics
from conveyor.runtimes.python.stub import wire
from conveyor.types import InferRequest, InferResponse, RequestedOutput

log = logging.getLogger("conveyor.python")

BOOT = Path(__file__).parent / "stub" / "_boot.py"
_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
# Triton's TritonError codes -> HTTP status of the request they fail
_CODE_STATUS = {2: 404, 3: 400, 4: 503, 5: 400, 6: 409, 7: 499}


class WorkerStartError(Exception):
    """The worker could not start or initialise; the message says why."""


@dataclass(slots=True)
class WorkerSpec:
    model: str
    version: int
    instance_index: int
    instance_name: str
    interpreter: str
    model_file: Path
    config_json: dict[str, Any]  # Triton's JSON form, as initialize() sees it
    arena_bytes: int
    init_timeout_s: float
    execute_timeout_s: float
    autocomplete: bool = False
    env: dict[str, str] = field(default_factory=dict)


def _exit_cause(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else ""
        hint = " (out of memory, or kill -9)" if -code == signal.SIGKILL else ""
        return f"was killed by {name or f'signal {-code}'}{hint}"
    return f"exited with code {code}"


class _Link(asyncio.Protocol):
    """Frames off the worker's socket, on the loop."""

    def __init__(self, runtime: PythonRuntime) -> None:
        self.runtime = runtime
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        pos = 0
        while len(buf) - pos >= wire.FRAME.size:
            hlen, plen = wire.FRAME.unpack_from(buf, pos)
            end = pos + wire.FRAME.size + hlen + plen
            if len(buf) < end:
                break
            start = pos + wire.FRAME.size
            header = wire.loads(bytes(buf[start : start + hlen]))
            payload = bytes(buf[start + hlen : end]) if plen else b""
            pos = end
            try:
                self.runtime.on_frame(header, memoryview(payload))
            except Exception:
                log.exception("model %s: bad frame from its worker", self.runtime.label)
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.runtime.on_lost()


class PythonRuntime(LoadedRuntime, RequestRuntime):
    def __init__(
        self,
        spec: WorkerSpec,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        caller: Caller | None,
        metrics: CustomMetrics,
        output_types: dict[str, str],
    ) -> None:
        self.spec = spec
        self.label = f"{spec.model}:{spec.version} instance {spec.instance_index}"
        self._inputs = inputs
        self._outputs = outputs
        self._output_types = output_types  # the config's datatypes: answers are checked
        self.caller = caller
        self.metrics = metrics
        self.decoupled = bool(
            (spec.config_json.get("model_transaction_policy") or {}).get("decoupled")
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.arena: wire.Arena | None = None
        self.link: _Link | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_ready: Callable[[], None] = lambda: None
        self._ready = False
        self._down = "not started"
        self._closed = False
        self._kill_reason = ""
        self._exec_id = 0
        # exec id -> (its answer, its arena slot); oldest first. At most wire.SLOTS.
        self._inflight: dict[int, tuple[asyncio.Future[tuple[dict[str, Any], memoryview]], int]]
        self._inflight = {}
        self._timer: asyncio.TimerHandle | None = None  # the oldest batch's execute timeout
        self._streams: dict[int, OnResponse] = {}
        self._exec_tags: dict[int, list[int]] = {}  # exec id -> its decoupled requests' tags
        self._bls: set[asyncio.Task[None]] = set()  # BLS calls being served for this worker
        self._next_tag = 0
        self._failures = 0  # consecutive failed restarts
        self.restarts = 0
        self.native = False
        self.completed_config: dict[str, Any] | None = None

    # --- Runtime ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def down_reason(self) -> str:
        return self._down

    @property
    def failed(self) -> bool:
        return not self._ready and (self._failures > 0 or self._closed)

    @property
    def pending(self) -> int:
        """Batches executing and decoupled requests still answering (what a drain waits for)."""
        return len(self._inflight) + len(self._streams)

    # --- the process -------------------------------------------------------------------

    def spawn(self) -> None:
        """Start a worker and initialise the model in it. Blocking."""
        spec = self.spec
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        arena_fd = os.memfd_create(f"conveyor-{spec.model}-{spec.instance_index}")
        try:
            os.ftruncate(arena_fd, spec.arena_bytes)
            env = {**os.environ, **spec.env}
            proc = subprocess.Popen(
                [
                    spec.interpreter,
                    str(BOOT),
                    str(child.fileno()),
                    str(arena_fd),
                    str(spec.arena_bytes),
                    str(spec.model_file),
                ],
                pass_fds=(child.fileno(), arena_fd),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=False,
            )
            arena = wire.Arena(arena_fd, spec.arena_bytes)
        except OSError as exc:
            parent.close()
            raise WorkerStartError(f"cannot start {spec.interpreter}: {exc}") from exc
        finally:
            child.close()
            os.close(arena_fd)
        try:
            parent.settimeout(spec.init_timeout_s)
            if spec.autocomplete:
                self._send_blocking(parent, {"k": "autocomplete", "config": spec.config_json})
                reply, _ = self._recv_blocking(parent, proc, "initialize_timeout_secs")
                self.completed_config = reply["config"]
                spec.config_json = reply["config"]
                self.decoupled = bool(
                    (spec.config_json.get("model_transaction_policy") or {}).get("decoupled")
                )
                spec.autocomplete = False
            self._send_blocking(parent, {"k": "init", "args": self._init_args()})
            reply, _ = self._recv_blocking(parent, proc, "initialize_timeout_secs")
            self.native = bool(reply.get("native"))
        except BaseException:
            parent.close()
            arena.close()
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
            raise
        parent.settimeout(None)
        self.proc, self.sock, self.arena = proc, parent, arena

    def _init_args(self) -> dict[str, str]:
        spec = self.spec
        return {
            "model_config": wire.dumps(spec.config_json).decode(),
            "model_instance_kind": "CPU",
            "model_instance_name": spec.instance_name,
            "model_instance_device_id": "0",
            "model_instance_index": str(spec.instance_index),
            "model_repository": str(spec.model_file.parent.parent),
            "model_version": str(spec.version),
            "model_name": spec.model,
        }

    @staticmethod
    def _send_blocking(sock: socket.socket, header: dict[str, Any]) -> None:
        sock.sendall(b"".join(wire.Writer(None).frame(header)))

    def _recv_blocking(
        self, sock: socket.socket, proc: subprocess.Popen[bytes], timeout_setting: str
    ) -> tuple[dict[str, Any], memoryview]:
        """The worker's answer to a step taken before the loop owns the socket (handshake,
        warm-up), within the socket's timeout (`timeout_setting` names it); what the worker
        logs or reports as metrics meanwhile is handled on the way, BLS refused."""
        while True:
            try:
                header, payload = wire.read_frame(sock)
            except TimeoutError:
                raise WorkerStartError(
                    f"the worker did not answer within {sock.gettimeout() or 0:g} s "
                    f"({timeout_setting})"
                ) from None
            except (EOFError, OSError):
                code = proc.wait(timeout=5)
                raise WorkerStartError(
                    f"the worker {_exit_cause(code)} while loading "
                    "(its output is in the server log)"
                ) from None
            kind = header.get("k")
            if kind == "log":
                self._log(header)
            elif kind == "metric":
                self.metrics.apply(self.spec.model, header)
            elif kind == "error":
                raise WorkerStartError(header["msg"])
            elif kind == "bls":  # as in Triton: no BLS outside execute
                self._refuse_bls(sock, header)
            elif kind in ("config", "ready", "done"):
                return header, memoryview(payload)

    @staticmethod
    def _refuse_bls(sock: socket.socket, header: dict[str, Any]) -> None:
        reply = {
            "k": "bls_reply",
            "id": header.get("id"),
            "final": True,
            "err": "BLS is only supported during the 'execute' function",
            "code": 5,
        }
        sock.sendall(b"".join(wire.Writer(None).frame(reply)))

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Blocking, before `start` only: one request (warm-up at load time)."""
        assert self.sock is not None and self.arena is not None and self.proc is not None
        writer = wire.Writer(None)
        req = {"tag": 0, "in": [writer.tensor(n, a) for n, a in inputs.items()], "out": outputs}
        rows = next(iter(inputs.values())).shape[0] if inputs else 1
        req["rows"] = rows
        self.sock.sendall(b"".join(writer.frame({"k": "exec", "id": 0, "reqs": [req]})))
        timeout = self.spec.execute_timeout_s
        self.sock.settimeout(timeout if timeout > 0 else None)
        try:
            header, payload = self._recv_blocking(self.sock, self.proc, "execute_timeout_secs")
        finally:
            self.sock.settimeout(None)
        result = self._results(header, payload, [BatchItem(inputs, outputs, rows, None)])
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def start(self, loop: asyncio.AbstractEventLoop, on_ready: Callable[[], None]) -> None:
        """May be called from the loading thread (a reload): hand over to the loop."""
        self.loop = loop
        self.on_ready = on_ready
        loop.call_soon_threadsafe(lambda: loop.create_task(self._attach()))

    async def _attach(self) -> None:
        assert self.loop is not None and self.sock is not None
        self.sock.setblocking(False)
        _, link = await self.loop.create_unix_connection(lambda: _Link(self), sock=self.sock)
        self.link = link
        self._ready, self._down = True, ""
        self.on_ready()

    def on_lost(self) -> None:
        proc = self.proc
        code = None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=1.0)
        self._ready = False
        self.link = None
        if self._closed:
            return
        cause = self._kill_reason or _exit_cause(code)
        self._kill_reason = ""
        pid = proc.pid if proc is not None else "?"
        self._down = f"its worker process (pid {pid}) {cause}; restarting"
        log.error("python model %s: worker process %s %s", self.label, pid, cause)
        error = UnavailableError(
            f"python model '{self.spec.model}' instance {self.spec.instance_index}: its worker "
            f"process {cause} while executing this request; it is being restarted"
        )
        inflight, self._inflight = self._inflight, {}
        for i, (exec_id, (future, _)) in enumerate(inflight.items()):
            # every frame sent before it died has been read: the oldest batch was the one
            # executing; the worker never started the others (queued again: their streams
            # must not end here)
            if i > 0:
                for tag in self._exec_tags.pop(exec_id, []):
                    self._streams.pop(tag, None)
            if not future.done():
                future.set_exception(error if i == 0 else NotStartedError(error.message))
        self._exec_tags.clear()
        for task in self._bls:  # their answers would reach the next worker: never send them
            task.cancel()
        self._bls.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        streams, self._streams = self._streams, {}
        for on_response in streams.values():
            on_response(None, error, True, {})
        if self.arena is not None:
            with contextlib.suppress(BufferError):
                self.arena.close()
            self.arena = None
        assert self.loop is not None
        self.loop.create_task(self._restart())

    async def _restart(self) -> None:
        while not self._closed:
            delay = _BACKOFF_S[min(self._failures, len(_BACKOFF_S) - 1)]
            await asyncio.sleep(delay)
            if self._closed:
                return
            try:
                await asyncio.to_thread(self.spawn)
            except Exception as exc:
                self._failures += 1
                self._down = f"restarting its worker failed: {exc}"
                log.error("python model %s: restart failed: %s", self.label, exc)
                self.on_ready()  # not ready, but the scheduler must fail what waits for it
                continue
            if self._closed:  # unloaded while the new worker was starting
                self.close()
                return
            self.restarts += 1
            self.metrics.restarts[(self.spec.model, str(self.spec.version))] = (
                self.metrics.restarts.get((self.spec.model, str(self.spec.version)), 0) + 1
            )
            self._failures = 0
            await self._attach()
            log.info("python model %s: worker restarted (pid %s)", self.label, self.proc.pid)  # type: ignore[union-attr]
            return

    def _write(self, parts: list[bytes | memoryview]) -> None:
        if self.link is None or self.link.transport is None:
            raise UnavailableError(f"python model '{self.label}' is restarting its worker")
        if len(parts) <= 3:
            self.link.transport.write(b"".join(parts))  # one syscall for a small frame
        else:
            self.link.transport.writelines(parts)

    # --- executing ------------------------------------------------------------------------

    async def execute(self, batch: list[BatchItem]) -> list[Outputs | BaseException]:
        if not self._ready or self.arena is None or self.loop is None:
            raise UnavailableError(
                f"python model '{self.spec.model}' is not ready: {self._down or 'starting'}"
            )
        arena = self.arena
        busy = {slot for _, slot in self._inflight.values()}
        slot = next(s for s in range(wire.SLOTS) if s not in busy)  # the scheduler bounds it
        arena.to_worker[slot].reset()
        writer = wire.Writer(arena.to_worker[slot])
        self._exec_id += 1
        exec_id = self._exec_id
        reqs = []
        streams: dict[int, OnResponse] = {}
        for item in batch:
            self._next_tag += 1
            tag = self._next_tag
            req: dict[str, Any] = {
                "tag": tag,
                "in": [writer.tensor(n, a) for n, a in item.inputs.items()],
                "out": item.outputs,
                "rows": item.rows,
            }
            ctx = item.context
            if ctx is not None:
                if ctx.id:
                    req["id"] = ctx.id
                if ctx.parameters:
                    req["params"] = ctx.parameters
                if self.decoupled and ctx.on_response is not None:
                    streams[tag] = ctx.on_response
            reqs.append(req)
        future: asyncio.Future[tuple[dict[str, Any], memoryview]] = self.loop.create_future()
        self._write(writer.frame({"k": "exec", "id": exec_id, "slot": slot, "reqs": reqs}))
        self._streams.update(streams)  # only once sent: a failed write leaves nothing behind
        self._exec_tags[exec_id] = list(streams)
        self._inflight[exec_id] = (future, slot)
        if len(self._inflight) == 1:
            self._arm_timeout()
        try:
            header, payload = await future
        except BaseException:
            for tag in self._exec_tags.pop(exec_id, []):
                self._streams.pop(tag, None)  # its stream ends with the error raised here
            raise
        finally:
            if self._inflight.pop(exec_id, None) is not None and self._timer is not None:
                # the oldest batch ended (batches end in order): time the next from now
                self._timer.cancel()
                self._timer = None
                if self._inflight:
                    self._arm_timeout()
        results = self._results(header, payload, batch)
        for tag, result in zip(self._exec_tags.pop(exec_id, []), results, strict=False):
            if isinstance(result, BaseException):
                self._streams.pop(tag, None)
        return results

    def _arm_timeout(self) -> None:
        timeout = self.spec.execute_timeout_s
        if timeout > 0 and self.loop is not None:
            self._timer = self.loop.call_later(timeout, self._hung)

    def _hung(self) -> None:
        self._timer = None
        if self.proc is None or not self._inflight:
            return
        self._kill_reason = (
            f"did not finish executing within {self.spec.execute_timeout_s:g} s "
            "(execute_timeout_secs) and was killed"
        )
        with contextlib.suppress(OSError):
            self.proc.kill()

    def _error(self, message: str, code: int = 1) -> ModelExecutionError:
        from http import HTTPStatus

        status = HTTPStatus(_CODE_STATUS.get(code, 500)) if code in _CODE_STATUS else None
        return ModelExecutionError(
            f"python model '{self.spec.model}': {message}",
            status or HTTPStatus.INTERNAL_SERVER_ERROR,
        )

    def _results(
        self, header: dict[str, Any], payload: memoryview, batch: list[BatchItem]
    ) -> list[Outputs | BaseException]:
        if "err" in header:
            error = self._error(header["err"])
            return [error] * len(batch)
        assert self.arena is not None
        whole = self.arena.whole
        results: list[Outputs | BaseException] = []
        for item, res in zip(batch, header["res"], strict=True):
            if res is None:  # decoupled: the answers travel as `send` frames
                results.append({})
                continue
            if "err" in res:
                results.append(self._error(res["err"], res.get("code", 1)))
                continue
            outputs = dict(wire.read_tensor(d, whole, payload, copy=True) for d in res["out"])
            results.append(self._check(outputs, item.outputs))
        return results

    def _check(self, outputs: Outputs, wanted: list[str]) -> Outputs | BaseException:
        """Every requested output is there, in the config's datatype. numpy's defaults
        (int64, float64) for an INT32/FP32 output are cast, as long as no value changes
        for integers; another kind (text for numbers, numbers for BYTES) is an error."""
        for name in wanted:
            arr = outputs.get(name)
            if arr is None:
                return self._error(f"the response lacks output '{name}'")
            expected = self._output_types.get(name)
            got = wire.datatype_of(arr)
            if expected is None or got == expected:
                continue
            target = wire.DTYPES[expected]
            if arr.dtype.kind in "iuf" and target.kind in "iuf":
                cast = arr.astype(target)
                if target.kind == "f" or np.array_equal(cast, arr):
                    outputs[name] = cast
                    continue
            return self._error(f"output '{name}' is {got}, but the model's config says {expected}")
        return outputs

    # --- frames from the worker -------------------------------------------------------------

    def on_frame(self, header: dict[str, Any], payload: memoryview) -> None:
        kind = header["k"]
        if kind == "done":
            entry = self._inflight.get(header.get("id", -1))
            if entry is not None and not entry[0].done():
                entry[0].set_result((header, payload))
        elif kind == "send":
            self._on_send(header, payload)
        elif kind == "bls":
            self._on_bls(header, payload)
        elif kind == "log":
            self._log(header)
        elif kind == "metric":
            self.metrics.apply(self.spec.model, header)

    def _log(self, header: dict[str, Any]) -> None:
        level = {"warning": logging.WARNING, "error": logging.ERROR, "verbose": logging.DEBUG}
        logging.getLogger(f"conveyor.python.{self.spec.model}").log(
            level.get(header.get("lvl", "info"), logging.INFO), "%s", header.get("msg", "")
        )

    def _on_send(self, header: dict[str, Any], payload: memoryview) -> None:
        tag = header["tag"]
        on_response = self._streams.get(tag)
        if on_response is None:
            log.warning("python model %s: a response for a finished request", self.label)
            return
        final = bool(header.get("flags", 0) & 1)
        if final:
            del self._streams[tag]
        if "err" in header:
            self._streams.pop(tag, None)
            on_response(None, self._error(header["err"]), True, {})
            return
        outputs = None
        if "out" in header:
            assert self.arena is not None
            outputs = dict(
                wire.read_tensor(d, self.arena.whole, payload, copy=True) for d in header["out"]
            )
        on_response(outputs, None, final, header.get("params") or {})

    def _on_bls(self, header: dict[str, Any], payload: memoryview) -> None:
        assert self.arena is not None and self.loop is not None
        inputs = dict(
            wire.read_tensor(d, self.arena.whole, payload, copy=True) for d in header["in"]
        )
        params = dict(header.get("params") or {})
        if header.get("timeout"):
            params["timeout"] = int(header["timeout"])
        request = InferRequest(
            model=header["model"],
            inputs=inputs,
            version=header.get("version", ""),
            id=header.get("rid") or None,
            outputs=[RequestedOutput(n) for n in header["out"]] or None,
            parameters=params,
        )
        task = self.loop.create_task(
            self._serve_bls(header["id"], request, bool(header["decoupled"]), self.link)
        )
        self._bls.add(task)
        task.add_done_callback(self._bls.discard)

    async def _serve_bls(
        self, call_id: int, request: InferRequest, decoupled: bool, link: _Link | None
    ) -> None:
        """Answer one BLS call, only ever to the worker that made it (`link`): a worker
        restarted meanwhile numbers its calls afresh."""
        if self.caller is None:
            self._bls_reply(link, call_id, None, InternalError("BLS is not wired in"), True)
            return
        try:
            if decoupled:
                async for response in self.caller.infer_stream(request):
                    final = bool(response.parameters.get("triton_final_response"))
                    self._bls_reply(link, call_id, response, None, final)
                    if final:
                        return
                self._bls_reply(link, call_id, None, None, True)
            else:
                self._bls_reply(link, call_id, await self.caller.infer(request), None, True)
        except ConveyorError as exc:
            self._bls_reply(link, call_id, None, exc, True)
        except Exception as exc:
            log.exception("python model %s: BLS call failed", self.label)
            self._bls_reply(link, call_id, None, InternalError(f"BLS call failed: {exc}"), True)

    def _bls_reply(
        self,
        link: _Link | None,
        call_id: int,
        response: InferResponse | None,
        error: ConveyorError | None,
        final: bool,
    ) -> None:
        # inline: the worker may read this after the arena was reused for the next batch
        writer = wire.Writer(None)
        header: dict[str, Any] = {"k": "bls_reply", "id": call_id, "final": final}
        if error is not None:
            header["err"] = error.message
            header["code"] = {400: 3, 404: 2, 503: 4}.get(int(error.status), 1)
        elif response is not None:
            header["out"] = [writer.tensor(n, a) for n, a in response.outputs.items()]
            header["params"] = {
                k: v for k, v in response.parameters.items() if k != "triton_final_response"
            }
        if link is None or link is not self.link:
            return  # the worker that asked is gone
        with contextlib.suppress(ConveyorError):  # the worker is gone: nobody to answer
            self._write(writer.frame(header))

    # --- stopping ---------------------------------------------------------------------

    def close(self) -> None:
        """Ask the worker to finalize() and exit, without waiting for it here (this runs on
        the event loop during reloads): a thread reaps it, killing it after 5 s."""
        self._closed = True
        self._ready = False
        # what is still waiting on this worker ends now, with a reason (after the drain)
        error = UnavailableError(f"model '{self.spec.model}' was unloaded")
        inflight, self._inflight = self._inflight, {}
        for future, _ in inflight.values():
            if not future.done():
                future.set_exception(error)
        streams, self._streams = self._streams, {}
        for on_response in streams.values():
            on_response(None, error, True, {})
        for task in self._bls:
            task.cancel()
        proc = self.proc
        if proc is None:
            return
        stop = b"".join(wire.Writer(None).frame({"k": "stop"}))
        try:
            if self.link is not None and self.link.transport is not None:
                self.link.transport.write(stop)
                self.link.transport.close()  # after the pending write; the worker sees EOF
            elif self.sock is not None:
                self.sock.setblocking(True)
                self.sock.sendall(stop)
                self.sock.close()
        except OSError:
            pass
        threading.Thread(target=_reap, args=(proc,), name="conveyor-reap", daemon=True).start()
        if self.arena is not None:
            with contextlib.suppress(BufferError):
                self.arena.close()
            self.arena = None


def _reap(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    # longer than the 10 s the worker gives finalize() before it exits by itself
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def default_interpreter() -> str:
    return sys.executable
