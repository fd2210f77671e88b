"""The admin API inside the runtime: HTTP on a unix socket (0600) or a loopback port.

Every request carries `Authorization: Bearer <token>` (see `access`); anything else is
answered 401 with a one-line error. Answers are JSON; `/watch` streams NDJSON.

    GET  /status                  every flow and node (Runtime.snapshot) and the guardian
    POST /deploy                  {"files": [absolute paths], "vars": {...}} -> per flow
    GET  /watch?flow=F[&node=N]   the messages a node emits, live, one JSON per line
    POST /flows/<id>/stop         stop a flow (until start or the next start of the runtime)
    POST /flows/<id>/start        start it again from its last deployed plan

Bounded so it cannot slow a GX: bodies up to 1 MiB, at most MAX_WATCHERS watchers, each
with a queue of WATCH_QUEUE messages (the oldest is dropped and counted; the stream says
how many); a slow reader slows only its own stream, never the flows.

The socket listens from the start, but aiohttp's server (`app`) is imported only when
the first client connects: a runtime nobody asks costs no memory for it (2 MB here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from typing import TYPE_CHECKING

from flowengine.admin.access import AdminAddress, drop_token, new_token
from flowengine.admin.deploy import Deployer
from flowengine.formats import ADMIN_HOSTS

if TYPE_CHECKING:
    from aiohttp import web

    from flowengine.model import Message
    from flowengine.runner import NodeRunner
    from flowengine.runtime import EngineEvent, Tap

__all__ = ["MAX_BODY", "MAX_WATCHERS", "WATCH_QUEUE", "AdminServer"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
MAX_WATCHERS = 4
WATCH_QUEUE = 200
BACKLOG = 100


class AdminError(Exception):
    """The admin API could not start (the runtime runs on without it)."""


class Watcher:
    """One `watch` client: a bounded queue of (node, port, message)."""

    def __init__(self, flow: str, node: str | None) -> None:
        self.flow, self.node = flow, node
        self.queue: deque[tuple[str, str, Message]] = deque()
        self.dropped = 0
        self.ready = asyncio.Event()

    def offer(self, node: str, port: str, msg: Message) -> None:
        if len(self.queue) >= WATCH_QUEUE:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append((node, port, msg))
        self.ready.set()


class WatchHub:
    """Taps on the flows somebody watches; a flow started again is tapped again."""

    def __init__(self, deployer: Deployer) -> None:
        self.deployer = deployer
        self.watchers: dict[str, list[Watcher]] = {}
        self._taps: dict[str, tuple[Tap, Tap | None]] = {}  # flow -> (ours, the one before)
        self.closing = False
        deployer.runtime.on_event(self._on_event)

    def count(self) -> int:
        return sum(len(ws) for ws in self.watchers.values())

    def add(self, watcher: Watcher) -> None:
        self.watchers.setdefault(watcher.flow, []).append(watcher)
        self._attach(watcher.flow)

    def remove(self, watcher: Watcher) -> None:
        left = self.watchers.get(watcher.flow, [])
        if watcher in left:
            left.remove(watcher)
        if left:
            return
        self.watchers.pop(watcher.flow, None)
        ours, before = self._taps.pop(watcher.flow, (None, None))
        run = self.deployer.runtime.flows.get(watcher.flow)
        if run is not None and ours is not None and run.tap is ours:
            run.tap = before

    def close(self) -> None:
        self.closing = True
        for watchers in self.watchers.values():
            for watcher in watchers:
                watcher.ready.set()

    def _on_event(self, event: EngineEvent) -> None:
        if event.flow in self.watchers:  # "started ...": a new run of a watched flow
            self._attach(event.flow)

    def _attach(self, flow: str) -> None:
        run = self.deployer.runtime.flows.get(flow)
        if run is None:
            return
        current = self._taps.get(flow)
        if current is not None and run.tap is current[0]:
            return
        before = run.tap
        watchers = self.watchers[flow]

        def tap(runner: NodeRunner, port: str, msg: Message) -> None:
            node = runner.node_id
            for watcher in watchers:
                if watcher.node is None or watcher.node == node:
                    watcher.offer(node, port, msg)
            if before is not None:
                before(runner, port, msg)

        self._taps[flow] = (tap, before)
        run.tap = tap


class AdminServer:
    """The admin API of one runtime; `async with` it around the running runtime."""

    def __init__(self, deployer: Deployer, address: AdminAddress) -> None:
        self.deployer = deployer
        self.address = address
        self.hub = WatchHub(deployer)
        self.token = ""
        self._sock: socket.socket | None = None
        self._opening: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen; AdminError (with the reason) when it cannot."""
        address = self.address
        sock = None
        try:
            sock = self._unix_socket() if address.listen == "unix" else None
            self.token = new_token(address)
        except OSError as exc:
            if sock is not None:
                sock.close()
                with contextlib.suppress(OSError):
                    address.socket_path.unlink()
            raise AdminError(f"cannot use {address.state_dir}: {exc.strerror or exc}") from exc
        try:
            if sock is None:
                sock = self._tcp_socket()
            sock.listen(BACKLOG)
        except (OSError, AdminError) as exc:
            if sock is not None:
                sock.close()
            drop_token(address, self.token)
            if isinstance(exc, AdminError):
                raise
            raise AdminError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._first_client)
        log.info("admin API on %s (token in %s)", address, address.token_path)

    def _first_client(self) -> None:
        """The first connection waits in the backlog while the application starts."""
        asyncio.get_running_loop().remove_reader(self._sock.fileno())  # type: ignore[union-attr]
        self._opening = asyncio.create_task(self._open(), name="runtime:admin-api")

    async def _open(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            from flowengine.admin.app import serve  # aiohttp's server, only now

            self._runner = await serve(self, sock)
        except (OSError, ImportError) as exc:
            log.error("admin API off: it did not start: %s", exc)
            self._sock = None
            sock.close()

    def _unix_socket(self) -> socket.socket:
        path = self.address.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # left by a runtime that did not end cleanly
            else:
                raise AdminError(f"another runtime answers at {path}; it uses the same "
                                 "state_dir")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mask = os.umask(0o177)  # 0600 from the start, not after a chmod
        try:
            sock.bind(str(path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(mask)
        os.chmod(path, 0o600)
        return sock

    def _tcp_socket(self) -> socket.socket:
        host, port = self.address.host, self.address.port
        if host not in ADMIN_HOSTS:  # the site schema refuses it already
            raise AdminError(f"admin host {host}: loopback only")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
            sock.bind((host, port or 0))
        except OSError:
            sock.close()
            raise
        return sock

    async def close(self) -> None:
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self.hub.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # closes the socket too
        else:
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        if self.address.listen == "unix":
            with contextlib.suppress(OSError):
                self.address.socket_path.unlink()
        drop_token(self.address, self.token)
