"""Typed presets of `dbus.service`: the paths, units and writable ranges of each type.

A preset lists every path Venus OS documents for one service type (see
shared/reference/venus-dbus.md), with the unit its text is shown in and, for paths
a user may change from VRM or the GUI, what a write must look like. `generic`
knows only the mandatory paths and accepts any other.

A path ending in `/*` stands for every path below it (`/Alarms/*`).

A path's unit also says its D-Bus type. A continuous quantity (power, voltage, current,
energy, temperature, humidity, pressure, frequency, charge, a percentage such as /Soc:
the units in `DOUBLE_UNITS`) is always published as a Double (`d`), as Victron's drivers
publish them, whatever number the flow gives: `22` from an MQTT payload goes out as
22.0, not as an Int32. Counters, enums, instances and codes have no unit (or `s`) and
keep the type of their value: an int is an Int32 (`i`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from flowengine.model import JsonValue

__all__ = ["DOUBLE_UNITS", "PRESETS", "PathSpec", "Preset", "Writable"]

Kind = Literal["number", "integer", "text", "any"]

DOUBLE_UNITS = frozenset({"W", "V", "A", "VA", "%", "kWh", "Wh", "Ah", "°C", "Hz", "hPa"})
"""Units of continuous quantities: a number of a path with one is always a Double."""


@dataclass(frozen=True, slots=True)
class Writable:
    """A path users may set: the value's kind and its allowed range."""

    kind: Kind = "number"
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: JsonValue) -> tuple[int, JsonValue]:
        """(0, the value to store) when acceptable, else (1 wrong type | 2 out of range, None)."""
        if self.kind == "text":
            return (0, value) if isinstance(value, str) else (1, None)
        if self.kind == "any":
            return 0, value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return 1, None
        if self.kind == "integer":
            if value != int(value):
                return 1, None
            value = int(value)
        if (self.minimum is not None and value < self.minimum) or \
                (self.maximum is not None and value > self.maximum):
            return 2, None
        return 0, value


@dataclass(frozen=True, slots=True)
class PathSpec:
    unit: str = ""
    writable: Writable | None = None

    @property
    def double(self) -> bool:
        """True for a continuous quantity: its numbers are published as Double."""
        return self.unit in DOUBLE_UNITS


@dataclass(frozen=True)
class Preset:
    name: str
    service_type: str
    product_name: str
    paths: Mapping[str, PathSpec]
    defaults: Mapping[str, JsonValue] = field(default_factory=dict)
    open: bool = False  # generic: any path is allowed

    def spec(self, path: str) -> PathSpec | None:
        """The spec of `path`, also through a `/*` entry; None when the preset lacks it."""
        found = self.paths.get(path)
        if found is not None:
            return found
        parent = path
        while "/" in parent[1:]:
            parent = parent.rsplit("/", 1)[0]
            wild = self.paths.get(parent + "/*")
            if wild is not None:
                return wild
        return PathSpec() if self.open else None

    def knows(self, path: str) -> bool:
        return self.spec(path) is not None

    @property
    def listed(self) -> list[str]:
        return sorted(self.paths)


def _phases(template: str, unit: str) -> dict[str, PathSpec]:
    return {template.format(n): PathSpec(unit) for n in (1, 2, 3)}


def _table(*parts: Mapping[str, PathSpec] | Iterable[tuple[str, str]]) -> dict[str, PathSpec]:
    out: dict[str, PathSpec] = {}
    for part in parts:
        if isinstance(part, Mapping):
            out.update(part)
        else:
            out.update((path, PathSpec(unit)) for path, unit in part)
    return out


MANDATORY: dict[str, PathSpec] = _table(
    [("/Mgmt/ProcessName", ""), ("/Mgmt/ProcessVersion", ""), ("/Mgmt/Connection", ""),
     ("/DeviceInstance", ""), ("/ProductId", ""), ("/ProductName", ""),
     ("/FirmwareVersion", ""), ("/HardwareVersion", ""), ("/Connected", ""), ("/Serial", ""),
     ("/Latency", "")],
    {"/CustomName": PathSpec("", Writable("text"))},
)

_AC_PHASES = _table(_phases("/Ac/L{}/Power", "W"), _phases("/Ac/L{}/Voltage", "V"),
                    _phases("/Ac/L{}/Current", "A"))

BATTERY = Preset("battery", "battery", "es-ESS battery", _table(MANDATORY, [
    ("/Soc", "%"), ("/Dc/0/Voltage", "V"), ("/Dc/0/Current", "A"), ("/Dc/0/Power", "W"),
    ("/Dc/0/Temperature", "°C"), ("/ConsumedAmphours", "Ah"), ("/TimeToGo", "s"),
    ("/Capacity", "Ah"), ("/InstalledCapacity", "Ah"), ("/Info/MaxChargeCurrent", "A"),
    ("/Info/MaxDischargeCurrent", "A"), ("/Info/MaxChargeVoltage", "V"),
    ("/Info/BatteryLowVoltage", "V"), ("/Alarms/*", "")]))

GRID = Preset("grid", "grid", "es-ESS grid meter", _table(
    MANDATORY, _AC_PHASES, _phases("/Ac/L{}/Energy/Forward", "kWh"),
    _phases("/Ac/L{}/Energy/Reverse", "kWh"),
    [("/Ac/Power", "W"), ("/Ac/Energy/Forward", "kWh"), ("/Ac/Energy/Reverse", "kWh"),
     ("/Ac/Frequency", "Hz"), ("/DeviceType", ""), ("/Role", ""), ("/Position", "")]),
    defaults={"/Role": "grid", "/Position": 0})

PVINVERTER = Preset("pvinverter", "pvinverter", "es-ESS PV inverter", _table(
    MANDATORY, _AC_PHASES, _phases("/Ac/L{}/Energy/Forward", "kWh"),
    [("/Ac/Power", "W"), ("/Ac/Energy/Forward", "kWh"), ("/Ac/MaxPower", "W"),
     ("/Position", ""), ("/StatusCode", ""), ("/ErrorCode", "")]),
    defaults={"/Position": 0, "/StatusCode": 7, "/ErrorCode": 0})

TEMPERATURE = Preset("temperature", "temperature", "es-ESS temperature sensor", _table(
    MANDATORY, [("/Temperature", "°C"), ("/TemperatureType", ""), ("/Humidity", "%"),
                ("/Pressure", "hPa"), ("/Status", "")]),
    defaults={"/TemperatureType": 2, "/Status": 0})

EVCHARGER = Preset("evcharger", "evcharger", "es-ESS EV charger", _table(
    MANDATORY, _AC_PHASES,
    {"/Mode": PathSpec("", Writable("integer", 0, 2)),
     "/StartStop": PathSpec("", Writable("integer", 0, 1)),
     "/SetCurrent": PathSpec("A", Writable("number", 0, 80)),
     "/AutoStart": PathSpec("", Writable("integer", 0, 1))},
    [("/MaxCurrent", "A"), ("/Current", "A"), ("/Ac/Power", "W"),
     ("/Ac/Energy/Forward", "kWh"), ("/ChargingTime", "s"), ("/Session/Energy", "kWh"),
     ("/Session/Time", "s"), ("/Position", ""), ("/Status", ""), ("/Model", ""),
     ("/EnableDisplay", "")]),
    defaults={"/Position": 0, "/Status": 0})

GENERIC = Preset("generic", "", "es-ESS service", MANDATORY, open=True)

PRESETS: dict[str, Preset] = {p.name: p for p in
                              (BATTERY, GRID, PVINVERTER, TEMPERATURE, EVCHARGER, GENERIC)}
