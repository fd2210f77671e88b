"""Shelly Pro 3EM (Gen2, RPC) as the grid meter, with readings from the model's grid.

`EM.GetStatus?id=0` gives per phase (`a_`, `b_`, `c_` = L1, L2, L3) current, voltage,
active and apparent power, power factor and frequency, and the totals;
`EMData.GetStatus?id=0` gives the model's per-phase gross grid counters in Wh.
"""

from __future__ import annotations

from sim.devices.gen2 import Gen2Device, Method, component_id
from sim.devices.server import JsonObject
from sim.model import EnergyModel

__all__ = ["ShellyPro3EM"]

_PHASES = ("a", "b", "c")


class ShellyPro3EM(Gen2Device):
    """A simulated Shelly Pro 3EM (triphase profile) measuring the grid connection."""

    gen = 2
    app = "Pro3EM"
    model_code = "SPEM-003CEBEU"

    def __init__(self, model: EnergyModel, *, device_id: str = "shellypro3em-a0a3b3000001",
                 mac: str = "A0A3B3000001", password: str | None = None, port: int = 0) -> None:
        super().__init__(model, device_id=device_id, mac=mac, password=password, port=port)

    def methods(self) -> dict[str, Method]:
        return {**super().methods(),
                "EM.GetStatus": lambda params: self.em_status(component_id(params)),
                "EMData.GetStatus": lambda params: self.emdata_status(component_id(params))}

    def device_info(self) -> JsonObject:
        return {**super().device_info(), "profile": "triphase"}

    def em_status(self, component: int = 0) -> JsonObject:
        snap = self.model.snapshot
        reply: JsonObject = {"id": component}
        currents, apparents = [], []
        for index, phase in enumerate(_PHASES):
            current = round(snap.grid_current_l[index], 3)
            voltage = round(snap.voltage_l[index], 1)
            apparent = round(snap.voltage_l[index] * snap.grid_current_l[index], 1)
            currents.append(current)
            apparents.append(apparent)
            reply |= {
                f"{phase}_current": current, f"{phase}_voltage": voltage,
                f"{phase}_act_power": round(snap.grid_l[index], 1),
                f"{phase}_aprt_power": apparent, f"{phase}_pf": round(snap.grid_pf_l[index], 2),
                f"{phase}_freq": round(snap.frequency_hz, 1),
            }
        reply |= {
            "n_current": None, "total_current": round(sum(currents), 3),
            "total_act_power": round(sum(reply[f"{p}_act_power"] for p in _PHASES), 3),
            "total_aprt_power": round(sum(apparents), 3), "user_calibrated_phase": [],
        }
        return reply

    def emdata_status(self, component: int = 0) -> JsonObject:
        snap = self.model.snapshot
        reply: JsonObject = {"id": component}
        for index, phase in enumerate(_PHASES):
            reply[f"{phase}_total_act_energy"] = round(snap.grid_import_l_kwh[index] * 1000, 2)
            reply[f"{phase}_total_act_ret_energy"] = round(snap.grid_export_l_kwh[index] * 1000, 2)
        reply["total_act"] = round(snap.grid_import_kwh * 1000, 2)
        reply["total_act_ret"] = round(snap.grid_export_kwh * 1000, 2)
        return reply

    def status(self) -> JsonObject:
        return {**super().status(), "em:0": self.em_status(), "emdata:0": self.emdata_status(),
                "temperature:0": {"id": 0, "tC": 38.5, "tF": 101.3}}
