"""Faults a simulated device can be told to show at run time, for tests of the clients.

- `slow(delay_s)`: answer every request, but only after a delay;
- `hang()`: accept the connection and the request, never answer (a client times out);
- `garbage()`: answer 200 with a body that is not JSON;
- going away (the port closed) is `DeviceServer.go_away()`, since it needs the server.

`clear()` ends the fault; requests left hanging are then answered normally.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["GARBAGE_BODY", "Fault", "Faults"]

GARBAGE_BODY = b'{"emeters": [{"power": 12\x00\xff<html>oops'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Fault(enum.Enum):
    NONE = "none"
    SLOW = "slow"
    HANG = "hang"
    GARBAGE = "garbage"


class Faults:
    """The fault a device shows now; the server's middleware applies it to every request."""

    def __init__(self) -> None:
        self.mode = Fault.NONE
        self.delay_s = 0.0
        self.hanging = 0
        """requests waiting for a hang to end"""
        self._release = asyncio.Event()

    def slow(self, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError(f"a delay must be >= 0, got {delay_s}")
        self._set(Fault.SLOW)
        self.delay_s = delay_s

    def hang(self) -> None:
        self._set(Fault.HANG)

    def garbage(self) -> None:
        self._set(Fault.GARBAGE)

    def clear(self) -> None:
        self._set(Fault.NONE)

    def _set(self, mode: Fault) -> None:
        self._release.set()  # whatever hung so far is answered
        self._release = asyncio.Event()
        self.mode = mode
        self.delay_s = 0.0

    def release(self) -> None:
        """Let hanging requests go (on shutdown) without changing the mode."""
        self._release.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.mode is Fault.SLOW:
            await asyncio.sleep(self.delay_s)
        elif self.mode is Fault.HANG:
            release = self._release
            self.hanging += 1
            try:
                await release.wait()
            finally:
                self.hanging -= 1
        elif self.mode is Fault.GARBAGE:
            return web.Response(body=GARBAGE_BODY, content_type="application/json")
        return await handler(request)
