"""The guardian's wattpilot.set against the simulated Wattpilot, and through the guardian.

`apply_action` blocks, as it does in the guardian; the simulator runs on the test's
event loop, so the test calls it with `asyncio.to_thread`. A few websocket details the
simulator never sends (a 64-bit frame length, a ping between fragments, an oversized
message, a wrong accept key) come from a small raw peer written here. The last tests run
the real guardian process with a stand-in runtime that registers the action over the
guardian's socket and is then killed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, eventually, free_port, run
from testkit.guarded import Guarded, plugin_path

from flowengine.guardian import wattpilotwire
from flowengine.guardian.actions import ActionError, apply_action, check_action, describe
from flowengine.guardian.store import FILE_NAME, PendingStore
from nodes.devices import wattpilot_auth
from sim.devices import WattpilotSim

PASSWORD = "secret"
OTHER_HP = "H4qAEEAkGfFrxJacwdZxmxwHJK3oFsEe"  # the sheet's case A: another password's HP
TOKENS = ("YJXAL4PsUsV9iQAUhW4rWShhMNKebqjS", "fTHFDHiwQUBlmQfmUKgtBK00lMpJIdoz")
TOKEN3 = "0123456789abcdef0123456789abcdef"
Action = dict[str, Any]


def stop_charging(wp: WattpilotSim, **changes: Any) -> Action:
    return check_action({"type": "wattpilot.set", "host": "127.0.0.1", "port": wp.port,
                         "password_hash": wp.password_hash, "serial": wp.serial,
                         "values": {"frc": 1}, "timeout_s": 3, **changes})


def apply_to(action: Action) -> Awaitable[None]:
    return asyncio.to_thread(apply_action, action)  # the guardian blocks; we may not


# -- the two formulas agree with the runtime's ----------------------------------------------

def test_the_auth_hash_is_the_runtime_clients() -> None:
    expected = "820e760df98cbf24c690948a49be9ed234f44c2e19f8d514aa7f74229c023041"  # sheet §1.5
    assert wattpilotwire.auth_hash(*TOKENS, TOKEN3, OTHER_HP) == expected
    for hp in (OTHER_HP, "OvhQq6fPKifTHXQe4GCC0igEyh0wkSu", ""):
        assert wattpilot_auth.auth_response(*TOKENS, hp, TOKEN3) == (
            TOKEN3, wattpilotwire.auth_hash(*TOKENS, TOKEN3, hp))


def test_the_secured_message_is_the_runtime_clients() -> None:
    inner = {"type": "setValue", "requestId": 1, "key": "amp", "value": 10}
    ours = wattpilotwire.secured_message(inner, OTHER_HP, 1)
    assert ours == wattpilot_auth.secured_message(inner, OTHER_HP, 1)
    assert ours["hmac"] == "f2bf73c3de91c318556c4be385a90ef70ac6173823cd467bb48d04d96947a397"
    inner = {"type": "setValue", "requestId": 7, "key": "fna", "value": "Garáge \"1\""}
    assert wattpilotwire.secured_message(inner, "k", 7) == \
        wattpilot_auth.secured_message(inner, "k", 7)


# -- against the simulator ------------------------------------------------------------------

@pytest.mark.parametrize("charger", [
    {}, {"secured": False}, {"secured": 1}, {"devicetype": "wattpilot_flex"},
    {"devicetype": "wattpilot_flex", "announce_hash": False, "secured": False},
], ids=["pbkdf2-secured", "pbkdf2-unsecured", "secured-number", "flex-bcrypt",
        "flex-unsecured"])
def test_frc_1_stops_charging(charger: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD, **charger) as wp:
            wp.plug_in(soc=40)
            await eventually(lambda: wp.state.charging)
            await apply_to(stop_charging(wp))
            assert wp.writes == [("frc", 1, True)]
            assert wp.state.settings["frc"] == 1
            assert not wp.state.charging
    run(scenario())


def test_several_values_are_written_in_their_order() -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD, status_parts=1) as wp:
            await apply_to(stop_charging(wp, values={"amp": 6, "psm": 1, "frc": 1,
                                                     "fna": "Garage"}))
            assert wp.writes == [("amp", 6, True), ("psm", 1, True), ("frc", 1, True),
                                 ("fna", "Garage", True)]
    run(scenario())


def test_a_wrong_password_hash_is_refused_and_nothing_is_written() -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD) as wp:
            with pytest.raises(ActionError) as caught:
                await apply_to(stop_charging(wp, password_hash=OTHER_HP))
            assert str(caught.value) == "the Wattpilot refused the login (wrong password hash?)"
            assert OTHER_HP not in str(caught.value)
            assert wp.writes == []
    run(scenario())


def test_a_refused_write_fails_with_the_chargers_message() -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD) as wp:
            wp.refuse_writes()
            with pytest.raises(ActionError, match=r"refused frc: write refused \(simulated"):
                await apply_to(stop_charging(wp))
            assert wp.writes == [("frc", 1, False)]
    run(scenario())


def test_a_refused_value_stops_the_ones_after_it() -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD) as wp:
            with pytest.raises(ActionError, match="refused frc"):
                await apply_to(stop_charging(wp, values={"frc": 7, "amp": 6}))
            assert wp.writes == [("frc", 7, False)]
            assert wp.state.settings["amp"] == 16
    run(scenario())


def test_a_silent_charger_fails_within_the_timeout() -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD) as wp:
            wp.silent()
            began = time.monotonic()
            with pytest.raises(ActionError, match=r"no answer within 1\.5 s"):
                await apply_to(stop_charging(wp, timeout_s=1.5))
            assert 1.4 < time.monotonic() - began < 2.0
            assert wp.writes == []
    run(scenario())


def test_another_chargers_serial_is_refused_before_the_login() -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD, serial="91400618") as wp:
            with pytest.raises(ActionError, match=r"another charger answers at 127\.0\.0\.1: "
                                                  r"serial 91400618, expected 91400617"):
                await apply_to(stop_charging(wp, serial="91400617"))
            assert wp.writes == [] and wp.clients == 0
            await apply_to(stop_charging(wp, serial=None))  # the serial is optional
            assert wp.writes == [("frc", 1, True)]
    run(scenario())


def test_a_wrong_path_is_no_websocket() -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD) as wp:
            with pytest.raises(ActionError, match=r"no websocket at /api: .*404"):
                await apply_to(stop_charging(wp, path="/api"))
    run(scenario())


def test_nothing_listening_fails_quickly_with_the_reason() -> None:
    action = {"type": "wattpilot.set", "host": "127.0.0.1", "port": free_port(),
              "password_hash": OTHER_HP, "values": {"frc": 1}, "timeout_s": 1}
    began = time.monotonic()
    with pytest.raises(ActionError, match="refused"):
        apply_action(check_action(action))
    assert time.monotonic() - began < 1


def test_the_wire_imports_only_the_standard_library() -> None:
    probe = textwrap.dedent("""\
        import sys
        import flowengine.guardian.wattpilotwire
        print(sorted({m.split(".")[0] for m in sys.modules} - {"flowengine", "__main__"}
                     - set(sys.stdlib_module_names) - set(sys.builtin_module_names)))
        """)
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True, timeout=30)
    assert out.stdout.strip() == "[]"


# -- websocket details from a raw peer ------------------------------------------------------

def frame(opcode: int, payload: bytes, *, fin: bool = True, size: int | None = None) -> bytes:
    """A server frame (unmasked); `size` claims another length than the payload's."""
    n = len(payload) if size is None else size
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def text(message: Action) -> bytes:
    return frame(1, json.dumps(message).encode())


