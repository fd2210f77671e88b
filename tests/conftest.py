"""Shared test helpers: the repo root, a registry with the test node types, flow files."""

from __future__ import annotations

import asyncio
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "tests" / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

from flowengine.registry import Registry  # noqa: E402

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one async test scenario on a fresh event loop."""
    return asyncio.run(coro)


def test_registry() -> Registry:
    import testnodes

    registry = Registry()
    registry.add_module(testnodes)
    return registry


test_registry.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def registry() -> Registry:
    return test_registry()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write("name.yaml", text) -> path; the text is dedented."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until condition() is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
