"""The common part of every simulated device: an aiohttp server on 127.0.0.1.

A subclass lists its routes and says which need authentication; this class binds
the port (0 = any free one), applies faults and authentication to each request, and
can close its port and open it again (`go_away`, `come_back`) to play a device that
dropped off the network. Use it as an async context manager:

    async with Shelly3EMGen1(model, password="secret") as meter:
        ...  # meter.url is "http://127.0.0.1:<port>"
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Protocol, Self

from aiohttp import web

from sim.devices.faults import Faults, Handler
from sim.model import EnergyModel

__all__ = ["DeviceServer", "JsonObject"]

JsonObject = dict[str, Any]
HOST = "127.0.0.1"


class _Auth(Protocol):
    def allows(self, request: web.Request) -> bool: ...

    def refuse(self) -> web.Response: ...


class DeviceServer:
    """Base of the simulated devices; subclasses add `routes()` and maybe an auth."""

    open_paths: frozenset[str] = frozenset({"/shelly"})
    """paths answered without credentials, as on the real devices"""

    def __init__(self, model: EnergyModel, *, port: int = 0) -> None:
        self.model = model
        self.faults = Faults()
        self.auth: _Auth | None = None
        self._port = port
        self._runner: web.AppRunner | None = None
        self._started = time.monotonic()

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the device has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def uptime_s(self) -> int:
        return int(time.monotonic() - self._started)

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self.faults.middleware, self._check_auth])
        app.add_routes(self.routes())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self._port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        if self._port == 0:
            self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            self.faults.release()
            await runner.cleanup()

    async def go_away(self) -> None:
        """Close the port: new connections are refused, open ones are dropped."""
        await self.close()

    async def come_back(self) -> None:
        """Listen again on the same port."""
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @web.middleware
    async def _check_auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.auth is None or request.path in self.open_paths:
            return await handler(request)
        if not self.auth.allows(request):
            return self.auth.refuse()
        return await handler(request)