async def client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    assert second & 0x80, "a client frame must be masked"
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4)
    data = await reader.readexactly(size)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@asynccontextmanager
async def raw_peer(script: bytes, *, accept: str | None = None
                   ) -> AsyncIterator[tuple[int, list[tuple[int, bytes]]]]:
    """A websocket server that sends `script` after the upgrade and records the client's
    frames (opcode, unmasked payload); it echoes a close."""
    got: list[tuple[int, bytes]] = []

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                   if line.lower().startswith("sec-websocket-key:"))
        right = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept or right}"
                     f"\r\n\r\n".encode() + script)
        try:
            while True:
                opcode, payload = await client_frame(reader)
                got.append((opcode, payload))
                if opcode == 8:
                    writer.write(frame(8, payload))
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1]), got


def raw_action(port: int, **changes: Any) -> Action:
    return check_action({"type": "wattpilot.set", "host": "127.0.0.1", "port": port,
                         "password_hash": OTHER_HP, "values": {"frc": 1}, "timeout_s": 2,
                         **changes})


def test_a_64_bit_length_fragments_and_a_ping_between_them_are_read() -> None:
    hello = json.dumps({"type": "hello", "serial": "1", "secured": False,
                        "pad": "x" * 70_000}).encode()
    script = (frame(1, hello[:66_000], fin=False) + frame(9, b"are you there")
              + frame(0, hello[66_000:69_000], fin=False) + frame(0, hello[69_000:])
              + text({"type": "fullStatus", "partial": False, "status": {"frc": 0}})
              + text({"type": "response", "requestId": "1", "success": True}))

    async def scenario() -> None:
        async with raw_peer(script) as (port, got):
            await apply_to(raw_action(port))
            await eventually(lambda: bool(got) and got[-1][0] == 8)
        assert got[0] == (10, b"are you there")  # the pong
        assert json.loads(got[1][1]) == {"type": "setValue", "requestId": 1, "key": "frc",
                                         "value": 1}  # unsecured: not wrapped
        assert got[2] == (8, struct.pack("!H", 1000))
    run(scenario())


