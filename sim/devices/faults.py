"""Faults a simulated device can be told to show at run time, for tests of the clients.

- `slow(delay_s)`: answer every request, but only after a delay;
- `hang()`: accept the connection and the request, never answer (a client times out);
- `garbage()`: answer 200 with a body that is not JSON;
- `deep()`: answer 200 with `{"emeters":` and 50000 `[`, nested too deep for a JSON parser
  (Python's raises RecursionError, not a decode error);
- `answer(body)`: answer 200 with exactly these bytes (any other broken or odd reply);
- going away (the port closed) is `DeviceServer.go_away()`, since it needs the server.

`clear()` ends the fault; requests left hanging are then answered normally.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["DEEP_BODY", "GARBAGE_BODY", "Fault", "Faults"]

GARBAGE_BODY = b'{"emeters": [{"power": 12\x00\xff<html>oops'
DEEP_BODY = b'{"emeters":' + b"[" * 50_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Fault(enum.Enum):
    NONE = "none"
    SLOW = "slow"
    HANG = "hang"
    GARBAGE = "garbage"
    DEEP = "deep"
    BODY = "body"


class Faults:
    """The fault a device shows now; the server's middleware applies it to every request."""

    def __init__(self) -> None:
        self.mode = Fault.NONE
        self.delay_s = 0.0
        self.body = b""
        """what GARBAGE, DEEP and BODY answer"""
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
        self.body = GARBAGE_BODY

    def deep(self) -> None:
        self._set(Fault.DEEP)
        self.body = DEEP_BODY

    def answer(self, body: bytes) -> None:
        self._set(Fault.BODY)
        self.body = body

    def clear(self) -> None:
        self._set(Fault.NONE)

    def _set(self, mode: Fault) -> None:
        self._release.set()  # whatever hung so far is answered
        self._release = asyncio.Event()
        self.mode = mode
        self.delay_s = 0.0
        self.body = b""

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
        elif self.mode in (Fault.GARBAGE, Fault.DEEP, Fault.BODY):
            return web.Response(body=self.body, content_type="application/json")
        return await handler(request)
