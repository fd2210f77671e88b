"""What each simulated Venus OS service shows, computed from one model `Snapshot`.

Names, paths and units follow Victron's own services (shared reference
venus-dbus.md): systemcalc's `com.victronenergy.system`, a battery monitor, a
Multiplus on VE.Bus and hub4control. Signs as on Venus OS: grid + = import,
battery + = charging. Powers are rounded to 0.1 W, voltages to 0.01 V.

The house load sits on the Multiplus's AC output; AC PV sits where
`ModelParams.pv_ac_position` says. Where systemcalc has nothing to sum it leaves a
path invalid (None), not 0: the PV positions without a PV inverter (`/Ac/PvOnGenset`
etc. and their `/NumberOfPhases`), `/Dc/Pv/Power` without an MPPT, and, with the grid
lost (the Multiplus's `/Ac/ActiveIn/ActiveInput` 240), `/Ac/ActiveIn/NumberOfPhases` and
`/Ac/Grid/*` (there is no grid meter; `/Ac/ActiveIn/Source` is 240).
"""

from __future__ import annotations

from collections.abc import Mapping

from flowengine.model import JsonValue
from sim.model import EnergyModel, Snapshot

__all__ = [
    "BATTERY_UNITS", "SOLARCHARGER_UNITS", "SYSTEM_UNITS", "VEBUS_UNITS", "battery_values",
    "hub4_values", "mandatory", "solarcharger_values", "system_values", "vebus_values",
]

PHASES = (1, 2, 3)
PV_POSITIONS = {"PvOnGrid": "grid", "PvOnOutput": "output", "PvOnGenset": "genset"}
BATTERY_INSTANCE = 512
VEBUS_INSTANCE = 276
SOLARCHARGER_INSTANCE = 278
PROCESS_VERSION = "sim"


def _w(value: float) -> float:
    return round(value, 1)


def mandatory(*, process: str, instance: int, product_id: int, product_name: str,
              connection: str) -> dict[str, JsonValue]:
    return {
        "/Mgmt/ProcessName": process, "/Mgmt/ProcessVersion": PROCESS_VERSION,
        "/Mgmt/Connection": connection, "/DeviceInstance": instance,
        "/ProductId": product_id, "/ProductName": product_name,
        "/FirmwareVersion": "sim", "/HardwareVersion": "sim", "/Connected": 1,
        "/CustomName": "", "/Serial": "HQ0000SIM",
    }


def _phase_units(template: str, unit: str) -> dict[str, str]:
    return {template.format(n): unit for n in PHASES}


# -- com.victronenergy.system ------------------------------------------------------------

SYSTEM_UNITS: dict[str, str] = {
    "/Dc/Battery/Soc": "%", "/Dc/Battery/Power": "W", "/Dc/Battery/Current": "A",
    "/Dc/Battery/Voltage": "V", "/Dc/Battery/TimeToGo": "s",
    "/Control/ActiveSocLimit": "%", "/Dc/Pv/Power": "W", "/Dc/System/Power": "W",
    **_phase_units("/Ac/Consumption/L{}/Power", "W"),
    **_phase_units("/Ac/ConsumptionOnOutput/L{}/Power", "W"),
    **_phase_units("/Ac/ConsumptionOnInput/L{}/Power", "W"),
    **_phase_units("/Ac/Grid/L{}/Power", "W"),
    **_phase_units("/Ac/PvOnGrid/L{}/Power", "W"),
    **_phase_units("/Ac/PvOnOutput/L{}/Power", "W"),
    **_phase_units("/Ac/PvOnGenset/L{}/Power", "W"),
    "/Dc/Vebus/Power": "W",
}