def test_a_message_over_1_mib_fails_before_it_is_read() -> None:
    async def scenario() -> None:
        async with raw_peer(frame(1, b'{"type": ', size=2 * 1024 * 1024)) as (port, _):
            with pytest.raises(ActionError, match="exceeds 1024 KiB"):
                await apply_to(raw_action(port))
        big = b"x" * 600_000
        async with raw_peer(frame(1, big, fin=False) + frame(0, big)) as (port, _):
            with pytest.raises(ActionError, match="exceeds 1024 KiB"):
                await apply_to(raw_action(port))
    run(scenario())


def test_a_wrong_accept_key_is_refused() -> None:
    async def scenario() -> None:
        async with raw_peer(b"", accept="c2FtZQ==") as (port, got):
            with pytest.raises(ActionError, match="Sec-WebSocket-Accept"):
                await apply_to(raw_action(port))
        assert got == []
    run(scenario())


def test_a_close_from_the_charger_is_an_error_with_its_code() -> None:
    async def scenario() -> None:
        async with raw_peer(frame(8, struct.pack("!H", 1008))) as (port, _):
            with pytest.raises(ActionError, match=r"closed the websocket \(code 1008\)"):
                await apply_to(raw_action(port))
    run(scenario())


# -- checks, log text, the store ------------------------------------------------------------

GOOD: Action = {"type": "wattpilot.set", "host": "192.168.1.60", "port": 80, "path": "/ws",
                "password_hash": OTHER_HP, "serial": "91400617", "values": {"frc": 1},
                "timeout_s": 5}


@pytest.mark.parametrize(("changes", "problem"), [
    ({"host": None}, "'host' must be a str"),
    ({"port": "80"}, "'port' must be a int"),
    ({"port": True}, "'port' must be a port number"),
    ({"port": 70000}, "'port' must be a port number"),
    ({"password_hash": None}, "'password_hash' must be a str"),
    ({"values": None}, "'values' must be a dict"),
    ({"values": {}}, "'values' names no key"),
    ({"values": {"frc": [1]}}, "values.frc must be a JSON number"),
    ({"values": {"amp": float("nan")}}, "values.amp must be a JSON number"),
    ({"values": {"": 1}}, "non-empty str"),
    ({"path": "ws"}, "'path' must be a str that starts with /"),
    ({"serial": 91400617}, "'serial' must be a str"),
    ({"timeout_s": 0}, "timeout_s must be"),
])
def test_a_malformed_wattpilot_action_is_refused(changes: Action, problem: str) -> None:
    with pytest.raises(ActionError, match=problem):
        check_action(dict(GOOD, **changes))


def test_the_optional_fields_may_be_left_out() -> None:
    action = {"type": "wattpilot.set", "host": "wattpilot.lan", "port": 80,
              "password_hash": OTHER_HP,
              "values": {"frc": 1, "amp": 6.0, "ful": False, "fna": "x", "trx": None}}
    assert check_action(action) is action


