"""The runtime's side of the guardian: heartbeat, registering and withdrawing safe actions.

When the runtime runs under the guardian (`flowengine.guardian`), the guardian hands it
one end of a socketpair in ESESS_GUARDIAN_FD. `GuardianLink` sends a heartbeat every
second from the event loop (so a loop that stops turning stops the heartbeat), and
registers each node's safe action before the node first drives the outside world:
`hold` waits until the guardian has it on disk. Without a guardian (development,
`--no-guardian`) there is no link and registering does nothing.

If the guardian goes away, the runtime cannot be guarded any more: `on_lost` is called
(the CLI stops the runtime, applying the safe states, so that the service restarts both).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ENV_FD", "GuardianLink"]

log = logging.getLogger(__name__)

ENV_FD = "ESESS_GUARDIAN_FD"  # the same name as in flowengine.guardian.supervisor
BEAT_S = 1.0
ACK_TIMEOUT_S = 3.0


class GuardianLink:
    """One open channel to the guardian; see the module docstring."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._held: dict[str, str] = {}  # key -> the action as sent (JSON)
        self._serial = 0
        self.lost = False
        self.on_lost: Callable[[], None] | None = None

    @classmethod
    def from_environment(cls) -> GuardianLink | None:
        """The link the guardian handed down, or None when there is no guardian."""
        text = os.environ.pop(ENV_FD, None)
        if not text:
            return None
        try:
            sock = socket.socket(fileno=int(text))
        except (ValueError, OSError) as exc:
            log.error("%s=%r is not an open socket (%s); running without the guardian",
                      ENV_FD, text, exc)
            return None
        return cls(sock)

    async def open(self) -> None:
        """Say hello and start the heartbeat (call from the running loop)."""
        self._sock.setblocking(False)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        self._send({"op": "hello", "pid": os.getpid()})
        beat = asyncio.create_task(self._beat(), name="guardian:heartbeat")
        listen = asyncio.create_task(self._listen(), name="guardian:replies")
        self._tasks = [beat, listen]
        log.info("running under the guardian")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()

    # -- registrations ----------------------------------------------------------------------
    async def hold(self, key: str, action: Mapping[str, Any]) -> bool:
        """Register (or update) `key`'s safe action; True once the guardian has it."""
        text = json.dumps(action, sort_keys=True)
        if self._held.get(key) == text:
            return True
        reply = await self._request({"op": "set", "key": key, "action": dict(action)})
        if reply.get("ok"):
            self._held[key] = text
            return True
        log.error("the guardian refused the safe action of %s: %s", key, reply.get("error"))
        return False

    async def release(self, key: str) -> None:
        """Withdraw `key`'s safe action (its node has applied it itself)."""
        if self._held.pop(key, None) is None:
            return
        await self._request({"op": "drop", "key": key})

    def holds(self, key: str) -> bool:
        return key in self._held

    def held(self) -> list[str]:
        """The keys whose safe actions the guardian holds now (for `status`)."""
        return sorted(self._held)

    async def _request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.lost:
            return {"ok": False, "error": "the guardian is gone"}
        self._serial += 1
        serial = msg["id"] = self._serial
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[serial] = future
        try:
            self._send(msg)
            async with asyncio.timeout(ACK_TIMEOUT_S):
                return await future
        except TimeoutError:
            log.error("the guardian did not confirm %s of %s within %.0f s", msg["op"],
                      msg["key"], ACK_TIMEOUT_S)
            return {"ok": False, "error": "no answer"}
        finally:
            self._waiting.pop(serial, None)

    # -- the channel ---------------------------------------------------------------------------
    def _send(self, msg: Mapping[str, Any]) -> None:
        if self._writer is None or self.lost:
            return
        self._writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    async def _beat(self) -> None:
        line = b'{"op":"beat"}\n'
        while True:
            await asyncio.sleep(BEAT_S)
            if self._writer is not None and not self.lost:
                self._writer.write(line)

    async def _listen(self) -> None:
        assert self._reader is not None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                try:
                    reply = json.loads(line)
                except ValueError:
                    log.error("unreadable answer from the guardian (%d bytes)", len(line))
                    continue
                serial = reply.get("id") if isinstance(reply, dict) else None
                future = self._waiting.get(serial) if isinstance(serial, int) else None
                if future is not None and not future.done():
                    future.set_result(reply)
        except (OSError, ConnectionError, ValueError) as exc:  # ValueError: line too long
            log.error("the channel to the guardian failed: %s", exc)
        self.lost = True
        for future in self._waiting.values():
            if not future.done():
                future.set_result({"ok": False, "error": "the guardian is gone"})
        log.critical("the guardian is gone: the safe states are no longer kept outside "
                     "this process")
        if self.on_lost is not None:
            self.on_lost()