def system_values(s: Snapshot, relays: Mapping[int, int], *,
                  battery_service: str) -> dict[str, JsonValue]:
    """systemcalc's view: battery from the battery monitor, AC from the meters."""
    out: dict[str, JsonValue] = {
        "/Dc/Battery/Soc": round(s.soc, 1),
        "/Dc/Battery/Power": _w(s.battery_w),
        "/Dc/Battery/Current": round(s.battery_a, 2),
        "/Dc/Battery/Voltage": round(s.battery_v, 2),
        "/Dc/Battery/TimeToGo": None,
        "/Dc/Battery/State": 1 if s.battery_w > 1 else 2 if s.battery_w < -1 else 0,
        "/Control/ActiveSocLimit": round(s.min_soc, 1),
        "/Dc/Pv/Power": _w(s.pv_dc_w) if s.has_mppt else None,
        "/Dc/Vebus/Power": _w(s.inverter_w),
        "/Dc/System/Power": 0.0,
        "/Ac/ActiveIn/NumberOfPhases": 3 if s.grid_connected else None,
        "/Ac/ActiveIn/Source": 1 if s.grid_connected else 240,
        "/Ac/Consumption/NumberOfPhases": 3,
        "/ActiveBatteryService": battery_service,
        "/Hub": 4,
        "/SystemType": "ESS",
    }
    pv = {key: s.pv_on(position) if s.has_pv_on(position) else None
          for key, position in PV_POSITIONS.items()}
    # without a grid meter systemcalc takes the grid from the Multiplus's active input
    # (less PV on the grid side); with the input open there is none
    grid: tuple[float, ...] | None = s.grid_l
    if not s.grid_connected:
        on_grid = pv["PvOnGrid"]
        grid = None if on_grid is None else tuple(0.0 - w for w in on_grid)
    for i, n in enumerate(PHASES):
        out[f"/Ac/Consumption/L{n}/Power"] = _w(s.load_l[i])
        out[f"/Ac/ConsumptionOnOutput/L{n}/Power"] = _w(s.load_l[i])
        out[f"/Ac/ConsumptionOnInput/L{n}/Power"] = 0.0
        out[f"/Ac/Grid/L{n}/Power"] = None if grid is None else _w(grid[i])
        for key, phases in pv.items():
            out[f"/Ac/{key}/L{n}/Power"] = None if phases is None else _w(phases[i])
    out["/Ac/Grid/NumberOfPhases"] = None if grid is None else 3
    for key, phases in pv.items():
        out[f"/Ac/{key}/NumberOfPhases"] = None if phases is None else 3
    for number, state in relays.items():
        out[f"/Relay/{number}/State"] = state
    return out


# -- com.victronenergy.battery.* ---------------------------------------------------------

BATTERY_UNITS: dict[str, str] = {
    "/Soc": "%", "/Dc/0/Voltage": "V", "/Dc/0/Current": "A", "/Dc/0/Power": "W",
    "/Dc/0/Temperature": "°C", "/ConsumedAmphours": "Ah", "/TimeToGo": "s",
    "/Capacity": "Ah", "/InstalledCapacity": "Ah", "/Info/MaxChargeCurrent": "A",
    "/Info/MaxDischargeCurrent": "A", "/Info/MaxChargeVoltage": "V",
    "/Info/BatteryLowVoltage": "V",
}


def battery_values(model: EnergyModel, s: Snapshot) -> dict[str, JsonValue]:
    """A BMS that gives no time to go (the reason es-ESS computes one)."""
    p = model.params
    nominal_v = (p.battery_empty_v + p.battery_full_v) / 2.0
    capacity_ah = p.capacity_wh / nominal_v
    return {
        "/Soc": round(s.soc, 1),
        "/Dc/0/Voltage": round(s.battery_v, 2),
        "/Dc/0/Current": round(s.battery_a, 2),
        "/Dc/0/Power": _w(s.battery_w),
        "/Dc/0/Temperature": 21.0,
        "/ConsumedAmphours": round(-(100.0 - s.soc) / 100.0 * capacity_ah, 1),
        "/TimeToGo": None,
        "/Capacity": round(s.soc / 100.0 * capacity_ah, 1),
        "/InstalledCapacity": round(capacity_ah, 1),
        "/Info/MaxChargeCurrent": round(p.battery_max_charge_w / nominal_v, 1),
        "/Info/MaxDischargeCurrent": round(p.battery_max_discharge_w / nominal_v, 1),
        "/Info/MaxChargeVoltage": p.battery_full_v + 0.8,
        "/Info/BatteryLowVoltage": p.battery_empty_v - 2.0,
        "/Alarms/LowVoltage": 0, "/Alarms/HighVoltage": 0, "/Alarms/LowSoc": 0,
    }


# -- com.victronenergy.vebus.* -----------------------------------------------------------