def test_describe_never_shows_the_password_hash() -> None:
    assert describe(GOOD) == "Wattpilot 192.168.1.60:80 frc := 1"
    two = describe(dict(GOOD, values={"amp": 6, "frc": 1}))
    assert two == "Wattpilot 192.168.1.60:80 amp := 6, frc := 1"
    assert OTHER_HP not in two


def test_the_store_seals_the_password_hash(tmp_path: Path) -> None:
    PendingStore(tmp_path).save({"ev/charger": GOOD})
    stored = (tmp_path / FILE_NAME).read_text()
    assert OTHER_HP not in stored and '"password_hash": "sealed:v1:' in stored
    assert PendingStore(tmp_path).load() == {"ev/charger": GOOD}


# -- through the guardian process -----------------------------------------------------------

RUNTIME = textwrap.dedent("""\
    # a stand-in runtime: says hello, registers $ACTION once (the first run), beats
    import json, os, pathlib, socket, sys, time
    channel = socket.socket(fileno=int(os.environ["ESESS_GUARDIAN_FD"]))
    def say(message):
        channel.sendall(json.dumps(message).encode() + b"\\n")
    say({"op": "hello", "pid": os.getpid()})
    marker = pathlib.Path(os.environ["MARKER"])
    if not marker.exists():
        marker.touch()
        say({"op": "set", "id": 1, "key": "ev/charger",
             "action": json.loads(os.environ["ACTION"])})
        print("registered:", channel.recv(4096).decode().strip(), flush=True)
    while True:
        say({"op": "beat"})
        time.sleep(0.3)
    """)


def guarded(tmp_path: Path, action: Action | None) -> Guarded:
    (tmp_path / "runtime.py").write_text(RUNTIME)
    marker = tmp_path / "registered-once"
    if action is None:
        marker.touch()
    command = [sys.executable, "-m", "flowengine.guardian", "--state-dir",
               str(tmp_path / "state"), "--", sys.executable, str(tmp_path / "runtime.py")]
    return Guarded(tmp_path / "none.yaml", address=None, state_dir=tmp_path / "state",
                   plugins=plugin_path(tmp_path / "plugins"), command=command,
                   env={"ACTION": json.dumps(action), "MARKER": str(marker)})


def guardian_test(tmp_path: Path,
                  body: Callable[[WattpilotSim, Action], Awaitable[Guarded]]) -> None:
    async def scenario() -> None:
        async with WattpilotSim(password=PASSWORD) as wp:
            wp.plug_in(soc=40)
            action = stop_charging(wp)
            g = await body(wp, action)
            assert wp.state.settings["frc"] == 1 and not wp.state.charging
            assert action["password_hash"] not in g.output
            assert PASSWORD not in g.output
    run(scenario())


def test_kill_9_of_the_runtime_stops_charging_through_the_guardian(tmp_path: Path) -> None:
    async def body(wp: WattpilotSim, action: Action) -> Guarded:
        async with guarded(tmp_path, action) as g:
            first = await g.runtime_pid()
            await g.wait_for('registered: {"id": 1, "ok": true}')
            await g.wait_for("holding for ev/charger: Wattpilot 127.0.0.1:")
            stored = (tmp_path / "state" / FILE_NAME).read_text()
            assert '"values": {' in stored and action["password_hash"] not in stored
            assert wp.writes == []
            os.kill(first, signal.SIGKILL)
            await eventually(lambda: wp.state.settings["frc"] == 1, timeout=5)
            await g.wait_for(f"ev/charger: applied Wattpilot 127.0.0.1:{wp.port} frc := 1")
            await g.runtime_pid(other_than=first)
            assert await g.stop() == 0
        assert wp.writes == [("frc", 1, True)]
        return g
    guardian_test(tmp_path, body)


def test_a_pending_wattpilot_action_is_applied_before_the_runtime_starts(
        tmp_path: Path) -> None:
    async def body(wp: WattpilotSim, action: Action) -> Guarded:
        PendingStore(tmp_path / "state").save({"ev/charger": action})
        async with guarded(tmp_path, None) as g:
            applied = await g.wait_for("ev/charger: applied Wattpilot")
            assert applied < await g.wait_for("runtime started")
            assert await g.stop() == 0
        assert wp.writes == [("frc", 1, True)]
        assert not (tmp_path / "state" / FILE_NAME).exists()
        return g
    guardian_test(tmp_path, body)
