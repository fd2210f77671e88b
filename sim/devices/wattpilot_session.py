"""One client's conversation with the simulated Wattpilot (`sim.devices.wattpilot`).

hello, authRequired, the auth check, the full status in parts, securedMsg with its
hmac, setValue and the `response` to it, requestFullStatus; docs/design/
wattpilot-protocol.md §1 and §2. The charger (`WattpilotSim`) holds what is shared:
the settings, the password hash, the faults.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import string
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from sim.devices.wattpilot_hash import auth_hash, message_hmac

if TYPE_CHECKING:
    from sim.devices.wattpilot import WattpilotSim

__all__ = ["Session"]

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
_TOKEN_CHARS = string.ascii_letters + string.digits


def _token() -> str:
    return "".join(secrets.choice(_TOKEN_CHARS) for _ in range(32))


class Session:
    """One websocket connection to the charger, from hello to close."""

    def __init__(self, charger: WattpilotSim, ws: ServerConnection) -> None:
        self.charger, self.ws = charger, ws
        self.token1, self.token2 = charger.tokens or (_token(), _token())
        self.authenticated = False

    async def run(self) -> None:
        c = self.charger
        try:
            await c.speaking.wait()
            await self._send({
                "type": "hello", "serial": c.serial, "hostname": f"Wattpilot_{c.serial}",
                "friendly_name": c.state.settings["fna"], "manufacturer": "fronius",
                "devicetype": c.devicetype, "version": c.firmware, "protocol": 2,
                "secured": c.secured})
            challenge: JsonObject = {"type": "authRequired", "token1": self.token1,
                                     "token2": self.token2}
            if c.announce_hash:
                challenge["hash"] = c.hash_method
            await self._send(challenge)
            async for raw in self.ws:
                if c.speaking.is_set():
                    await self._receive(raw)
        except ConnectionClosed:
            pass

    async def _receive(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            log.debug("wattpilot sim: not JSON: %r", raw[:80])
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type")
        if not self.authenticated:
            if kind == "auth":
                await self._auth(msg)
            return
        if kind == "securedMsg":
            await self._secured(msg)
        elif kind == "setValue" and not self.charger.secured:
            await self._set_value(msg)
        elif kind == "setValue":
            await self._respond(msg.get("requestId"), False,
                                message="a secured connection needs a securedMsg")
        elif kind == "requestFullStatus":
            await self.full_status()
        else:
            await self._respond(msg.get("requestId"), False,
                                message=f'unknown message type="{kind}"')

    async def _auth(self, msg: JsonObject) -> None:
        token3, given = msg.get("token3"), msg.get("hash")
        if isinstance(token3, str) and isinstance(given, str) and hmac.compare_digest(
                given, auth_hash(self.charger.password_hash, self.token1, self.token2, token3)):
            self.authenticated = True
            self.charger.logins += 1
            await self._send({"type": "authSuccess", "token3": token3, "hash": given})
            await self.full_status()
            return
        await self._send({"type": "authError", "token3": token3, "hash": given,
                          "message": "Wrong password"})
        await self.ws.close()

    async def _secured(self, msg: JsonObject) -> None:
        data, mac = msg.get("data"), msg.get("hmac")
        outer_id = str(msg.get("requestId", "")).removesuffix("sm")
        try:
            inner = json.loads(data) if isinstance(data, str) else None
        except ValueError:
            inner = None
        if not isinstance(data, str) or not isinstance(inner, dict):
            await self._respond(outer_id, False, message="data is not a JSON object")
        elif not isinstance(mac, str) or not hmac.compare_digest(
                mac, message_hmac(self.charger.password_hash, data)):
            await self._respond(inner.get("requestId", outer_id), False, message="invalid hmac")
        elif inner.get("type") == "setValue":
            await self._set_value(inner)
        elif inner.get("type") == "requestFullStatus":
            await self.full_status()
        else:
            await self._respond(inner.get("requestId", outer_id), False,
                                message=f'unknown message type="{inner.get("type")}"')

    async def _set_value(self, msg: JsonObject) -> None:
        c = self.charger
        key, value, request_id = msg.get("key"), msg.get("value"), msg.get("requestId")
        if not isinstance(key, str):
            await self._respond(request_id, False, message="key must be a string")
            return
        problem = "write refused (simulated fault)" if c.refusing else c.state.write(key, value)
        c.writes.append((key, value, problem is None))
        if problem is not None:
            await self._respond(request_id, False, message=problem)
            return
        await self._respond(request_id, True, status={key: c.state.settings[key]})
        c.changed()

    async def _respond(self, request_id: Any, success: bool, *,
                       status: JsonObject | None = None, message: str | None = None) -> None:
        """`response`, its requestId the request's (the inner one of a securedMsg) as a
        string, as in the JOS example (docs/design/wattpilot-protocol.md §2.3)."""
        reply: JsonObject = {"type": "response", "requestId": str(request_id),
                             "success": success}
        if status is not None:
            reply["status"] = status
        if message is not None:
            reply["message"] = message
        await self._send(reply)

    async def full_status(self) -> None:
        status = self.charger.status()
        keys = list(status)
        size = -(-len(keys) // self.charger.status_parts)
        for start in range(0, len(keys), size):
            part = {k: status[k] for k in keys[start:start + size]}
            await self._send({"type": "fullStatus", "partial": start + size < len(keys),
                              "status": part})

    async def _send(self, msg: JsonObject) -> None:
        await self.ws.send(json.dumps(msg))
