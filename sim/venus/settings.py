"""com.victronenergy.settings of the simulation: localsettings' contract, ESS settings.

Writes to the ESS paths change `EnergyModel.settings` and recompute the model (the
Multiplus then reaches a new grid setpoint with its ramp, over the next steps):

| path | model | note |
| --- | --- | --- |
| /Settings/CGwacs/AcPowerSetPoint | `setpoint_w` | W, + = import from the grid |
| /Settings/CGwacs/MaxChargePower | `max_charge_w` | W, -1 = no limit |
| /Settings/CGwacs/MaxDischargePower | `max_discharge_w` | W, -1 = no limit |
| /Settings/CGwacs/BatteryLife/MinimumSocLimit | `min_soc` | % |
| /Settings/CGwacs/OvervoltageFeedIn | `dc_feed_in` | 0/1, DC-coupled PV feed-in; the site: 1 |
| /Settings/CGwacs/MaxFeedInPower | `max_feed_in_w` | W, -1 = no limit |
| /Settings/CGwacs/PreventFeedback | `prevent_feedback` | 0/1, 1 = no export at all |

The value at the start is the model's (the simulated site's own choices); `Setting.default`
keeps Venus OS's default for the ESS settings (setpoint 50 W, feed-in settings off or -1).

Everything else follows Venus OS's localsettings (victronenergy/localsettings,
localsettings.py), so a client that works here works on a GX:

- `AddSetting(group, name, default, type, min, max)` and `AddSilentSetting`
  (interface `com.victronenergy.Settings`) are answered on `/` and on every group
  object (`/Settings`, `/Settings/Devices`, ...); the setting is `<object>/<group>/<name>`.
  On `/` a path outside `/Settings/` is refused with -9. Other codes: -2 a part
  starting with `_`, -3 a type other than `i`, `f`, `s`, -5 the setting exists with
  another type, -6 a default that does not convert, -7 a default outside min..max
  (0, 0 means no limits), -8 the path is a group. An existing setting keeps its value.
  A setting's path has no AddSetting (UnknownMethod), a path that is neither
  group nor setting no object (UnknownObject).
- `SetValue` converts to the setting's type (`int("7")`, `float(3)`, `str(5)`) and
  answers 0, or -1 when it does not convert or is out of range.
- `/Settings/Devices/<unique>/ClassAndVrmInstance` (`class:instance`) never holds an
  instance another device of that class holds: AddSetting and SetValue move it to the
  next free one. A default that does not parse is refused (-6), a write -1.
- GetText is `str(value)` (`1500.0`, no unit). Every change is signalled as
  PropertiesChanged on the setting's own path, never as ItemsChanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowengine.model import JsonValue
from nodes.dbus.bus import BusCallError
from sim.model import EnergyModel
from sim.venus.tree import SimService

__all__ = ["SETTINGS", "SETTINGS_INTERFACE", "SimSettings", "settings_service"]

SETTINGS = "com.victronenergy.settings"
SETTINGS_INTERFACE = "com.victronenergy.Settings"
SETPOINT = "/Settings/CGwacs/AcPowerSetPoint"
MAX_CHARGE = "/Settings/CGwacs/MaxChargePower"
MAX_DISCHARGE = "/Settings/CGwacs/MaxDischargePower"
MIN_SOC = "/Settings/CGwacs/BatteryLife/MinimumSocLimit"
DC_FEED_IN = "/Settings/CGwacs/OvervoltageFeedIn"
MAX_FEED_IN = "/Settings/CGwacs/MaxFeedInPower"
PREVENT_FEEDBACK = "/Settings/CGwacs/PreventFeedback"
DEVICES = "/Settings/Devices"
REFUSED = -1
UNDERSCORE_PREFIX, UNKNOWN_TYPE, TYPE_DIFFERS = -2, -3, -5
INVALID_DEFAULT, DEFAULT_OUT_OF_RANGE, IS_GROUP, NOT_IN_SETTINGS = -6, -7, -8, -9
_TYPES = ("i", "f", "s")


@dataclass
class Setting:
    """One setting's type and limits (None: no limit; strings have none)."""

    kind: str
    default: JsonValue
    low: float | None = None
    high: float | None = None


