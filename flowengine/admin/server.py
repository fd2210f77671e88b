"""The admin API inside the runtime: aiohttp on a unix socket (0600) or a loopback port.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from flowengine.admin.access import AdminAddress, drop_token, new_token
from flowengine.admin.deploy import Deployer
from flowengine.errors import FlowStartError
from flowengine.formats import ADMIN_HOSTS

if TYPE_CHECKING:
    from flowengine.model import Message
    from flowengine.runner import NodeRunner
    from flowengine.runtime import EngineEvent, Tap

__all__ = ["MAX_BODY", "MAX_WATCHERS", "WATCH_QUEUE", "AdminServer"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
MAX_WATCHERS = 4
WATCH_QUEUE = 200
CHECK_GONE_S = 1.0  # how often an idle stream looks whether its reader went away
SHUTDOWN_S = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminError(Exception):
    """The admin API could not start (the runtime runs on without it)."""


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


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
        self._token = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen; AdminError (with the reason) when it cannot."""
        address = self.address
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.router.add_get("/status", self._status)
        app.router.add_post("/deploy", self._deploy)
        app.router.add_get("/watch", self._watch)
        app.router.add_post("/flows/{flow}/stop", self._stop)
        app.router.add_post("/flows/{flow}/start", self._start)
        sock = None
        try:
            sock = self._unix_socket() if address.listen == "unix" else None
            self._token = new_token(address)
        except OSError as exc:
            if sock is not None:
                sock.close()
                with contextlib.suppress(OSError):
                    address.socket_path.unlink()
            raise AdminError(f"cannot use {address.state_dir}: {exc.strerror or exc}") from exc
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            if sock is not None:
                site: web.BaseSite = web.SockSite(runner, sock)
            else:
                if address.host not in ADMIN_HOSTS:  # the site schema refuses it already
                    raise AdminError(f"admin host {address.host}: loopback only")
                site = web.TCPSite(runner, address.host, address.port)
            await site.start()
        except (OSError, AdminError) as exc:
            await runner.cleanup()
            if sock is not None:
                sock.close()
            drop_token(address, self._token)
            if isinstance(exc, AdminError):
                raise
            raise AdminError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        self._runner = runner
        log.info("admin API on %s (token in %s)", address, address.token_path)

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

    async def close(self) -> None:
        if self._runner is None:
            return
        self.hub.close()
        await self._runner.cleanup()
        self._runner = None
        if self.address.listen == "unix":
            with contextlib.suppress(OSError):
                self.address.socket_path.unlink()
        drop_token(self.address, self._token)

    # -- requests ------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(
                given.strip().encode("utf-8", "surrogateescape"), self._token.encode()):
            return _error(401, f"no valid token: send the text of {self.address.token_path} "
                               "as Authorization: Bearer <token>")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.status, exc.reason)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"flows": self.deployer.snapshot(),
                                  "guardian": self._guardian()})

    def _guardian(self) -> dict[str, Any]:
        link = self.deployer.runtime.guardian
        if link is None:
            return {"state": "none", "text": "not guarded: nothing applies the safe states "
                                             "if this process dies (run with --guardian)"}
        if link.lost:
            return {"state": "lost", "text": "the guardian is gone"}
        held = link.held()
        return {"state": "guarding", "held": held,
                "text": f"guarding: {len(held)} safe action(s) held"}

    async def _deploy(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body must be JSON: {\"files\": [paths], \"vars\": {}}")
        files, variables = (body.get("files"), body.get("vars") or {}) \
            if isinstance(body, dict) else (None, None)
        if not isinstance(files, list) or not files or \
                not all(isinstance(f, str) and os.path.isabs(f) for f in files) or \
                not isinstance(variables, dict):
            return _error(400, "give {\"files\": [absolute paths], \"vars\": {name: value}}")
        if self.deployer.lock.locked():
            return _error(409, "a deploy, stop or start is under way; try again")
        async with self.deployer.lock:
            result = await self.deployer.deploy(files, variables)
        for item in result.get("flows", ()):  # a change is news; "unchanged" is not
            level = logging.DEBUG if item["result"].startswith("unchanged") else logging.INFO
            log.log(level, "deploy: flow '%s': %s", item["flow"], item["result"])
        return web.json_response(result)

    async def _stop(self, request: web.Request) -> web.Response:
        return await self._flow_op(request, self.deployer.stop)

    async def _start(self, request: web.Request) -> web.Response:
        return await self._flow_op(request, self.deployer.start)

    async def _flow_op(self, request: web.Request,
                       op: Callable[[str], Awaitable[str]]) -> web.Response:
        fid = request.match_info["flow"]
        if self.deployer.lock.locked():
            return _error(409, "a deploy, stop or start is under way; try again")
        async with self.deployer.lock:
            try:
                text = await op(fid)
            except LookupError as exc:
                return _error(404, str(exc.args[0]))
            except FlowStartError as exc:
                return _error(500, str(exc))
        return web.json_response({"flow": fid, "result": text})

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        flow, node = request.query.get("flow", ""), request.query.get("node") or None
        if flow not in self.deployer.plans:
            known = ", ".join(sorted(self.deployer.plans)) or "none"
            return _error(404, f"no flow '{flow}' (flows: {known})")
        run = self.deployer.runtime.flows.get(flow)
        if node is not None and run is not None and \
                node not in {r.node_id for r in run.all_runners()}:
            return _error(404, f"flow '{flow}' has no node '{node}' "
                               f"(nodes: {', '.join(run.runners)})")
        if self.hub.count() >= MAX_WATCHERS:
            return _error(429, f"{MAX_WATCHERS} watchers already; end one first")
        watcher = Watcher(flow, node)
        self.hub.add(watcher)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            await response.write(_line({"watching": flow, "node": node,
                                        "queue": WATCH_QUEUE}))
            await self._stream(request, response, watcher)
        except ConnectionError:  # the reader went away mid-write
            log.debug("watch of %s: the reader went away", flow)
        finally:
            self.hub.remove(watcher)
        return response

    async def _stream(self, request: web.Request, response: web.StreamResponse,
                      watcher: Watcher) -> None:
        reported = 0
        while not self.hub.closing:
            try:
                async with asyncio.timeout(CHECK_GONE_S):
                    await watcher.ready.wait()
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    return
                continue
            watcher.ready.clear()
            lines: list[bytes] = []
            if watcher.dropped != reported:
                lines.append(_line({"dropped": watcher.dropped - reported,
                                    "dropped_total": watcher.dropped}))
                reported = watcher.dropped
            while watcher.queue:
                node, port, msg = watcher.queue.popleft()
                lines.append(_line({"flow": watcher.flow, "node": node, "port": port,
                                    "topic": msg.topic, "value": msg.value, "wall": msg.wall}))
            if lines:
                await response.write(b"".join(lines))


def _line(item: dict[str, Any]) -> bytes:
    return json.dumps(item, default=repr, separators=(",", ":")).encode() + b"\n"
