"""The admin API's aiohttp application, imported when its first client connects.

`serve(server, sock)` starts it on the listening socket `AdminServer` opened; the
routes, the token check and the `/watch` stream are here (see `server` for the API).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from flowengine.admin.server import MAX_BODY, MAX_WATCHERS, WATCH_QUEUE, Watcher
from flowengine.errors import FlowStartError

if TYPE_CHECKING:
    from flowengine.admin.server import AdminServer

__all__ = ["serve"]

log = logging.getLogger("flowengine.admin.server")

CHECK_GONE_S = 1.0  # how often an idle stream looks whether its reader went away
SHUTDOWN_S = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(server: AdminServer, sock: socket.socket) -> web.AppRunner:
    """The application of `server`, accepting on `sock` (listening already)."""
    handlers = _Handlers(server)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[handlers.guard])
    app.router.add_get("/status", handlers.status)
    app.router.add_post("/deploy", handlers.deploy)
    app.router.add_get("/watch", handlers.watch)
    app.router.add_post("/flows/{flow}/stop", handlers.stop)
    app.router.add_post("/flows/{flow}/start", handlers.start)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=SHUTDOWN_S)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


class _Handlers:
    """The routes of one `AdminServer`."""

    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self.deployer = server.deployer
        self.hub = server.hub
        self.address = server.address

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(
                given.strip().encode("utf-8", "surrogateescape"), self.server.token.encode()):
            return _error(401, f"no valid token: send the text of {self.address.token_path} "
                               "as Authorization: Bearer <token>")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.status, exc.reason)

    async def status(self, request: web.Request) -> web.Response:
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

    async def deploy(self, request: web.Request) -> web.Response:
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

    async def stop(self, request: web.Request) -> web.Response:
        return await self._flow_op(request, self.deployer.stop)

    async def start(self, request: web.Request) -> web.Response:
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

    async def watch(self, request: web.Request) -> web.StreamResponse:
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
