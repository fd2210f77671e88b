"""What every simulated Shelly Gen2+ device shares: `/shelly`, RPC over HTTP, digest auth.

Methods are called as `GET /rpc/<Method>?id=0&key=value` (the result is the reply
body) or `POST /rpc` with `{"id": 1, "method": "...", "params": {...}}` (the reply is
a JSON-RPC frame with `result` or `error`). Query values `true`, `false` and numbers
are read as JSON. A subclass fills `methods()`; each takes the params and returns the
result, or raises `RpcError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sim.devices.auth import DigestAuth
from sim.devices.server import DeviceServer, JsonObject
from sim.model import EnergyModel

__all__ = ["Gen2Device", "RpcError", "component_id"]

Method = Callable[[JsonObject], JsonObject]


class RpcError(Exception):
    """A method refused its call; Shelly's codes: -103 bad argument, -105 not found, 404."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def component_id(params: JsonObject, count: int = 1) -> int:
    """The `id` argument of a component call, checked against the components there are."""
    value = params.get("id", 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
        raise RpcError(-105, f"Argument 'id', value {value} not found!")
    return value


def _query_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class Gen2Device(DeviceServer):
    """A Gen2+ Shelly: `/shelly` is open; RPC needs digest auth when a password is set."""

    gen = 2
    app = "Plus1PM"
    model_code = "SNSW-001P16EU"
    firmware = ("20241011-114455/1.4.4-g6d2a586", "1.4.4")

    def __init__(self, model: EnergyModel, *, device_id: str, mac: str,
                 password: str | None = None, port: int = 0) -> None:
        super().__init__(model, port=port)
        self.device_id = device_id
        self.mac = mac
        self.digest = None if password is None else DigestAuth(password, realm=device_id)
        self.auth = self.digest

    def methods(self) -> dict[str, Method]:
        return {"Shelly.GetDeviceInfo": lambda params: self.device_info(),
                "Shelly.GetStatus": lambda params: self.status()}

    def device_info(self) -> JsonObject:
        fw_id, ver = self.firmware
        return {
            "name": None, "id": self.device_id, "mac": self.mac, "slot": 0,
            "model": self.model_code, "gen": self.gen, "fw_id": fw_id, "ver": ver,
            "app": self.app, "auth_en": self.digest is not None,
            "auth_domain": self.device_id if self.digest is not None else None,
        }

    def status(self) -> JsonObject:
        """Every component's status, as `Shelly.GetStatus` answers."""
        return {"sys": self.sys_status(), "cloud": {"connected": False},
                "mqtt": {"connected": False},
                "wifi": {"sta_ip": "127.0.0.1", "status": "got ip", "ssid": "sim", "rssi": -60}}

    def sys_status(self) -> JsonObject:
        return {"mac": self.mac, "restart_required": False, "uptime": self.uptime_s,
                "available_updates": {}}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/shelly", self._shelly), web.get("/rpc/{method}", self._get),
                web.post("/rpc", self._post)]

    def call(self, method: str, params: JsonObject) -> JsonObject:
        handler = self.methods().get(method)
        if handler is None:
            raise RpcError(404, f"No handler for {method}")
        return handler(params)

    async def _shelly(self, request: web.Request) -> web.Response:
        return web.json_response(self.device_info())

    async def _get(self, request: web.Request) -> web.Response:
        params = {key: _query_value(value) for key, value in request.query.items()}
        try:
            result = self.call(request.match_info["method"], params)
        except RpcError as exc:
            status = 404 if exc.code == 404 else 400
            return web.json_response({"code": exc.code, "message": exc.message}, status=status)
        return web.json_response(result)

    async def _post(self, request: web.Request) -> web.Response:
        try:
            frame = await request.json()
        except ValueError:
            return web.json_response({"code": -32700, "message": "parse error"}, status=400)
        if not isinstance(frame, dict) or not isinstance(frame.get("method"), str):
            return web.json_response({"code": -32600, "message": "invalid request"}, status=400)
        params = frame.get("params") or {}
        reply: JsonObject = {"id": frame.get("id"), "src": self.device_id}
        if "src" in frame:
            reply["dst"] = frame["src"]
        try:
            reply["result"] = self.call(frame["method"], params if isinstance(params, dict) else {})
        except RpcError as exc:
            reply["error"] = {"code": exc.code, "message": exc.message}
        return web.json_response(reply)
