"""The admin socket and token on disk: 0600, one runtime per state directory, a socket
left by a crash is taken over, nothing is left after a clean stop."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import run

from flowengine.admin.access import AdminAddress
from flowengine.admin.deploy import Deployer
from flowengine.admin.server import AdminError, AdminServer
from flowengine.registry import Registry
from flowengine.runtime import Runtime


def _server(runtime: Runtime, address: AdminAddress) -> AdminServer:
    def load(files: Any, values: Any) -> Any:
        raise AssertionError("no deploy here")

    return AdminServer(Deployer(runtime, [], site=None, load=load, variables={}), address)


def test_a_second_runtime_on_the_same_state_dir_leaves_the_first_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        address = AdminAddress(tmp_path)
        async with Runtime(Registry()) as runtime, _server(runtime, address):
            token = address.token_path.read_text()
            with pytest.raises(AdminError, match=r"another runtime answers at .*admin\.sock; "
                                                 r"it uses the same state_dir"):
                await _server(runtime, address).start()
            assert address.token_path.read_text() == token
            assert address.socket_path.exists()
        assert not address.socket_path.exists() and not address.token_path.exists()

    run(scenario())


def test_a_socket_left_by_a_crash_is_taken_over(tmp_path: Path) -> None:
    async def scenario() -> None:
        address = AdminAddress(tmp_path)
        left = socket.socket(socket.AF_UNIX)
        left.bind(str(address.socket_path))  # bound, never listening, not removed
        left.close()
        async with Runtime(Registry()) as runtime, _server(runtime, address):
            assert address.socket_path.stat().st_mode & 0o777 == 0o600
            assert address.token_path.stat().st_mode & 0o777 == 0o600

    run(scenario())
