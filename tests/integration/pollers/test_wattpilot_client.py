"""The Wattpilot client over real loopback websockets: against the Wattpilot simulator
(sim/devices/wattpilot.py), and against a few-line raw server of this file for what the
simulator cannot do (garbage frames, an oversized frame, slow answers to count writes in
flight)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import eventually, run
from websockets.asyncio.server import ServerConnection, serve

from flowengine.errors import DeviceError, NotConnected
from flowengine.model import Secret
from nodes.devices.wattpilot import WattpilotClient, WattpilotRefused
from sim.devices.wattpilot import WattpilotSim

PASSWORD = "test-password"
SERIAL = "91400617"
READY_S = 20.0  # PBKDF2 twice (simulator and client), also on a loaded machine
FAST = {"reconnect_min_ms": 20, "reconnect_max_ms": 200}


def client_for(url: str, password: str | Secret = PASSWORD,
               **options: Any) -> WattpilotClient:
    host_port, path = url.removeprefix("ws://").split("/", 1)
    host, port = host_port.rsplit(":", 1)
    return WattpilotClient(host, password, port=int(port), path="/" + path,
                           **{**FAST, **options})


@contextlib.asynccontextmanager
async def logged_in(**sim_options: Any) -> AsyncIterator[tuple[WattpilotSim, WattpilotClient]]:
    client_options = sim_options.pop("client", {})
    async with WattpilotSim(password=PASSWORD, serial=SERIAL, **sim_options) as sim, \
            client_for(sim.url, **client_options) as client:
        await client.wait_ready(READY_S)
        yield sim, client


# -- login ------------------------------------------------------------------------------


def test_classic_wattpilot_logs_in_with_pbkdf2_and_merges_the_full_status() -> None:
    async def scenario() -> None:
        async with logged_in(status_parts=4) as (sim, client):
            assert client.method == "pbkdf2"
            assert client.hello is not None
            assert (client.hello.serial, client.hello.devicetype, client.hello.version) \
                == (SERIAL, "wattpilot", "42.5")
            full = sim.state.status()
            assert set(client.status) >= set(full)
            assert client.status["sse"] == SERIAL and client.status["amp"] == full["amp"]
            assert client.describe() == f"connected to {SERIAL}"

    run(scenario())


@pytest.mark.parametrize("announce_hash", [True, False])
def test_wattpilot_flex_logs_in_with_bcrypt(announce_hash: bool) -> None:
    async def scenario() -> None:
        async with logged_in(devicetype="wattpilot_flex", announce_hash=announce_hash) \
                as (_sim, client):
            assert client.method == "bcrypt"
            assert client.hello is not None and client.hello.devicetype == "wattpilot_flex"
            assert client.status["sse"] == SERIAL

    run(scenario())


def test_a_flex_that_wants_pbkdf2_gets_it() -> None:
    async def scenario() -> None:
        async with logged_in(devicetype="wattpilot_flex", hash_method="pbkdf2") \
                as (_sim, client):
            assert client.method == "pbkdf2"

    run(scenario())


def test_wrong_password_is_reported_and_not_retried_soon(
        caplog: pytest.LogCaptureFixture) -> None:
    wrong = "not-the-password-123"

    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD, serial=SERIAL) as sim, \
                client_for(sim.url, wrong) as client:
            await eventually(lambda: client.login_refused, timeout=READY_S)
            text = client.describe()
            assert "login refused (authError: Wrong password)" in text
            assert "check the password" in text and "next try in" in text
            await asyncio.sleep(1.0)
            # the rule's method and the other one once; then minutes of quiet
            assert client.logins == 2 and client.attempts == 1
            assert client.next_attempt_in_s is not None
            assert client.next_attempt_in_s >= 0.8 * 300
            with pytest.raises(NotConnected, match="login refused"):
                await client.set_value("amp", 10)
            assert wrong not in repr(client)

    with caplog.at_level(logging.DEBUG):
        run(scenario())
    assert caplog.text.count("login refused (authError: Wrong password)") == 1
    assert wrong not in caplog.text


def test_a_secret_password_logs_in_and_stays_hidden(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD, serial=SERIAL) as sim, \
                client_for(sim.url, Secret("wattpilot", PASSWORD)) as client:
            await client.wait_ready(READY_S)
            assert PASSWORD not in repr(client) and PASSWORD not in client.describe()

    with caplog.at_level(logging.DEBUG):
        run(scenario())
    assert PASSWORD not in caplog.text


# -- status -----------------------------------------------------------------------------


def test_a_change_in_the_app_arrives_as_a_delta_with_its_keys() -> None:
    async def scenario() -> None:
        async with logged_in() as (sim, client):
            changes: list[frozenset[str]] = []
            client.on_change(changes.append)
            sim.app_set("amp", 12)
            await eventually(lambda: client.status["amp"] == 12, timeout=5)
            assert frozenset({"amp"}) in changes

    run(scenario())


# -- writes -----------------------------------------------------------------------------


@pytest.mark.parametrize("secured", [True, False])
def test_set_value_is_done_and_applied(secured: bool) -> None:
    async def scenario() -> None:
        async with logged_in(secured=secured) as (sim, client):
            assert await client.set_value("amp", 10) == 10
            assert await client.set_value("frc", 1) == 1
            assert sim.writes == [("amp", 10, True), ("frc", 1, True)]
            assert client.status["amp"] == 10 and client.status["frc"] == 1

    run(scenario())


def test_a_refused_write_raises_with_the_chargers_message() -> None:
    async def scenario() -> None:
        async with logged_in() as (sim, client):
            sim.refuse_writes()
            with pytest.raises(WattpilotRefused, match="refused amp = 10") as caught:
                await client.set_value("amp", 10)
            assert caught.value.key == "amp" and caught.value.value == 10
            assert "simulated fault" in caught.value.message
            sim.clear()
            with pytest.raises(WattpilotRefused, match="value must be int"):
                await client.set_value("amp", "ten")
            assert client.refused_writes == 2
            with pytest.raises(ValueError):
                await client.set_value("awp", float("nan"))
            assert await client.set_value("amp", 8) == 8

    run(scenario())


def test_set_value_without_a_connection_raises_not_connected() -> None:
    async def scenario() -> None:
        client = WattpilotClient("127.0.0.1", PASSWORD, port=9)  # never started
        with pytest.raises(NotConnected):
            await client.set_value("amp", 10)

    run(scenario())


# -- faults -----------------------------------------------------------------------------


def test_after_a_drop_it_reconnects_and_gets_a_fresh_status() -> None:
    async def scenario() -> None:
        async with logged_in() as (sim, client):
            states: list[bool] = []
            client.on_state(lambda c: states.append(c.ready))
            sim.drop()
            await eventually(lambda: not client.connected, timeout=5)
            sim.state.write("amp", 7)  # changed while we were away: no delta reaches us
            await client.wait_ready(READY_S)
            assert client.connects == 2
            assert client.status["amp"] == 7
            assert False in states and states[-1] is True
            assert await client.set_value("amp", 9) == 9

    run(scenario())


def test_a_silent_charger_times_out_and_the_client_reconnects() -> None:
    async def scenario() -> None:
        async with logged_in(client={"idle_timeout_s": 1.0, "login_timeout_s": 1.0},
                             idle_interval_s=0.2, interval_s=0.1) as (sim, client):
            sim.silent()
            with pytest.raises(DeviceError, match=r"no answer to setValue amp within 0\.3 s"):
                await client.set_value("amp", 10, timeout_s=0.3)
            await eventually(lambda: not client.connected and client.last_error is not None
                             and "no login within" in client.last_error, timeout=10)
            assert "not connected" in client.describe()
            sim.clear()
            await client.wait_ready(READY_S)
            assert await client.set_value("amp", 11) == 11

    run(scenario())


def test_a_charger_that_goes_away_is_reconnected_when_it_comes_back() -> None:
    async def scenario() -> None:
        async with logged_in() as (sim, client):
            await sim.go_away()
            await eventually(lambda: client.last_error is not None
                             and "cannot connect" in client.last_error, timeout=5)
            await sim.come_back()
            await client.wait_ready(READY_S)
            assert client.connects == 2

    run(scenario())


# -- a raw server, for what the simulator cannot do --------------------------------------

Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A bare websocket server on loopback (not a Wattpilot: `secured` false, no login)."""
    async with serve(handler, "127.0.0.1", 0, close_timeout=1.0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


async def greet(ws: ServerConnection) -> None:
    await ws.send(json.dumps({"type": "hello", "serial": "1", "devicetype": "wattpilot",
                              "version": "1", "secured": False}))


def test_garbage_frames_are_counted_and_never_stop_the_client() -> None:
    async def handler(ws: ServerConnection) -> None:
        await greet(ws)
        frames: list[str | bytes] = [
            "not json", b"\x00\x01", "[1, 2]", '{"no": "type"}', '{"type": "surprise"}',
            '{"type": "fullStatus", "status": 5}', '{"a": ' * 100 + "1" + "}" * 100,
            '{"x": NaN}']
        for frame in frames:
            await ws.send(frame)
        await ws.send(json.dumps({"type": "fullStatus", "partial": False,
                                  "status": {"amp": 6}}))
        await ws.wait_closed()

    async def scenario() -> None:
        async with raw_server(handler) as url, client_for(url) as client:
            await client.wait_ready(READY_S)
            assert client.status == {"amp": 6}
            assert client.bad_frames == 8
            assert client.connects == 1

    run(scenario())


def test_a_frame_larger_than_the_limit_closes_the_link_and_it_reconnects() -> None:
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await greet(ws)
        if connections == 1:
            await ws.send(json.dumps({"type": "deltaStatus", "status": {"x": "y" * 5000}}))
        else:
            await ws.send(json.dumps({"type": "fullStatus", "partial": False,
                                      "status": {"amp": 6}}))
        await ws.wait_closed()

    async def scenario() -> None:
        async with raw_server(handler) as url, \
                client_for(url, max_frame_bytes=4096) as client:
            await client.wait_ready(READY_S)
            assert connections == 2 and client.status == {"amp": 6}
            assert client.bad_frames == 1

    run(scenario())


def test_a_missing_full_status_is_asked_for() -> None:
    asked: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        await greet(ws)
        await ws.send(json.dumps({"type": "deltaStatus", "status": {"utc": "now"}}))
        async for raw in ws:
            asked.append(json.loads(raw))
            await ws.send(json.dumps({"type": "fullStatus", "partial": False,
                                      "status": {"amp": 6}}))

    async def scenario() -> None:
        async with raw_server(handler) as url, client_for(url) as client:
            await client.wait_ready(READY_S)
            assert asked == [{"type": "requestFullStatus"}]
            assert client.status == {"utc": "now", "amp": 6}

    run(scenario())


def test_writes_go_one_at_a_time_and_answers_match_by_request_id() -> None:
    in_flight = most = 0
    ids: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        nonlocal in_flight, most
        await greet(ws)
        await ws.send(json.dumps({"type": "fullStatus", "status": {"amp": 6}}))
        await ws.send(json.dumps({"type": "deltaStatus", "status": {"frc": 0}}))
        async for raw in ws:
            msg = json.loads(raw)
            in_flight += 1
            most = max(most, in_flight)
            ids.append(msg["requestId"])
            await asyncio.sleep(0.05)
            in_flight -= 1
            # an unrelated answer first, then the id in each form the sources show
            await ws.send(json.dumps({"type": "response", "requestId": 999,
                                      "success": True}))
            echo = [msg["requestId"], str(msg["requestId"]),
                    f"{msg['requestId']}sm"][len(ids) % 3]
            await ws.send(json.dumps({"type": "response", "requestId": echo,
                                      "success": True,
                                      "status": {msg["key"]: msg["value"]}}))

    async def scenario() -> None:
        async with raw_server(handler) as url, client_for(url) as client:
            await client.wait_ready(READY_S)
            assert client.status == {"amp": 6, "frc": 0}  # no `partial`: done at a delta
            results = await asyncio.gather(*(client.set_value("amp", 6 + i)
                                             for i in range(5)))
            assert results == [6, 7, 8, 9, 10]
            assert most == 1 and ids == [1, 2, 3, 4, 5]
            assert client.status["amp"] == 10

    run(scenario())


def test_close_is_quick_and_stops_reconnecting() -> None:
    async def scenario() -> None:
        async with logged_in() as (_sim, client):
            pass
        assert not client.connected and client.describe().startswith("not connected")
        attempts = client.attempts
        await asyncio.sleep(0.3)
        assert client.attempts == attempts

    run(scenario())
