"""Every device simulator can be slow, hang, answer garbage, or go away, and recover."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp
import pytest
from conftest import eventually, run
from simkit import noon_model

from sim import EnergyModel
from sim.devices import (
    GARBAGE_BODY,
    DeviceServer,
    Shelly3EMGen1,
    ShellyPlus1PM,
    ShellyPMMiniGen3,
    ShellyPro3EM,
    ShellyRelayGen1,
)

Device = tuple[Callable[[EnergyModel], DeviceServer], str]

DEVICES: dict[str, Device] = {
    "3em": (lambda m: Shelly3EMGen1(m), "/status"),
    "pro3em": (lambda m: ShellyPro3EM(m), "/rpc/EM.GetStatus?id=0"),
    "pm-mini": (lambda m: ShellyPMMiniGen3(m), "/rpc/PM1.GetStatus?id=0"),
    "plus1pm": (lambda m: ShellyPlus1PM(m, load=m.add_load("pump", 300.0)),
                "/rpc/Switch.GetStatus?id=0"),
    "relay": (lambda m: ShellyRelayGen1(m), "/status"),
}


@pytest.fixture(params=sorted(DEVICES))
def device(request: pytest.FixtureRequest) -> tuple[DeviceServer, str]:
    make, path = DEVICES[request.param]
    return make(noon_model()), path


async def fetch(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
        return resp.status, await resp.read()


def test_healthy_device_answers_json(device: tuple[DeviceServer, str]) -> None:
    server, path = device

    async def scenario() -> None:
        async with server:
            status, body = await fetch(server.url + path)
            assert status == 200 and isinstance(json.loads(body), dict)
    run(scenario())


def test_slow_device_answers_late(device: tuple[DeviceServer, str]) -> None:
    server, path = device

    async def scenario() -> None:
        async with server:
            server.faults.slow(0.3)
            with pytest.raises(asyncio.TimeoutError):
                await fetch(server.url + path, timeout_s=0.1)
            started = time.monotonic()
            status, _ = await fetch(server.url + path)
            assert status == 200
            assert time.monotonic() - started >= 0.3
    run(scenario())


def test_hanging_device_never_answers_until_cleared(device: tuple[DeviceServer, str]) -> None:
    server, path = device

    async def scenario() -> None:
        async with server:
            server.faults.hang()
            with pytest.raises(asyncio.TimeoutError):
                await fetch(server.url + path, timeout_s=0.2)
            waiting = asyncio.create_task(fetch(server.url + path))
            await eventually(lambda: server.faults.hanging >= 1)
            assert not waiting.done()
            server.faults.clear()
            status, _ = await waiting
            assert status == 200
    run(scenario())


def test_closing_a_hanging_device_is_quick(device: tuple[DeviceServer, str]) -> None:
    server, path = device

    async def scenario() -> None:
        async with server:
            server.faults.hang()
            waiting = asyncio.create_task(fetch(server.url + path))
            await eventually(lambda: server.faults.hanging >= 1)
            started = time.monotonic()
        assert time.monotonic() - started < 1.0
        assert not server.running
        await asyncio.gather(waiting, return_exceptions=True)
    run(scenario())


def test_garbage_is_not_json(device: tuple[DeviceServer, str]) -> None:
    server, path = device

    async def scenario() -> None:
        async with server:
            server.faults.garbage()
            status, body = await fetch(server.url + path)
            assert (status, body) == (200, GARBAGE_BODY)
            with pytest.raises(ValueError):
                json.loads(body)
            server.faults.clear()
            status, body = await fetch(server.url + path)
            assert status == 200 and json.loads(body)
    run(scenario())


def test_gone_device_refuses_connections_and_comes_back(
        device: tuple[DeviceServer, str]) -> None:
    server, path = device

    async def scenario() -> None:
        async with server:
            url = server.url
            await server.go_away()
            with pytest.raises(aiohttp.ClientConnectorError):
                await fetch(url + path)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", server.port)
            await server.come_back()
            assert server.url == url
            status, _ = await fetch(url + path)
            assert status == 200
    run(scenario())


def test_a_device_drops_open_connections_when_it_goes_away() -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(noon_model()) as meter, aiohttp.ClientSession() as session:
            async with session.get(f"{meter.url}/status") as resp:
                assert resp.status == 200
            await meter.go_away()
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"{meter.url}/status") as resp:
                    await resp.read()
    run(scenario())


def test_slow_needs_a_sensible_delay() -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(noon_model()) as meter:
            with pytest.raises(ValueError, match="delay"):
                meter.faults.slow(-1)
    run(scenario())
