from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests on a fresh event loop (no plugin needed)."""
    func: Callable[..., Any] = pyfuncitem.obj
    if inspect.iscoroutinefunction(func):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(func(**args))
        return True
    return None


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo repository, written once per test session by the real command."""
    from conveyor.demo.repository import write_demo_repository

    root = tmp_path_factory.mktemp("demo-repo")
    write_demo_repository(root)
    return root


@pytest.fixture(scope="session")
def framework_models(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The small CNN, same weights, in every format (built once per session): a directory
    with model.onnx, model.pt (TorchScript), model.pt2, model.savedmodel/ and model.xml."""
    import warnings

    from conveyor.demo import frameworks

    root = tmp_path_factory.mktemp("frameworks")
    net = frameworks.small_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the frameworks' own deprecation notices
        frameworks.build_onnx(net, root / "model.onnx")
        frameworks.build_torchscript(net, root / "model.pt")
        frameworks.build_exported(net, root / "model.pt2")
        frameworks.build_savedmodel(net, root / "model.savedmodel")
        frameworks.build_openvino(net, root / "model.xml")
    return root
