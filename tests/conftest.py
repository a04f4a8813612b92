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
