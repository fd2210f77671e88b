"""The runtime's side of the guardian: what it registers, updates and withdraws, when.

The test plays the guardian's end of the socketpair (the real line protocol, answered
as the guardian answers); the guardian process itself is tested in
tests/integration/dbus/test_guardian.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from conftest import eventually, run, test_registry

from flowengine.guard import GuardianLink
from flowengine.testing import FlowHarness


class GuardianEnd:
    """The guardian's end: records every line, answers ok (or refuses)."""

    def __init__(self, sock: socket.socket, *, refuse: bool = False) -> None:
        self.sock, self.refuse = sock, refuse
        self.ops: list[dict[str, Any]] = []
        self.held: dict[str, dict[str, Any]] = {}
        self.task: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def serve(self) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=self.sock)
        self.writer = writer
        while line := await reader.readline():
            msg = json.loads(line)
            self.ops.append(msg)
            if msg["op"] == "set" and not self.refuse:
                self.held[msg["key"]] = msg["action"]
            elif msg["op"] == "drop":
                self.held.pop(msg["key"], None)
            if "id" in msg:
                reply = {"id": msg["id"], "ok": not self.refuse}
                writer.write(json.dumps(reply).encode() + b"\n")

    def count(self, op: str) -> int:
        return sum(1 for m in self.ops if m["op"] == op)


    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.writer is not None:
            self.writer.close()


@contextlib.asynccontextmanager
async def linked(h: FlowHarness, *, refuse: bool = False) -> AsyncIterator[GuardianEnd]:
    """`h` runs under a guardian whose end is the GuardianEnd yielded."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    end = GuardianEnd(theirs, refuse=refuse)
    end.task = asyncio.create_task(end.serve())
    link = GuardianLink(ours)
    await link.open()
    h.runtime.guardian = link
    try:
        yield end
    finally:
        await link.close()
        await end.close()


def flow(device: Path) -> str:
    return f"""
        id: f
        nodes:
          - {{id: act, type: test.actuator, device: "{device}", safe_value: 0,
              fail_on: bad}}
        """


def test_registered_before_the_first_drive_once_and_withdrawn_after_the_safe_state(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        device = tmp_path / "device"
        h = FlowHarness(flow(device), registry=test_registry())
        async with linked(h) as end, h:
            assert end.count("hello") == 1 and end.count("set") == 0
            await h.send("act", "x", 5)
            await eventually(lambda: "f/act" in end.held)
            assert device.read_text() == "5\n"
            await h.send("act", "x", 6)
            await h.send("act", "x", 7)
            assert end.count("set") == 1  # the same action is not sent again
        await eventually(lambda: end.count("drop") == 1)
        assert end.held == {} and device.read_text() == "0\n"
    run(scenario())


def test_a_failed_node_withdraws_after_its_safe_state_and_registers_again_after_restart(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        device = tmp_path / "device"
        h = FlowHarness(flow(device), registry=test_registry())
        async with linked(h) as end, h:
            await h.send("act", "x", 5)
            await eventually(lambda: "f/act" in end.held)
            await h.send("act", "x", "bad")  # fails: safe state, then a restart later
            await eventually(lambda: end.count("drop") == 1)
            assert "f/act" not in end.held and device.read_text() == "0\n"
            await h.advance(1500)
            await eventually(lambda: h.runner("act").restarts == 1)
            await h.send("act", "x", 8)
            await eventually(lambda: "f/act" in end.held)
            assert end.count("set") == 2
    run(scenario())


def test_a_heartbeat_goes_out_every_second(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = FlowHarness(flow(tmp_path / "device"), registry=test_registry())
        async with linked(h) as end, h:
            await asyncio.sleep(2.2)
            assert end.count("beat") == 2
    run(scenario())


def test_a_refused_registration_is_logged_and_tried_again_at_the_next_drive(
        tmp_path: Path, caplog: Any) -> None:
    async def scenario() -> None:
        h = FlowHarness(flow(tmp_path / "device"), registry=test_registry())
        async with linked(h, refuse=True) as end, h:
            await h.send("act", "x", 5)
            await eventually(lambda: end.count("set") == 1)
            await h.send("act", "x", 6)
            await eventually(lambda: end.count("set") == 2)
        assert "the guardian refused the safe action of f/act" in caplog.text
    run(scenario())


def test_losing_the_guardian_is_reported_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        link = GuardianLink(ours)
        lost = asyncio.Event()
        link.on_lost = lost.set
        await link.open()
        theirs.close()
        await asyncio.wait_for(lost.wait(), 2)
        assert link.lost
        assert await link.hold("f/n", {"type": "http.get", "url": "http://x/"}) is False
        await link.close()
    run(scenario())
