"""com.victronenergy.settings of the simulation: ESS settings the model honours, AddSetting.

Writes to the ESS paths change `EnergyModel.settings` and recompute the model at
once, as a Multiplus regulating to a new grid setpoint would within a second:

| path | model | note |
| --- | --- | --- |
| /Settings/CGwacs/AcPowerSetPoint | `setpoint_w` | W, + = import from the grid |
| /Settings/CGwacs/MaxChargePower | `max_charge_w` | W, -1 = no limit |
| /Settings/CGwacs/MaxDischargePower | `max_discharge_w` | W, -1 = no limit |
| /Settings/CGwacs/BatteryLife/MinimumSocLimit | `min_soc` | % |

`AddSetting(group, name, default, type, min, max)` on `/` (interface
`com.victronenergy.Settings`) creates `/Settings/<group>/<name>` unless it exists,
and keeps the stored value if it does, as Venus OS's localsettings does. A
`ClassAndVrmInstance` default whose instance another device of the same class holds
already gets the next free instance, so two devices never share one.
"""

from __future__ import annotations

from flowengine.model import JsonValue
from nodes.dbus.presets import Writable
from sim.model import EnergyModel
from sim.venus.tree import SimService

__all__ = ["SETTINGS", "SETTINGS_INTERFACE", "settings_service"]

SETTINGS = "com.victronenergy.settings"
SETTINGS_INTERFACE = "com.victronenergy.Settings"
SETPOINT = "/Settings/CGwacs/AcPowerSetPoint"
MAX_CHARGE = "/Settings/CGwacs/MaxChargePower"
MAX_DISCHARGE = "/Settings/CGwacs/MaxDischargePower"
MIN_SOC = "/Settings/CGwacs/BatteryLife/MinimumSocLimit"
_INVALID_SETTING = 1


def _limit(value: float | None) -> float:
    return -1.0 if value is None else float(value)


def settings_service(model: EnergyModel, *, time_zone: str = "Europe/Vienna") -> SimService:
    """The settings service bound to `model` (not started)."""
    s = model.settings
    initial: dict[str, JsonValue] = {
        SETPOINT: float(s.setpoint_w),
        MAX_CHARGE: _limit(s.max_charge_w),
        MAX_DISCHARGE: _limit(s.max_discharge_w),
        MIN_SOC: float(s.min_soc),
        "/Settings/CGwacs/BatteryLife/State": 10,
        "/Settings/CGwacs/Hub4Mode": 1,
        "/Settings/CGwacs/MaxFeedInPower": -1.0,
        "/Settings/CGwacs/PreventFeedback": 0,
        "/Settings/SystemSetup/BatteryService": "default",
        "/Settings/System/TimeZone": time_zone,
        "/Settings/Relay/Function": 2,
    }
    writable = {
        SETPOINT: Writable("number", -100_000, 100_000),
        MAX_CHARGE: Writable("number", -1, 100_000),
        MAX_DISCHARGE: Writable("number", -1, 100_000),
        MIN_SOC: Writable("number", 0, 100),
        "/Settings/CGwacs/BatteryLife/State": Writable("integer", 0, 12),
        "/Settings/CGwacs/Hub4Mode": Writable("integer", 1, 3),
        "/Settings/CGwacs/MaxFeedInPower": Writable("number", -1, 100_000),
        "/Settings/CGwacs/PreventFeedback": Writable("integer", 0, 1),
        "/Settings/SystemSetup/BatteryService": Writable("text"),
        "/Settings/System/TimeZone": Writable("text"),
        "/Settings/Relay/Function": Writable("integer", 0, 6),
    }

    def on_write(path: str, value: JsonValue) -> int:
        if not isinstance(value, int | float):
            return 0
        number = float(value)
        if path == SETPOINT:
            s.setpoint_w = number
        elif path == MAX_CHARGE:
            s.max_charge_w = None if number < 0 else number
        elif path == MAX_DISCHARGE:
            s.max_discharge_w = None if number < 0 else number
        elif path == MIN_SOC:
            s.min_soc = number
        else:
            return 0
        model.refresh()
        return 0

    service = SimService(SETTINGS, units={SETPOINT: "W", MAX_CHARGE: "W", MAX_DISCHARGE: "W",
                                          MIN_SOC: "%"},
                         writable=writable, on_write=on_write)

    def add_setting(object_path: str, args: list[JsonValue]) -> int:
        if object_path != "/" or len(args) < 4:
            return _INVALID_SETTING
        group, name, default, kind = (str(args[0]), str(args[1]), args[2], str(args[3]))
        low, high = (args[4], args[5]) if len(args) >= 6 else (0, 0)
        path = "/Settings/" + "/".join(p for p in (group.strip("/"), name.strip("/")) if p)
        if path in service.values:
            return 0
        if kind == "s":
            rule = Writable("text")
            default = "" if default is None else str(default)
        else:
            lo = float(low) if isinstance(low, int | float) else 0.0
            hi = float(high) if isinstance(high, int | float) else 0.0
            ranged = (lo, hi) != (0.0, 0.0)
            rule = Writable("integer" if kind == "i" else "number",
                            lo if ranged else None, hi if ranged else None)
        if name == "ClassAndVrmInstance" and isinstance(default, str):
            default = _free_instance(service, default)
        service.writable[path] = rule
        service.update({path: default})
        return 0

    service.methods[(SETTINGS_INTERFACE, "AddSetting")] = add_setting
    service.update(initial)
    return service


def _free_instance(service: SimService, wanted: str) -> str:
    """`class:instance`, moved to the next free instance of that class when taken."""
    kind, _, number = wanted.partition(":")
    if not number.isdigit():
        return wanted
    taken = {str(v) for p, v in service.values.items() if p.endswith("/ClassAndVrmInstance")}
    instance = int(number)
    while f"{kind}:{instance}" in taken:
        instance += 1
    return f"{kind}:{instance}"