def convert(kind: str, value: JsonValue) -> JsonValue:
    """`value` as localsettings stores a setting of `kind`; None when it does not convert."""
    if value is None or isinstance(value, list | dict):
        return None
    try:
        return int(value) if kind == "i" else float(value) if kind == "f" else str(value)
    except (TypeError, ValueError, OverflowError):
        return None


def class_and_instance(value: JsonValue) -> tuple[str, int] | None:
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 2:
        return None
    try:
        return parts[0], int(parts[1])
    except ValueError:
        return None


class SimSettings(SimService):
    """localsettings on the simulated bus; see the module docstring."""

    def __init__(self, model: EnergyModel, *, time_zone: str = "Europe/Vienna") -> None:
        super().__init__(SETTINGS)
        self.model = model
        self.settings: dict[str, Setting] = {}
        self.methods[(SETTINGS_INTERFACE, "AddSetting")] = self.add_setting
        self.methods[(SETTINGS_INTERFACE, "AddSilentSetting")] = self.add_setting
        s = model.settings
        for path, value, default, kind, low, high in (
                (SETPOINT, float(s.setpoint_w), 50.0, "f", -100_000, 100_000),
                (MAX_CHARGE, _limit(s.max_charge_w), -1.0, "f", -1, 100_000),
                (MAX_DISCHARGE, _limit(s.max_discharge_w), -1.0, "f", -1, 100_000),
                (MIN_SOC, float(s.min_soc), 10.0, "f", 0, 100),
                (DC_FEED_IN, int(s.dc_feed_in), 0, "i", 0, 1),
                (MAX_FEED_IN, _limit(s.max_feed_in_w), -1.0, "f", -1, 100_000),
                (PREVENT_FEEDBACK, int(s.prevent_feedback), 0, "i", 0, 1),
                ("/Settings/CGwacs/BatteryLife/State", 10, 10, "i", 0, 12),
                ("/Settings/CGwacs/Hub4Mode", 1, 1, "i", 1, 3),
                ("/Settings/SystemSetup/BatteryService", "default", "default", "s", None, None),
                ("/Settings/System/TimeZone", time_zone, time_zone, "s", None, None),
                ("/Settings/Relay/Function", 2, 2, "i", 0, 6)):
            self.settings[path] = Setting(kind, default, low, high)
            self.update({path: value})

    # -- AddSetting ---------------------------------------------------------------------------
    def add_setting(self, object_path: str, args: list[JsonValue]) -> int:
        if object_path in self.settings:
            raise BusCallError("org.freedesktop.DBus.Error.UnknownMethod",
                               f"{object_path} is a setting, not a group")
        if not self.is_group(object_path):
            raise BusCallError("org.freedesktop.DBus.Error.UnknownObject",
                               f"no object {object_path}")
        group, name, default, kind, low, high = (*args, 0, 0)[:6]
        group, name = str(group), str(name)
        group = group if group.startswith("/") or not group else "/" + group
        relative = group + (name if name.startswith("/") else "/" + name)
        path = ("" if object_path == "/" else object_path) + relative
        if "//" in path or path.endswith("/"):  # dbus-python: no such object path
            raise BusCallError("org.freedesktop.DBus.Python.ValueError",
                               f"invalid object path {path}")
        if "/_" in relative:
            return UNDERSCORE_PREFIX
        kind = str(kind)
        if kind not in _TYPES:
            return UNKNOWN_TYPE
        value = convert(kind, default)
        if value is None:
            return INVALID_DEFAULT
        lo, hi = convert(kind, low), convert(kind, high)
        if kind == "s" or (lo == 0 and hi == 0):
            lo = hi = None
        if (isinstance(lo, int | float) and value < lo) or \
                (isinstance(hi, int | float) and value > hi):
            return DEFAULT_OUT_OF_RANGE
        if object_path == "/" and not relative.startswith("/Settings/"):
            return NOT_IN_SETTINGS
        setting = Setting(kind, value, lo if isinstance(lo, int | float) else None,
                          hi if isinstance(hi, int | float) else None)
        old = self.settings.get(path)
        if old is not None:
            if old.kind != kind:
                return TYPE_DIFFERS
            if self._is_instance(path) and class_and_instance(value) is None:
                return INVALID_DEFAULT
            self.settings[path] = setting  # new default and limits; the value stays
            return 0
        if self.is_group(path):
            return IS_GROUP
        if self._is_instance(path):
            parsed = class_and_instance(value)
            if parsed is None:
                return INVALID_DEFAULT
            value = self._free_instance(path, *parsed)
        self.settings[path] = setting
        self.update({path: value})
        return 0

    def is_group(self, path: str) -> bool:
        if path in ("/", "/Settings", DEVICES):
            return True
        prefix = path.rstrip("/") + "/"
        return any(p.startswith(prefix) for p in self.settings)

    @staticmethod
    def _is_instance(path: str) -> bool:
        head, _, tail = path.rpartition("/")
        return tail == "ClassAndVrmInstance" and head.rpartition("/")[0] == DEVICES

    def _free_instance(self, path: str, kind: str, instance: int) -> str:
        """`kind:instance`, moved to the next instance no other device of `kind` holds."""
        taken = {v for p, v in self.values.items()
                 if p != path and p.startswith(DEVICES + "/") and self._is_instance(p)}
        while f"{kind}:{instance}" in taken:
            instance += 1
        return f"{kind}:{instance}"

    # -- SetValue -----------------------------------------------------------------------------
    def set_value(self, path: str, value: JsonValue) -> int:
        setting = self.settings.get(path)
        if setting is None:
            return REFUSED
        converted = convert(setting.kind, value)
        if converted is None:
            return REFUSED
        if isinstance(converted, int | float) and (
                (setting.low is not None and converted < setting.low) or
                (setting.high is not None and converted > setting.high)):
            return REFUSED
        if converted == self.values.get(path):
            return 0
        if self._is_instance(path):
            parsed = class_and_instance(converted)
            if parsed is None:
                return REFUSED
            converted = self._free_instance(path, *parsed)
        self._apply(path, converted)
        self.writes.append((path, converted))
        self.update({path: converted})
        return 0

    def _apply(self, path: str, value: JsonValue) -> None:
        """The model follows its ESS settings."""
        if not isinstance(value, int | float):
            return
        s, number = self.model.settings, float(value)
        if path == SETPOINT:
            s.setpoint_w = number
        elif path == MAX_CHARGE:
            s.max_charge_w = None if number < 0 else number
        elif path == MAX_DISCHARGE:
            s.max_discharge_w = None if number < 0 else number
        elif path == MIN_SOC:
            s.min_soc = number
        elif path == DC_FEED_IN:
            s.dc_feed_in = bool(number)
        elif path == MAX_FEED_IN:
            s.max_feed_in_w = None if number < 0 else number
        elif path == PREVENT_FEEDBACK:
            s.prevent_feedback = bool(number)
        else:
            return
        self.model.refresh()

    # -- texts and signals --------------------------------------------------------------------
    def store(self, path: str, value: JsonValue, unit: str) -> bool:
        changed = super().store(path, value, unit)
        if changed:
            self._texts[path] = str(value)  # localsettings' GetText: no unit, no rounding
        return changed

    def _flush(self) -> None:
        """localsettings signals each setting on its own path, never ItemsChanged."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        bus = self._bus
        for path in pending if bus is not None else ():
            item = self.item(path)
            if item is not None:
                bus.emit_properties_changed(path, *item)  # type: ignore[union-attr]


def _limit(value: float | None) -> float:
    return -1.0 if value is None else float(value)


def settings_service(model: EnergyModel, *, time_zone: str = "Europe/Vienna") -> SimSettings:
    """The settings service bound to `model` (not started)."""
    return SimSettings(model, time_zone=time_zone)
