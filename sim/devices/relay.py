"""An HTTP-switched consumer behind a Shelly Gen1 relay with a power meter (Shelly 1PM).

The relay switches an `ExtraLoad` in the model, so switching it on raises the house
load (and the grid meter's reading) at once. `GET /relay/0?turn=on|off|toggle`
switches and answers the relay object; `/status` has `relays[0].ison` and
`meters[0].power` (W) and `meters[0].total` (watt-minutes).
"""

from __future__ import annotations

import time

from aiohttp import web

from sim.devices.gen1 import Gen1Device
from sim.devices.server import JsonObject
from sim.model import EnergyModel, ExtraLoad

__all__ = ["ShellyRelayGen1"]


class ShellyRelayGen1(Gen1Device):
    """A simulated Shelly 1PM switching one consumer of the model."""

    device_type = "SHSW-PM"
    num_outputs = 1
    num_meters = 1
    num_emeters = 0

    def __init__(self, model: EnergyModel, *, load: ExtraLoad | None = None,
                 name: str = "relay", power_w: float = 2000.0, phases: tuple[int, ...] = (1,),
                 mac: str = "C45BBE0000A1", username: str = "admin",
                 password: str | None = None, port: int = 0) -> None:
        super().__init__(model, mac=mac, username=username, password=password, port=port)
        self.load = load if load is not None else model.add_load(name, power_w, phases=phases)
        self.source = "init"

    def routes(self) -> list[web.RouteDef]:
        return [*super().routes(), web.get("/status", self._status),
                web.get("/relay/0", self._relay)]

    def relay(self) -> JsonObject:
        return {"ison": self.load.on, "has_timer": False, "timer_started": 0,
                "timer_duration": 0, "timer_remaining": 0, "overpower": False,
                "source": self.source}

    def status(self) -> JsonObject:
        power = round(self.load.draw_w, 2)
        return {
            **self.common_status(),
            "relays": [self.relay()],
            "meters": [{"power": power, "overpower": 0.0, "is_valid": True,
                        "timestamp": int(time.time()), "counters": [power, power, power],
                        "total": round(self.load.energy_wh * 60)}],
            "inputs": [{"input": 0, "event": "", "event_cnt": 0}],
            "uptime": self.uptime_s,
        }

    def switch(self, on: bool) -> None:
        if on != self.load.on:
            self.load.on = on
            self.model.refresh()

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _relay(self, request: web.Request) -> web.Response:
        turn = request.query.get("turn")
        if turn is not None:
            if turn not in ("on", "off", "toggle"):
                return web.json_response({"error": f"bad turn value '{turn}'"}, status=400)
            self.source = "http"
            self.switch(not self.load.on if turn == "toggle" else turn == "on")
        return web.json_response(self.relay())
