"""The transport-neutral data plane: find the model version, validate, schedule, answer.

REST, gRPC and the in-process API all call this one object with decoded requests
(named numpy arrays) and encode what it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import orjson

from conveyor import __version__
from conveyor.errors import (
    ConveyorError,
    InvalidRequestError,
    ModelLoadError,
    UnavailableError,
    failure_reason,
)
from conveyor.limits import Limits
from conveyor.pipelines import ensemble
from conveyor.pipelines.ensemble import PipelineRuntime
from conveyor.protocol.tensors import from_bytes, to_bytes
from conveyor.replies import Withdrawable, awaiting
from conveyor.repository.config import (
    ConfigError,
    ModelConfig,
    parse_labels,
    parse_split,
    to_triton_json,
)
from conveyor.repository.manager import READY, ModelEntry, ModelRepository, ModelVersion
from conveyor.runtimes.base import Outputs, RequestContext
from conveyor.sharedmem import SharedMemoryRegistry
from conveyor.types import InferRequest, InferResponse, RequestedOutput
from conveyor.validation import Signature, reshape_outputs, signature, validate_inputs

log = logging.getLogger("conveyor.dataplane")
access = logging.getLogger("conveyor.access")

EXTENSIONS = [
    "binary_tensor_data",
    "model_configuration",
    "schedule_policy",
    "parameters",
    "statistics",
    "system_shared_memory",
    "model_repository",
]


class DataPlane:
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository
        self.ready = False  # set by the server once models are loaded; cleared on drain
        # the server listens before its models load: until then inference is a 503 (a
        # load balancer retries it elsewhere), not "unknown model"
        self.starting = False
        self.shm = SharedMemoryRegistry()
        self.model_control_mode = "none"
        self.drain_timeout_s = 30.0
        self._control = asyncio.Lock()  # one load/unload at a time
        self.access_log = False
        self.limits = Limits()  # request limits (conveyor.limits), set by the server

    # --- health and metadata ---------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "conveyor", "version": __version__, "extensions": EXTENSIONS}

    def model_ready(self, name: str, version: str = "") -> bool:
        mv = self.repository.get(name, version)  # raises for unknown/unavailable
        return self.ready and mv.scheduler.ready

    def step_config(self, name: str, version: str = "") -> ModelConfig:
        """The config of a loaded model version (what an ensemble checks its steps with)."""
        return self.repository.get(name, version).config

    def is_decoupled(self, name: str, version: str = "") -> bool:
        return self.repository.get(name, version).config.decoupled

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        mv = self.repository.get(name, version)
        c = mv.config
        batch = [-1] if c.max_batch_size > 0 else []
        entry = self.repository.models[name]
        return {
            "name": name,
            "versions": [str(v) for v in sorted(entry.versions)],
            "platform": c.platform,
            "inputs": [
                {"name": t.name, "datatype": t.datatype, "shape": [*batch, *t.dims]}
                for t in c.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.datatype, "shape": [*batch, *t.dims]}
                for t in c.outputs
            ],
        }

    def model_signatures(self, name: str, version: str = "") -> tuple[str, dict[str, Any]]:
        """The signature a model version serves and every signature its file has, with
        their tensors (TF-Serving's metadata). A model without signatures (all but
        TensorFlow's) has one, `serving_default`: its config's tensors."""
        mv = self.repository.get(name, version)
        runtimes = mv.scheduler.runtimes
        found = getattr(runtimes[0], "signatures", None) if runtimes else None
        if not found:
            meta = self.model_metadata(name, version)
            return "serving_default", {
                "serving_default": {"inputs": meta["inputs"], "outputs": meta["outputs"]}
            }

        def tensors(specs: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

        return str(getattr(runtimes[0], "signature", "serving_default")), {
            sig: {"inputs": tensors(ins), "outputs": tensors(outs)}
            for sig, (ins, outs) in found.items()
        }

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        return to_triton_json(self.repository.get(name, version).config)

    def function_steps(self) -> list[ModelVersion]:
        """A native pipeline's function steps as model versions of their own (named
        `pipeline:function`), for the statistics API and /metrics: they run behind
        schedulers of their own, outside the repository."""
        out = []
        for entry in self.repository.models.values():
            for mv in entry.versions.values():
                runtimes = mv.scheduler.runtimes
                if runtimes and isinstance(runtimes[0], PipelineRuntime):
                    out += [
                        ModelVersion(s.config.name, mv.version, s.config, s)
                        for s in runtimes[0].function_steps
                    ]
        return out

    def statistics(self, name: str = "", version: str = "") -> list[dict[str, Any]]:
        """Triton's statistics for one model version, every version of a model, or all
        (a native pipeline's function steps included, as `pipeline:function`)."""
        if name:
            if version:
                versions = [self.repository.get(name, version)]
            else:
                self.repository.get(name)  # raises for unknown or unavailable
                versions = list(self.repository.models[name].versions.values())
        else:
            versions = [
                mv for entry in self.repository.models.values() for mv in entry.versions.values()
            ]
            versions += self.function_steps()
        return [
            mv.scheduler.stats.to_triton(mv.name, mv.version_str)
            for mv in sorted(versions, key=lambda m: (m.name, m.version))
        ]

    def resolve_version(self, name: str, version: str = "") -> str:
        """The version a version string (number, label or empty) routes to now."""
        return self.repository.get(name, version).version_str

    def set_routing(self, name: str, labels: Any, split: Any) -> None:
        """Repository API: set version labels and/or the traffic split of a loaded model."""
        try:
            parsed_labels = None if labels is None else parse_labels(labels)
            parsed_split = None if split is None else parse_split(split)
        except ConfigError as exc:
            raise InvalidRequestError(str(exc)) from None
        self.repository.set_routing(name, parsed_labels, parsed_split)

    async def load_model(self, name: str, config_json: str | None = None) -> None:
        """Repository API: load or reload a model (explicit model control only). Every
        failure, an override config that is not JSON included, is a ModelLoadError saying
        "failed to load '<name>'", as Triton words it (its example clients match on it)."""
        self._check_explicit()
        override = None
        if config_json is not None:
            try:
                override = orjson.loads(config_json)
            except orjson.JSONDecodeError as exc:
                raise ModelLoadError(
                    f"failed to load '{name}': the 'config' parameter is not JSON: {exc}"
                ) from None
        async with self._control:
            old = await asyncio.to_thread(self.repository.reload, name, override)
        if old is not None:
            await self._retire(old)

    async def sync_repository(self) -> None:
        """Poll mode: load new or changed models, unload removed ones. Each reload is a
        transaction: the new versions load beside the old ones, traffic switches at once,
        the old ones finish their requests and are released; a failed load leaves the old
        ones serving, with the reason in the index."""
        changed, removed = await asyncio.to_thread(self.repository.poll)
        for name in changed:
            log.info("poll: (re)loading model %r", name)
            try:
                async with self._control:
                    old = await asyncio.to_thread(self.repository.reload, name)
            except ConveyorError as exc:
                log.error("poll: %s", exc.message)
                continue
            if old is not None:
                await self._retire(old)
        for name in removed:
            log.info("poll: model %r left the repository: unloading", name)
            async with self._control:
                old = self.repository.unload(name)
            await self._retire(old)

    async def unload_model(self, name: str) -> None:
        self._check_explicit()
        async with self._control:
            old = self.repository.unload(name)
        await self._retire(old)

    async def _retire(self, entry: ModelEntry) -> None:
        """Let an entry that no longer receives requests finish them, then release it."""
        for mv in entry.versions.values():
            await mv.scheduler.drain(self.drain_timeout_s)
            mv.scheduler.close()

    def _check_explicit(self) -> None:
        if self.model_control_mode != "explicit":
            raise InvalidRequestError(
                f"model control mode is '{self.model_control_mode}': loading and unloading "
                "through the API needs --model-control-mode explicit"
            )

    def repository_index(self) -> list[dict[str, Any]]:
        """Triton's index: every model directory of the repository, loaded or not, read
        at each call (one directory listing, cheap enough for the event loop). A model
        never loaded is its name with empty version, state and reason (what Triton's gRPC
        index says; its REST index leaves the fields out); a loaded one has a row per
        version; a failed or unloaded one its state and reason. Models the server knows
        whose directory is gone (still serving, or named by --load-model) are listed too."""
        models = self.repository.models
        rows: list[dict[str, Any]] = []
        for name in sorted(models.keys() | self.repository.model_names()):
            entry = models.get(name)
            if entry is None:
                rows.append({"name": name, "version": "", "state": "", "reason": ""})
            elif entry.state == READY:
                rows += [
                    {"name": name, "version": str(v), "state": READY, "reason": entry.reason}
                    for v in sorted(entry.versions)
                ]
            else:
                rows.append(
                    {"name": name, "version": "", "state": entry.state, "reason": entry.reason}
                )
        return rows

    # --- inference ---------------------------------------------------------------------

    def check_started(self) -> None:
        """For the transports' inference calls (not BLS, which a model may make while the
        server loads): a 503 until the models have loaded, not 'unknown model'."""
        if self.starting:
            raise UnavailableError("the server is starting: its models are still loading")

    async def infer(self, request: InferRequest) -> InferResponse:
        return await awaiting(partial(self.infer_nowait, request), InferResponse)

    def infer_nowait(
        self, request: InferRequest, then: Callable[[InferResponse | BaseException], None]
    ) -> InferResponse | Withdrawable:
        """`infer` without a coroutine where it can: the response when the model answered
        at once; else `then` gets the response or the error later (on the loop), and what
        is returned withdraws the request (`cancel()`). A model on threads with a plain
        request takes no task and no future; the others (Python models, pipelines,
        decoupled models, shared memory, step timings) run in a task of their own."""
        mv = self.repository.get(request.model, request.version)
        config = mv.config
        if (
            config.decoupled
            or config.ensemble_steps
            or mv.scheduler.request_mode
            or request.shm_inputs
            or request.shm_outputs
            or request.timing is not None
        ):
            task = asyncio.ensure_future(self._infer_task(mv, request))
            task.add_done_callback(partial(_task_done, then))
            return task
        self.limits.check_request(request)
        start = time.perf_counter_ns()

        def answered(outcome: Outputs | BaseException) -> None:
            if isinstance(outcome, BaseException):
                self._record(mv, request, start, outcome)
                then(outcome)
                return
            try:
                response = self._respond(mv, sig, request, outcome, start)
            except Exception as exc:
                self._record(mv, request, start, exc)
                then(exc)
                return
            then(response)

        try:
            sig = signature(mv)
            inputs, rows, key = validate_inputs(sig, request.inputs)
            outputs = self._output_names(sig, request)
            priority, timeout_us = _scheduling(request.parameters)
            answer = mv.scheduler.submit_nowait(
                inputs, outputs, rows, key, answered, priority=priority, timeout_us=timeout_us
            )
        except BaseException as exc:
            self._record(mv, request, start, exc)
            raise
        if isinstance(answer, dict):
            return self._respond(mv, sig, request, answer, start)
        return _Withdraw(answer, lambda: self._record(mv, request, start, _CANCELLED))

    def _respond(
        self,
        mv: ModelVersion,
        sig: Signature,
        request: InferRequest,
        results: Outputs,
        start: int,
    ) -> InferResponse:
        response = _response(mv, sig, request, results)
        self._record(mv, request, start, None)
        return response

    def _record(
        self, mv: ModelVersion, request: InferRequest, start: int, exc: BaseException | None
    ) -> None:
        elapsed = time.perf_counter_ns() - start
        if exc is None:
            mv.scheduler.stats.record_request(True, elapsed)
        else:
            mv.scheduler.stats.record_request(False, elapsed, failure_reason(exc))
        if self.access_log:
            self._log_access(request, mv, elapsed, exc)

    async def _infer_task(self, mv: ModelVersion, request: InferRequest) -> InferResponse:
        if mv.config.decoupled:
            return await self._infer_decoupled_once(request)  # limits: in infer_stream
        self.limits.check_request(request)
        start = time.perf_counter_ns()
        try:
            response = await self._infer(mv, request)
        except BaseException as exc:
            self._record(mv, request, start, exc)
            raise
        self._record(mv, request, start, None)
        return response

    @staticmethod
    def _log_access(
        request: InferRequest, mv: ModelVersion, elapsed_ns: int, exc: BaseException | None
    ) -> None:
        status = 200 if exc is None else int(getattr(exc, "status", 500))
        ms = elapsed_ns / 1e6
        access.info(
            "%s %s/%s %d %.3fms",
            request.id or "-",
            mv.name,
            mv.version_str,
            status,
            ms,
            extra={
                "request_id": request.id,
                "model": mv.name,
                "version": mv.version_str,
                "status": status,
                "latency_ms": round(ms, 3),
            },
        )

    async def _infer_decoupled_once(self, request: InferRequest) -> InferResponse:
        """A decoupled model over a unary call (REST, gRPC ModelInfer, the in-process API):
        served when it answers with exactly one response, else a clear error."""
        responses = [r async for r in self.infer_stream(request) if r.outputs]
        for r in responses:
            r.parameters.pop("triton_final_response", None)
        if len(responses) != 1:
            raise InvalidRequestError(
                f"model '{request.model}' is decoupled and sent {len(responses)} responses to "
                "this request: use gRPC ModelStreamInfer (tritonclient's start_stream / "
                "async_stream_infer) to receive them"
            )
        return responses[0]

    async def infer_stream(self, request: InferRequest) -> AsyncIterator[InferResponse]:
        """Every response to one request, as the model sends it; the last one carries the
        parameter `triton_final_response` (with no outputs if the model's final send had
        none). A model that is not decoupled yields its one response, marked final."""
        mv = self.repository.get(request.model, request.version)
        if not mv.config.decoupled:
            response = await self.infer(request)  # which checks the limits
            response.parameters["triton_final_response"] = True
            yield response
            return
        self.limits.check_request(request)
        start = time.perf_counter_ns()
        sent: asyncio.Queue[tuple[Outputs | None, BaseException | None, bool, dict[str, Any]]]
        sent = asyncio.Queue()

        def on_response(
            outputs: Outputs | None,
            error: BaseException | None,
            final: bool,
            params: dict[str, Any],
        ) -> None:
            sent.put_nowait((outputs, error, final, params))

        task = asyncio.ensure_future(self._infer(mv, request, on_response))

        # the batch's execute ending before any answer came: its error is the request's
        def ended(t: asyncio.Future[InferResponse]) -> None:
            if not t.cancelled() and t.exception() is not None:
                sent.put_nowait((None, t.exception(), True, {}))

        task.add_done_callback(ended)
        reason = "cancelled"  # unless it ends otherwise: the caller stopped reading
        try:
            while True:
                outputs, error, final, params = await sent.get()
                if error is not None:
                    reason = failure_reason(error)
                    raise error
                response = InferResponse(request.model, mv.version_str, outputs or {}, request.id)
                response.parameters.update(params)
                if final:
                    response.parameters["triton_final_response"] = True
                    reason = ""
                if outputs is not None or final:
                    yield response
                if final:
                    return
        finally:
            if not task.done():
                task.cancel()
            elapsed = time.perf_counter_ns() - start
            mv.scheduler.stats.record_request(not reason, elapsed, reason)

    async def _infer(
        self,
        mv: ModelVersion,
        request: InferRequest,
        on_response: Any = None,
    ) -> InferResponse:
        sig = signature(mv)
        raw_inputs = request.inputs
        if request.shm_inputs:
            raw_inputs = dict(raw_inputs)
            for name, (ref, datatype, shape) in request.shm_inputs.items():
                buf = self.shm.read(f"input '{name}'", ref)
                raw_inputs[name] = from_bytes(name, datatype, shape, buf)
        inputs, rows, key = validate_inputs(sig, raw_inputs)
        outputs = self._output_names(sig, request)
        params = request.parameters
        priority, timeout_us = _scheduling(params)
        if mv.config.ensemble_steps:
            return await self._run_ensemble(mv, request, inputs, outputs, rows)
        context = None
        if mv.scheduler.request_mode or request.timing is not None:
            context = RequestContext(request.id, params, on_response, request.timing)
        results = await mv.scheduler.submit(
            inputs,
            outputs,
            rows,
            key,
            priority=priority,
            timeout_us=timeout_us,
            context=context,
        )
        response = _response(mv, sig, request, results)
        for name, ref in request.shm_outputs.items():
            self.shm.write(f"output '{name}'", ref, to_bytes(results[name]))
            response.in_shm[name] = ref
        return response

    async def _run_ensemble(
        self,
        mv: ModelVersion,
        request: InferRequest,
        inputs: Outputs,
        outputs: list[str],
        rows: int,
    ) -> InferResponse:
        """Each step through the data plane (its model's own scheduler and statistics);
        with the request parameter `step_timings: true`, each step's start and duration
        (µs from the request's start), and its time queued and computing in its model's
        scheduler, come back in the response's `step_timings`."""

        async def call(
            model: str,
            version: str,
            feed: Outputs,
            wanted: list[str],
            timing: dict[str, float] | None = None,
        ) -> Outputs:
            step = InferRequest(
                model, feed, version, request.id, [RequestedOutput(o) for o in wanted]
            )
            step.timing = timing
            return (await self.infer(step)).outputs

        timings: dict[str, dict[str, float]] | None = (
            {} if request.parameters.get("step_timings") else None
        )
        start = time.perf_counter_ns()
        pipeline = mv.scheduler.runtimes[0]
        functions = pipeline.call_function if isinstance(pipeline, PipelineRuntime) else None
        mv.scheduler.external_in_flight += 1  # an unload drains it like queued requests
        try:
            results = await ensemble.run(mv.config, inputs, outputs, call, timings, functions)
        finally:
            mv.scheduler.external_in_flight -= 1
        elapsed_ns = time.perf_counter_ns() - start
        mv.scheduler.stats.record_batch(
            rows=rows, queue_ns=[0], input_ns=0, infer_ns=elapsed_ns, output_ns=0
        )
        response = InferResponse(request.model, mv.version_str, results, request.id)
        if timings is not None:
            response.parameters["step_timings"] = orjson.dumps(timings).decode()
        for name, ref in request.shm_outputs.items():
            self.shm.write(f"output '{name}'", ref, to_bytes(results[name]))
            response.in_shm[name] = ref
        return response

    @staticmethod
    def _output_names(sig: Signature, request: InferRequest) -> list[str]:
        if request.outputs is None:
            return sig.outputs
        names = []
        for out in request.outputs:
            if out.name not in sig.outputs:
                raise InvalidRequestError(
                    f"unknown output '{out.name}' for model '{sig.model}' "
                    f"(outputs: {', '.join(sig.outputs)})"
                )
            names.append(out.name)
        return names


_CANCELLED = asyncio.CancelledError()


class _Withdraw:
    """Withdraws a queued request and counts it as cancelled."""

    __slots__ = ("_counted", "_reply")

    def __init__(self, reply: Withdrawable, counted: Callable[[], None]) -> None:
        self._reply, self._counted = reply, counted

    def cancel(self) -> bool:
        if not self._reply.cancel():
            return False
        self._counted()
        return True


def _task_done(
    then: Callable[[InferResponse | BaseException], None], task: asyncio.Future[InferResponse]
) -> None:
    if not task.cancelled():  # cancelled: withdrawn by the caller, who expects nothing
        exc = task.exception()
        then(exc if exc is not None else task.result())


def _response(
    mv: ModelVersion, sig: Signature, request: InferRequest, results: Outputs
) -> InferResponse:
    if sig.output_reshapes:
        results = reshape_outputs(sig, results)
    return InferResponse(request.model, mv.version_str, results, request.id)


def _scheduling(params: dict[str, Any]) -> tuple[int, int | None]:
    """The request parameters `priority` and `timeout` (µs; None: no timeout)."""
    if not params:
        return 0, None
    return _int_param(params, "priority"), _int_param(params, "timeout") or None


def _int_param(params: dict[str, Any], name: str) -> int:
    value = params.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(
            f"parameter '{name}' must be a non-negative integer, got {value!r}"
        )
    return value
