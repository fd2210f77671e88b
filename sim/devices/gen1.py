"""What every simulated Shelly Gen1 device shares: `/shelly` and HTTP Basic auth."""

from __future__ import annotations

import time

from aiohttp import web

from sim.devices.auth import BasicAuth
from sim.devices.server import DeviceServer, JsonObject
from sim.model import EnergyModel

__all__ = ["Gen1Device"]

FIRMWARE = "20230913-114244/v1.14.0-gcb84623"


class Gen1Device(DeviceServer):
    """A Gen1 Shelly: `/shelly` needs no credentials; the rest needs Basic auth if set."""

    device_type = "SHSW-1"
    num_outputs = 1
    num_meters = 0
    num_emeters = 0

    def __init__(self, model: EnergyModel, *, mac: str, username: str = "admin",
                 password: str | None = None, port: int = 0) -> None:
        super().__init__(model, port=port)
        self.mac = mac
        if password is not None:
            self.auth = BasicAuth(username, password, realm=f"{self.device_type}#{mac}")

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/shelly", self._shelly)]

    def device_info(self) -> JsonObject:
        return {
            "type": self.device_type, "mac": self.mac, "auth": self.auth is not None,
            "fw": FIRMWARE, "longid": 1, "num_outputs": self.num_outputs,
            "num_meters": self.num_meters, "num_emeters": self.num_emeters,
            "report_period": 60,
        }

    def common_status(self) -> JsonObject:
        now = time.time()
        return {
            "wifi_sta": {"connected": True, "ssid": "sim", "ip": "127.0.0.1", "rssi": -60},
            "time": time.strftime("%H:%M", time.localtime(now)), "unixtime": int(now),
            "has_update": False, "mac": self.mac,
        }

    async def _shelly(self, request: web.Request) -> web.Response:
        return web.json_response(self.device_info())