VEBUS_UNITS: dict[str, str] = {
    **_phase_units("/Ac/ActiveIn/L{}/P", "W"), **_phase_units("/Ac/Out/L{}/P", "W"),
    **_phase_units("/Ac/ActiveIn/L{}/V", "V"), **_phase_units("/Ac/Out/L{}/V", "V"),
    **_phase_units("/Ac/ActiveIn/L{}/F", "Hz"),
    "/Ac/ActiveIn/P": "W", "/Ac/Out/P": "W", "/Dc/0/Voltage": "V", "/Dc/0/Current": "A",
    "/Dc/0/Power": "W", "/Soc": "%", "/Hub4/L1/AcPowerSetpoint": "W",
}


def vebus_values(s: Snapshot) -> dict[str, JsonValue]:
    """The Multiplus: AC-in = what it takes from its input, AC-out = the house."""
    pv_in, pv_out = s.pv_on("grid"), s.pv_on("output")
    out: dict[str, JsonValue] = {
        "/Ac/NumberOfPhases": 3,
        "/Ac/ActiveIn/ActiveInput": 0 if s.grid_connected else 240,  # 240: none (island)
        "/Ac/ActiveIn/Connected": int(s.grid_connected),
        "/Dc/0/Voltage": round(s.battery_v, 2),
        "/Dc/0/Current": round(s.inverter_w / s.battery_v, 2) if s.battery_v else None,
        "/Dc/0/Power": _w(s.inverter_w),
        "/Soc": round(s.soc, 1),
        "/State": 3 if s.inverter_w > 1 else 9 if s.inverter_w < -1 else 1,
        "/Mode": 3,
    }
    total_in = total_out = 0.0
    for i, n in enumerate(PHASES):
        into = s.grid_l[i] + pv_in[i]
        house = s.load_l[i] - pv_out[i]
        total_in += into
        total_out += house
        out[f"/Ac/ActiveIn/L{n}/P"] = _w(into)
        out[f"/Ac/Out/L{n}/P"] = _w(house)
        out[f"/Ac/ActiveIn/L{n}/V"] = round(s.voltage_l[i], 2) if s.grid_connected else None
        out[f"/Ac/Out/L{n}/V"] = round(s.voltage_l[i], 2)
        out[f"/Ac/ActiveIn/L{n}/F"] = round(s.frequency_hz, 2) if s.grid_connected else None
    out["/Ac/ActiveIn/P"] = _w(total_in)
    out["/Ac/Out/P"] = _w(total_out)
    return out


# -- com.victronenergy.solarcharger.* --------------------------------------------------

SOLARCHARGER_UNITS: dict[str, str] = {
    "/Yield/Power": "W", "/Yield/User": "kWh", "/Yield/System": "kWh", "/Dc/0/Voltage": "V",
    "/Dc/0/Current": "A", "/Pv/V": "V", "/Pv/I": "A",
}


def solarcharger_values(s: Snapshot) -> dict[str, JsonValue]:
    """The MPPTs as one charger: what systemcalc sums into /Dc/Pv/Power (V x I on its
    battery side). /MppOperationMode 2 tracks the maximum power point, 1 is held back
    (the site may not export it), 0 off; /State 3 bulk while it yields, 0 off."""
    producing = s.pv_dc_w > 0.05
    limited = s.pv_dc_limited_w > 0.05
    pv_v = 120.0 if producing or limited else 0.0  # a string of panels near its MPP
    return {
        "/Yield/Power": _w(s.pv_dc_w),
        "/Yield/User": round(s.pv_dc_kwh, 3),
        "/Yield/System": round(s.pv_dc_kwh, 3),
        "/Dc/0/Voltage": round(s.battery_v, 2),
        "/Dc/0/Current": round(s.pv_dc_w / s.battery_v, 2) if s.battery_v else None,
        "/Pv/V": pv_v,
        "/Pv/I": round(s.pv_dc_w / pv_v, 2) if pv_v else 0.0,
        "/State": 3 if producing else 0,
        "/Mode": 1,
        "/MppOperationMode": 1 if limited else 2 if producing else 0,
        "/ErrorCode": 0,
    }


# -- com.victronenergy.hub4 --------------------------------------------------------------

def hub4_values(s: Snapshot) -> dict[str, JsonValue]:
    """hub4control: whether ESS holds the battery back."""
    return {
        "/PvPowerLimiterActive": int(s.pv_limited_w > 0.05),
        "/Overrides/FeedInExcess": 0,
        "/Overrides/ForceCharge": 0,
        "/Overrides/Setpoint": None,
        "/MaxChargePower": None,
        "/State": 1 if s.soc > s.min_soc else 3,
    }
