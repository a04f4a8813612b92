"""Entry point of a worker process, run by path with the model's interpreter:

    PYTHON .../stub/_boot.py SOCK_FD ARENA_FD ARENA_SIZE MODEL_FILE

It loads this directory as a package of its own (`_conveyor_stub`), without importing
`conveyor` (which another interpreter may not have), installs Triton's module name
`triton_python_backend_utils` and `conveyor_model`, puts the model's version directory
first on `sys.path` (its sibling modules import as Triton's do), and runs the worker.
"""

import importlib.util
import os
import socket
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == here:
        del sys.path[0]  # never shadow a model's imports with this directory's modules
    spec = importlib.util.spec_from_file_location(
        "_conveyor_stub", here / "__init__.py", submodule_search_locations=[str(here)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["_conveyor_stub"] = package
    spec.loader.exec_module(package)
    from _conveyor_stub import native, pb_utils, wire, worker  # type: ignore[import-not-found]

    sys.modules["triton_python_backend_utils"] = pb_utils
    sys.modules["conveyor_model"] = native
    sock_fd, arena_fd, arena_size, model_file = sys.argv[1:5]
    model = Path(model_file)
    sys.path.insert(0, str(model.parent))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=int(sock_fd))
    arena = wire.Arena(int(arena_fd), int(arena_size))
    os.close(int(arena_fd))  # the mapping keeps the memory
    code: int = worker.Worker(sock, arena, model).run()
    return code


if __name__ == "__main__":
    sys.exit(main())
