"""The lab's peers: how each is installed, configured like the others, started, spoken
to and stopped.

Every served peer gets the same settings (`Settings`: the largest batch its batcher may
form, the batching window, instances, threads per instance) in its own words, and is
driven in the protocol it does best that the lab's client speaks (the table says
which). Each installs into its own virtualenv (`venvs.ensure`) with pinned versions;
ONNX Runtime is pinned to the version Conveyor runs here, so the peers that run ONNX
Runtime themselves compare servers, not runtime releases.

Kinds: `served` (a process the lab starts and stops), `in-process` (the framework
called directly, no server: the ceiling a server is measured against), `external`
(a server the user runs, at a URL: TF Serving, whose binary no registry here ships).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import numpy as np

from conveyor.bench.targets import HttpTarget, Target
from conveyor.lab import venvs, wire
from conveyor.lab.models import LabModel
from conveyor.lab.process import PeerError, Server, answers

SERVERS = Path(__file__).with_name("servers")


@dataclass(frozen=True)
class Settings:
    """One configuration, given to every peer in its own terms."""

    max_batch: int = 32
    delay_us: int = 2000
    instances: int = 1
    threads: int = max(1, os.cpu_count() or 1)


@dataclass
class Context:
    cache: Path
    workdir: Path
    settings: Settings
    say: Callable[[str], None] = print


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ort_pin() -> str:
    try:
        return f"onnxruntime=={metadata.version('onnxruntime')}"
    except metadata.PackageNotFoundError:
        return "onnxruntime"


class Running:
    """A started served peer: where it listens, how to talk to it, how to stop it."""

    def __init__(
        self,
        peer: Peer,
        base_url: str,
        server: Server | None,
        names: dict[str, str] | None = None,
    ) -> None:
        self.peer = peer
        self.base_url = base_url.rstrip("/")
        self.server = server
        self.names = names or {}  # lab model name -> the name this peer serves it under

    def _request(self, model: LabModel, x: np.ndarray) -> wire.Request:
        name = self.names.get(model.name, model.name)
        return wire.request(self.peer.protocol, name, self.peer.input_name(model), x)

    def target(self, model: LabModel, x: np.ndarray) -> Target:
        req = self._request(model, x)
        target = HttpTarget(self.base_url + req.path, req.body, req.headers)
        target.name = f"{self.peer.name}:{model.name}"
        return target

    def infer(self, model: LabModel, x: np.ndarray) -> np.ndarray:
        req = self._request(model, x)
        http = urllib.request.Request(
            self.base_url + req.path, data=req.body, headers=req.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(http, timeout=120) as resp:
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return wire.decode(self.peer.protocol, headers, resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise PeerError(f"answered {exc.code} to an inference: {detail}") from None
        except OSError as exc:
            raise PeerError(f"inference failed: {exc}") from None

    def stop(self) -> list[int]:
        return self.server.stop() if self.server is not None else []


class Peer(ABC):
    name = "peer"
    kind = "served"
    protocol = "v2-binary"
    formats: tuple[str, ...] = ("onnx",)
    version = ""

    def fmt(self, model: LabModel) -> str:
        """The model format this peer loads, or a PeerError saying why none fits."""
        for fmt in self.formats:
            if fmt in model.files:
                return fmt
        reasons = [model.missing[f] for f in self.formats if f in model.missing]
        why = reasons[0] if reasons else "no such file was built"
        raise PeerError(f"needs the model as {' or '.join(self.formats)}: {why}")

    def input_name(self, model: LabModel) -> str:
        return model.input_name

    def install(self, ctx: Context) -> None:  # noqa: B027 - optional
        """Create what the peer needs (its virtualenv); PeerError if it cannot be."""

    @abstractmethod
    def start(self, ctx: Context, models: list[LabModel]) -> Running: ...


# ----- Conveyor --------------------------------------------------------------------


class ConveyorPeer(Peer):
    """`conveyor serve` (this installation) with one runtime."""

    RUNTIMES: ClassVar[dict[str, tuple[str, str, str]]] = {
        # runtime: (format, config lines, thread parameter)
        "ort": ("onnx", "", "intra_op_thread_count"),
        "openvino": (
            "onnx",
            'backend: "openvino"\ndefault_model_filename: "model.onnx"\n',
            "INFERENCE_NUM_THREADS",
        ),
        "torch": ("torchscript", 'platform: "pytorch_libtorch"\n', "INTRA_OP_THREAD_COUNT"),
        "tf": ("savedmodel", 'platform: "tensorflow_savedmodel"\n', "TF_NUM_INTRA_THREADS"),
    }
    PACKAGES: ClassVar[dict[str, str]] = {
        "ort": "onnxruntime",
        "openvino": "openvino",
        "torch": "torch",
        "tf": "tensorflow-cpu",
    }
    EXTRAS: ClassVar[dict[str, str]] = {
        "ort": "",
        "openvino": "openvino",
        "torch": "torch",
        "tf": "tensorflow",
    }

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime
        self.name = f"conveyor-{runtime}"
        self.formats = (self.RUNTIMES[runtime][0],)
        from conveyor import __version__

        package = self.PACKAGES[runtime]
        try:
            self.version = f"conveyor {__version__}, {package} {metadata.version(package)}"
        except metadata.PackageNotFoundError:
            self.version = f"conveyor {__version__}"

    def input_name(self, model: LabModel) -> str:
        return "INPUT__0" if self.runtime == "torch" else model.input_name

    def install(self, ctx: Context) -> None:
        try:
            metadata.version(self.PACKAGES[self.runtime])
        except metadata.PackageNotFoundError:
            raise PeerError(
                f"{self.PACKAGES[self.runtime]} is not installed beside Conveyor: "
                f"pip install 'conveyor[{self.EXTRAS[self.runtime]}]'"
            ) from None

    def _config(self, model: LabModel, s: Settings) -> str:
        _, platform, key = self.RUNTIMES[self.runtime]
        lines = [
            platform,
            f"max_batch_size: {s.max_batch}\n",
            f"dynamic_batching {{ max_queue_delay_microseconds: {s.delay_us} }}\n",
            f"instance_group [ {{ count: {s.instances}, kind: KIND_CPU }} ]\n",
        ]
        if self.runtime != "tf":  # TensorFlow's pools are per process: its defaults
            lines.append(
                f'parameters [ {{ key: "{key}" value: {{ string_value: "{s.threads}" }} }} ]\n'
            )
        if self.runtime in ("torch", "tf"):
            dims = ", ".join(str(d) for d in model.item_shape)
            inp, out = ("INPUT__0", "OUTPUT__0") if self.runtime == "torch" else ("x", "output_0")
            lines.append(f'input [ {{ name: "{inp}" data_type: TYPE_FP32 dims: [ {dims} ] }} ]\n')
            size = model.output_size
            lines.append(f'output [ {{ name: "{out}" data_type: TYPE_FP32 dims: [ {size} ] }} ]\n')
        return "".join(lines)

    def start(self, ctx: Context, models: list[LabModel]) -> Running:
        repo = ctx.workdir / self.name / "repository"
        shutil.rmtree(repo, ignore_errors=True)
        for model in models:
            fmt = self.fmt(model)
            version = repo / model.name / "1"
            version.mkdir(parents=True)
            src = model.files[fmt]
            dst = version / src.name
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copyfile(src, dst)
            (repo / model.name / "config.pbtxt").write_text(self._config(model, ctx.settings))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "conveyor.cli",
            "serve",
            str(repo),
            "--host",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--allow-grpc",
            "false",
            "--allow-metrics",
            "false",
            "--log-level",
            "warning",
        ]

        def ready() -> bool:
            return all(answers(f"{base}/v2/models/{m.name}/ready") for m in models)

        server = Server(cmd, ctx.workdir / self.name / "server.log", ready)
        return Running(self, base, server)


# ----- Triton ----------------------------------------------------------------------


def triton_backends(venv: Path) -> Path:
    """The backend directory for the `tritonserver` in `venv`: a copy of the wheel's
    backends plus the python-backend stub for this Python, which the wheel keeps apart
    (without it every python model fails with "triton_python_backend_stub is not
    found"). Made once, inside the virtualenv."""
    pkg = next((venv / "lib").glob("python3*/site-packages")) / "pytriton" / "tritonserver"
    backends = venv / "triton-backends"
    stub = backends / "python" / "triton_python_backend_stub"
    if not stub.exists():
        shutil.rmtree(backends, ignore_errors=True)
        shutil.copytree(pkg / "backends", backends)
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        source = pkg / "python_backend_stubs" / py / "triton_python_backend_stub"
        if not source.exists():
            raise PeerError(f"nvidia-pytriton 0.7.0 ships no python-backend stub for {py}")
        shutil.copy(source, stub)
    return backends


def triton_command(
    venv: Path, repo: Path, http: int, grpc: int, metrics: int
) -> tuple[list[str], dict[str, str]]:
    """`tritonserver` from nvidia-pytriton's wheel in `venv` on `repo`, every listener on
    127.0.0.1 (shared/PEERS.md's recipe), and the environment it needs: the venv first
    on PATH (the backend stub needs its numpy < 2) and this Python's libpython."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["LD_LIBRARY_PATH"] = ":".join(
        [
            str(sysconfig.get_config_var("LIBDIR")),
            str(site / "nvidia_pytriton.libs"),
            env.get("LD_LIBRARY_PATH", ""),
        ]
    )
    env.pop("PYTHONPATH", None)
    cmd = [
        str(site / "pytriton" / "tritonserver" / "bin" / "tritonserver"),
        "--model-repository",
        str(repo),
        "--backend-directory",
        str(triton_backends(venv)),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--http-address",
        "127.0.0.1",
        "--grpc-address",
        "127.0.0.1",
        "--metrics-address",
        "127.0.0.1",
        "--log-verbose",
        "0",
    ]
    return cmd, env


class TritonPeer(Peer):
    """Triton Inference Server 2.51, the `tritonserver` bundled in nvidia-pytriton 0.7.0,
    run directly on a hand-written repository; each model a python-backend model running
    ONNX Runtime (that build bundles no ONNX Runtime backend)."""

    name = "triton"
    version = "tritonserver 2.51.0 (nvidia-pytriton 0.7.0), python backend + onnxruntime"

    def requirements(self) -> list[str]:
        return ["nvidia-pytriton==0.7.0", "numpy<2", _ort_pin()]

    def install(self, ctx: Context) -> None:
        self.venv = venvs.ensure(ctx.cache, "triton", self.requirements(), ctx.say)
        triton_backends(self.venv)

    def _config(self, model: LabModel, s: Settings) -> str:
        dims = ", ".join(str(d) for d in model.item_shape)
        return (
            f'name: "{model.name}"\nbackend: "python"\nmax_batch_size: {s.max_batch}\n'
            f'input [ {{ name: "{model.input_name}", data_type: TYPE_FP32, dims: [ {dims} ] }} ]\n'
            f'output [ {{ name: "{model.output_name}", data_type: TYPE_FP32, '
            f"dims: [ {model.output_size} ] }} ]\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {s.delay_us} }}\n"
            f"instance_group [ {{ count: {s.instances}, kind: KIND_CPU }} ]\n"
            'parameters [ { key: "intra_op_thread_count", '
            f'value: {{ string_value: "{s.threads}" }} }} ]\n'
        )

    def start(self, ctx: Context, models: list[LabModel]) -> Running:
        repo = ctx.workdir / "triton" / "repository"
        shutil.rmtree(repo, ignore_errors=True)
        for model in models:
            self.fmt(model)
            version = repo / model.name / "1"
            version.mkdir(parents=True)
            shutil.copyfile(SERVERS / "triton_model.py", version / "model.py")
            shutil.copyfile(model.files["onnx"], version / "model.onnx")
            (repo / model.name / "config.pbtxt").write_text(self._config(model, ctx.settings))
        http = free_port()
        cmd, env = triton_command(self.venv, repo, http, free_port(), free_port())
        base = f"http://127.0.0.1:{http}"

        def ready() -> bool:
            return all(answers(f"{base}/v2/models/{m.name}/ready") for m in models)

        return Running(self, base, Server(cmd, ctx.workdir / "triton" / "server.log", ready, env))


# ----- the hand-made servers ----------------------------------------------------------


class FastApiPeer(Peer):
    """A hand-made FastAPI + orjson service (`servers/fastapi_app.py`), V2 JSON, no
    batching; `instances` uvicorn processes are not used: one process, as such apps run."""

    name = "fastapi"
    protocol = "v2-json"
    PINS = ("fastapi==0.165.0", "uvicorn[standard]==0.54.0", "orjson==3.13.0")

    def install(self, ctx: Context) -> None:
        self.venv = venvs.ensure(ctx.cache, "fastapi", [*self.PINS, _ort_pin()], ctx.say)
        self.version = "fastapi {} + uvicorn {} + orjson {}".format(
            *(venvs.version_of(self.venv, p) for p in ("fastapi", "uvicorn", "orjson"))
        )

    def start(self, ctx: Context, models: list[LabModel]) -> Running:
        port = free_port()
        cmd = [
            str(self.venv / "bin" / "python"),
            str(SERVERS / "fastapi_app.py"),
            "--port",
            str(port),
            "--threads",
            str(ctx.settings.threads),
        ]
        for model in models:
            self.fmt(model)
            cmd += ["--model", f"{model.name}={model.files['onnx']}"]
        base = f"http://127.0.0.1:{port}"
        server = Server(
            cmd, ctx.workdir / "fastapi.log", lambda: answers(f"{base}/v2/health/ready")
        )
        return Running(self, base, server)


class TorchServePeer(Peer):
    """TorchServe 0.12 (Java 17 frontend, Python workers): the TorchScript model behind
    the lab's handler (`servers/torchserve_handler.py`, `.npy` in and out), its batcher
    at the lab's settings (batchSize, maxBatchDelay), `instances` workers. The Java
    frontend is started directly (the `torchserve` script would start it as a child
    and leave it running when stopped)."""

    name = "torchserve"
    protocol = "torchserve-npy"
    formats = ("torchscript",)
    PINS = (
        "torchserve==0.12.0",
        "torch-model-archiver==0.12.0",
        "torch==2.13.0",
        "pyyaml",
        "numpy",
    )

    def install(self, ctx: Context) -> None:
        java = shutil.which("java")
        if java is None:
            raise PeerError(
                "TorchServe needs a Java 17 runtime and there is no `java` on PATH: "
                "apt-get install openjdk-17-jre-headless (Debian) or any JDK >= 17"
            )
        probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        found = re.search(r'version "(\d+)', probe.stderr + probe.stdout)
        if found is None or int(found.group(1)) < 11:
            raise PeerError(f"TorchServe needs Java 17; `java -version` says {probe.stderr[:80]!r}")
        self.java = java
        self.venv = venvs.ensure(ctx.cache, "torchserve", list(self.PINS), ctx.say)
        self.site = next((self.venv / "lib").glob("python3*/site-packages"))
        self.version = f"torchserve {venvs.version_of(self.venv, 'torchserve')}, torch 2.13.0"

    def _archive(self, model: LabModel, store: Path, s: Settings) -> None:
        build = store.parent / f"build-{model.name}"
        build.mkdir(parents=True, exist_ok=True)
        delay_ms = max(1, round(s.delay_us / 1000))
        (build / "model-config.yaml").write_text(
            f"minWorkers: {s.instances}\nmaxWorkers: {s.instances}\nbatchSize: {s.max_batch}\n"
            f"maxBatchDelay: {delay_ms}\nresponseTimeout: 120\n"
        )
        cmd = [
            str(self.venv / "bin" / "torch-model-archiver"),
            "--model-name",
            model.name,
            "--version",
            "1.0",
            "--serialized-file",
            str(model.files["torchscript"]),
            "--handler",
            str(SERVERS / "torchserve_handler.py"),
            "--config-file",
            str(build / "model-config.yaml"),
            "--export-path",
            str(store),
            "--force",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PeerError(f"torch-model-archiver failed: {done.stderr.strip()[-300:]}")

    def start(self, ctx: Context, models: list[LabModel]) -> Running:
        root = ctx.workdir / "torchserve"
        shutil.rmtree(root, ignore_errors=True)
        store = root / "model-store"
        store.mkdir(parents=True)
        for model in models:
            self.fmt(model)
            self._archive(model, store, ctx.settings)
        ports = [free_port() for _ in range(5)]
        limit = 256 * 2**20
        (root / "config.properties").write_text(
            f"inference_address=http://127.0.0.1:{ports[0]}\n"
            f"management_address=http://127.0.0.1:{ports[1]}\n"
            f"metrics_address=http://127.0.0.1:{ports[2]}\n"
            "grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n"
            f"grpc_inference_port={ports[3]}\ngrpc_management_port={ports[4]}\n"
            f"initial_worker_port={free_port()}\n"
            f"model_store={store}\n"
            f"load_models={','.join(f'{m.name}={m.name}.mar' for m in models)}\n"
            "disable_token_authorization=true\nenable_model_api=false\n"
            "disable_system_metrics=true\ninstall_py_dep_per_model=false\n"
            f"max_request_size={limit}\nmax_response_size={limit}\n"
            "job_queue_size=1000\n"
        )
        (root / "tmp").mkdir()
        (root / "logs").mkdir()
        env = dict(os.environ)
        env.update(
            LOG_LOCATION=str(root / "logs"),
            METRICS_LOCATION=str(root / "logs"),
            LAB_TORCH_THREADS=str(ctx.settings.threads),
        )
        env.pop("PYTHONPATH", None)
        cmd = [
            self.java,
            f"-Dmodel_server_home={self.site}",
            f"-Djava.io.tmpdir={root / 'tmp'}",
            f"-Dlog4j.configurationFile=file://{SERVERS / 'torchserve_log4j2.xml'}",
            "-cp",
            f"{self.site / 'ts' / 'frontend'}/*",
            "org.pytorch.serve.ModelServer",
            "--python",
            str(self.venv / "bin" / "python"),
            "-f",
            str(root / "config.properties"),
            "-s",
            str(store),
            "-ncs",
            "--disable-token-auth",
        ]
        management = f"http://127.0.0.1:{ports[1]}"

        def ready() -> bool:
            for m in models:
                try:
                    with urllib.request.urlopen(f"{management}/models/{m.name}", timeout=2) as r:
                        workers = json.loads(r.read())[0]["workers"]
                except (OSError, ValueError, KeyError, IndexError):
                    return False
                if not workers or any(w.get("status") != "READY" for w in workers):
                    return False
            return True

        server = Server(cmd, root / "server.log", ready, env, cwd=root)
        return Running(self, f"http://127.0.0.1:{ports[0]}", server)


class MlServerPeer(Peer):
    """MLServer 1.7.1 with a custom runtime running ONNX Runtime
    (`servers/mlserver_runtime.py`), its adaptive batching at the lab's settings,
    `instances` parallel workers. Driven in V2 JSON: its REST API takes no binary
    tensors (422/500 seen)."""

    name = "mlserver"
    protocol = "v2-json"
    PINS = ("mlserver==1.7.1", "uvloop<0.22")  # uvloop 0.22+: its workers fail to start

    def install(self, ctx: Context) -> None:
        self.venv = venvs.ensure(ctx.cache, "mlserver", [*self.PINS, _ort_pin()], ctx.say)
        self.version = f"mlserver {venvs.version_of(self.venv, 'mlserver')}, custom ORT runtime"

    def start(self, ctx: Context, models: list[LabModel]) -> Running:
        root = ctx.workdir / "mlserver"
        shutil.rmtree(root, ignore_errors=True)
        repo = root / "repository"
        s = ctx.settings
        for model in models:
            self.fmt(model)
            folder = repo / model.name
            folder.mkdir(parents=True)
            shutil.copyfile(model.files["onnx"], folder / "model.onnx")
            shutil.copyfile(SERVERS / "mlserver_runtime.py", folder / "mlserver_runtime.py")
            settings = {
                "name": model.name,
                "implementation": "mlserver_runtime.OnnxModel",
                "max_batch_size": s.max_batch,
                "max_batch_time": s.delay_us / 1e6,
                "parameters": {"uri": "./model.onnx", "extra": {"intra_op_num_threads": s.threads}},
            }
            (folder / "model-settings.json").write_text(json.dumps(settings))
        http = free_port()
        server_settings = {
            "debug": False,
            "host": "127.0.0.1",
            "http_port": http,
            "grpc_port": free_port(),
            "metrics_endpoint": None,
            "parallel_workers": s.instances,
            "load_models_at_startup": True,
            "gzip_enabled": False,
            "environments_dir": str(root / "envs"),
            "metrics_dir": str(root / "metrics"),
        }
        (repo / "settings.json").write_text(json.dumps(server_settings))
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        cmd = [str(self.venv / "bin" / "mlserver"), "start", str(repo)]
        base = f"http://127.0.0.1:{http}"

        def ready() -> bool:
            return all(answers(f"{base}/v2/models/{m.name}/ready") for m in models)

        server = Server(cmd, root / "server.log", ready, env, cwd=repo)
        return Running(self, base, server)


class FalconPeer(Peer):
    """Seed 000's self-hosted server: Falcon + msgpack under gunicorn
    (`servers/falcon_app.py`), `instances` gthread workers, ONNX Runtime inside, no
    batching."""

    name = "falcon"
    protocol = "msgpack"
    PINS = ("falcon==4.4.0", "msgpack==1.2.4", "gunicorn==27.0.1")

    def install(self, ctx: Context) -> None:
        self.venv = venvs.ensure(ctx.cache, "falcon", [*self.PINS, _ort_pin()], ctx.say)
        self.version = "falcon {} + msgpack {} + gunicorn {}".format(
            *(venvs.version_of(self.venv, p) for p in ("falcon", "msgpack", "gunicorn"))
        )

    def start(self, ctx: Context, models: list[LabModel]) -> Running:
        for model in models:
            self.fmt(model)
        port = free_port()
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env["LAB_MODELS"] = ",".join(f"{m.name}={m.files['onnx']}" for m in models)
        env["LAB_THREADS"] = str(ctx.settings.threads)
        cmd = [
            str(self.venv / "bin" / "gunicorn"),
            "--chdir",
            str(SERVERS),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(ctx.settings.instances),
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--timeout",
            "120",
            "--no-control-socket",
            "falcon_app:app",
        ]
        base = f"http://127.0.0.1:{port}"
        root = ctx.workdir / "falcon"
        root.mkdir(parents=True, exist_ok=True)
        server = Server(cmd, root / "server.log", lambda: answers(f"{base}/health"), env, root)
        return Running(self, base, server)


# ----- in-process baselines -----------------------------------------------------------


class InProcessPeer(Peer):
    """The framework called directly from Python threads (one per client), no server:
    what the model costs with nothing around it. Measured in a child process
    (`lab/inprocess.py`) with Conveyor's interpreter."""

    kind = "in-process"
    protocol = "-"
    FRAMEWORKS: ClassVar[dict[str, tuple[str, str, str]]] = {
        "ort": ("onnx", "onnxruntime", ""),
        "torch": ("torchscript", "torch", "torch"),
        "tf": ("savedmodel", "tensorflow-cpu", "tensorflow"),
    }

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self.name = f"inprocess-{framework}"
        fmt, package, _ = self.FRAMEWORKS[framework]
        self.formats = (fmt,)
        self.package = package
        try:
            self.version = f"{package} {metadata.version(package)}"
        except metadata.PackageNotFoundError:
            self.version = ""

    def install(self, ctx: Context) -> None:
        if not self.version:
            extra = self.FRAMEWORKS[self.framework][2]
            raise PeerError(f"{self.package} is not installed: pip install 'conveyor[{extra}]'")

    def start(self, ctx: Context, models: list[LabModel]) -> Running:
        raise PeerError("an in-process baseline has no server")

    def command(self, model: LabModel, threads: int) -> list[str]:
        fmt = self.fmt(model)
        return [
            sys.executable,
            "-m",
            "conveyor.lab.inprocess",
            self.framework,
            str(model.files[fmt]),
            "--threads",
            str(threads),
            "--input-name",
            model.input_name,
        ]


# ----- a server the user runs ---------------------------------------------------------


class ExternalPeer(Peer):
    """`--peer NAME=PROTOCOL+URL`: a server already running (TF Serving, say); the lab
    neither starts nor stops it. Its models are named as the lab's (`tiny`,
    `tiny-empty`), or `--peer-model` renames the real one."""

    kind = "external"
    formats = ("onnx", "torchscript", "savedmodel")

    def __init__(self, name: str, protocol: str, url: str, model_name: str | None) -> None:
        if protocol not in wire.PROTOCOLS:
            raise ValueError(f"--peer {name}: protocol {protocol!r} is not one of {wire.PROTOCOLS}")
        self.name = name
        self.protocol = protocol
        self.url = url
        self.model_name = model_name
        self.version = f"external at {url}"

    def fmt(self, model: LabModel) -> str:
        return "external"

    def start(self, ctx: Context, models: list[LabModel]) -> Running:
        names = {models[0].name: self.model_name} if self.model_name else {}
        return Running(self, self.url, None, names)


def parse_external(text: str, model_name: str | None) -> ExternalPeer:
    name, sep, rest = text.partition("=")
    protocol, plus, url = rest.partition("+")
    if not sep or not plus or not url.startswith("http"):
        raise ValueError(f"--peer {text!r}: expected NAME=PROTOCOL+http://HOST:PORT")
    return ExternalPeer(name, protocol, url, model_name)


PEERS: dict[str, Callable[[], Peer]] = {
    "conveyor-ort": lambda: ConveyorPeer("ort"),
    "conveyor-openvino": lambda: ConveyorPeer("openvino"),
    "conveyor-torch": lambda: ConveyorPeer("torch"),
    "conveyor-tf": lambda: ConveyorPeer("tf"),
    "triton": TritonPeer,
    "torchserve": TorchServePeer,
    "mlserver": MlServerPeer,
    "fastapi": FastApiPeer,
    "falcon": FalconPeer,
    "inprocess-ort": lambda: InProcessPeer("ort"),
    "inprocess-torch": lambda: InProcessPeer("torch"),
    "inprocess-tf": lambda: InProcessPeer("tf"),
}
GROUPS = {
    "conveyor": ["conveyor-ort", "conveyor-openvino", "conveyor-torch", "conveyor-tf"],
    "inprocess": ["inprocess-ort", "inprocess-torch", "inprocess-tf"],
}


def expand(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for one in GROUPS.get(name, [name]):
            if one not in PEERS:
                known = ", ".join([*GROUPS, *PEERS])
                raise ValueError(f"unknown peer {one!r}: one of {known}")
            if one not in out:
                out.append(one)
    return out


def describe(peer: Peer) -> dict[str, object]:
    return {
        "name": peer.name,
        "kind": peer.kind,
        "protocol": peer.protocol,
        "version": peer.version,
    }
