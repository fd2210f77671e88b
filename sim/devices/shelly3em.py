"""Shelly 3EM (Gen1) as the grid meter: `/status` and `/emeter/<n>` from the model's grid.

Phases A, B, C are the model's L1, L2, L3; power is + for import, - for export;
`total` and `total_returned` are the model's per-phase (gross) grid counters in Wh.
"""

from __future__ import annotations

from aiohttp import web

from sim.devices.gen1 import Gen1Device
from sim.devices.server import JsonObject
from sim.model import EnergyModel

__all__ = ["Shelly3EMGen1"]


class Shelly3EMGen1(Gen1Device):
    """A simulated Shelly 3EM measuring the grid connection."""

    device_type = "SHEM-3"
    num_outputs = 1
    num_meters = 0
    num_emeters = 3

    def __init__(self, model: EnergyModel, *, mac: str = "C45BBE000001",
                 username: str = "admin", password: str | None = None, port: int = 0) -> None:
        super().__init__(model, mac=mac, username=username, password=password, port=port)
        self.contactor_on = False

    def routes(self) -> list[web.RouteDef]:
        return [*super().routes(), web.get("/status", self._status),
                web.get("/emeter/{index}", self._emeter)]

    def emeter(self, index: int) -> JsonObject:
        snap = self.model.snapshot
        return {
            "power": round(snap.grid_l[index], 2),
            "pf": round(snap.grid_pf_l[index], 2),
            "current": round(snap.grid_current_l[index], 2),
            "voltage": round(snap.voltage_l[index], 1),
            "is_valid": True,
            "total": round(snap.grid_import_l_kwh[index] * 1000, 1),
            "total_returned": round(snap.grid_export_l_kwh[index] * 1000, 1),
        }

    def status(self) -> JsonObject:
        emeters = [self.emeter(index) for index in range(3)]
        return {
            **self.common_status(),
            "relays": [{"ison": self.contactor_on, "has_timer": False, "overpower": False,
                        "is_valid": True, "source": "input"}],
            "emeters": emeters,
            "total_power": round(sum(e["power"] for e in emeters), 2),
            "fs_mounted": True,
            "update": {"status": "idle", "has_update": False},
            "uptime": self.uptime_s,
        }

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _emeter(self, request: web.Request) -> web.Response:
        index = request.match_info["index"]
        if index not in ("0", "1", "2"):
            return web.json_response({"error": f"no emeter {index}"}, status=404)
        return web.json_response(self.emeter(int(index)))
