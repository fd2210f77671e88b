"""The item table of a published Venus OS service: what `dbus.service` and the
simulated Venus OS answer D-Bus calls from.

It keeps each path's value and its text, and the paths changed since the last signal.
A number stored with the unit of a continuous quantity (`presets.DOUBLE_UNITS`: W, V,
A, kWh, °C, ...) is kept as a float, so it goes out as a Double whether the flow gave
`22` or `22.5`.
`store` records a change; `signal_soon` sends every change of one event-loop turn
together: a single change as `PropertiesChanged` on its path, several as one
`ItemsChanged` on `/`, as velib_python does inside a service context. It is the
`ItemTree` that `BusConnection.serve` answers GetValue, GetText and GetItems from;
a subclass decides what a `SetValue` may do.
"""

from __future__ import annotations

import asyncio
import math

from flowengine.model import JsonValue
from nodes.dbus.bus import BusConnection
from nodes.dbus.presets import DOUBLE_UNITS
from nodes.dbus.text import render

__all__ = ["ItemTable", "carriable"]

_INT64 = range(-(2 ** 63), 2 ** 63)
_isfinite = math.isfinite


def carriable(value: JsonValue) -> JsonValue:
    """`value` as D-Bus can carry it. NaN, infinity and integers beyond 64 bits become
    invalid (None); a text loses NUL characters and has lone surrogates replaced by
    U+FFFD, since a D-Bus string is UTF-8 without NUL. Such a value (from an MQTT
    payload, say) would otherwise fail every signal and every GetItems of the service
    for as long as it stayed. Items of a list or mapping are made carriable one level
    deep (nested ones are left as they are; Venus OS values are flat)."""
    if isinstance(value, list):
        return [_scalar(item) for item in value]
    if isinstance(value, dict):
        return {_text(str(key)): _scalar(item) for key, item in value.items()}
    return _scalar(value)


def _scalar(value: JsonValue) -> JsonValue:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value in _INT64 else None
    if isinstance(value, str):
        return _text(value)
    return value


def _text(text: str) -> str:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate, as a JSON "\ud800" decodes
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\x00", "") if "\x00" in text else text


class ItemTable:
    """Values, texts and pending change signals of one service's paths."""

    def __init__(self) -> None:
        self.values: dict[str, JsonValue] = {}
        self._texts: dict[str, str] = {}
        self._units: dict[str, str] = {}
        self._pending: dict[str, None] = {}
        self._flush_scheduled = False
        self._bus: BusConnection | None = None

    def store(self, path: str, value: JsonValue, unit: str) -> bool:
        """Set one path (as `carriable` makes it, an int of a `DOUBLE_UNITS` unit as a
        float); True when it really changed."""
        if type(value) is float:  # most values: what carriable does with a float, inline
            if not _isfinite(value):
                value = None
        else:
            value = carriable(value)
        if type(value) is int and unit in DOUBLE_UNITS:
            value = float(value)
        old = self.values.get(path, ...)
        if path in self.values and old == value and type(old) is type(value):
            return False
        self.values[path] = value
        self._units[path] = unit
        self._texts[path] = render(value, unit, path=path)
        self._pending[path] = None
        return True

    def unit_of(self, path: str) -> str | None:
        return self._units.get(path)

    def signal_soon(self) -> None:
        """Signal the stored changes with the next loop turn (once, however many)."""
        if self._bus is not None and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def forget_changes(self) -> None:
        """Drop pending signals (the values a service starts with need none)."""
        self._pending.clear()

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        bus = self._bus
        if bus is None or not pending:
            return
        if len(pending) == 1:
            (path,) = pending
            bus.emit_properties_changed(path, self.values[path], self._texts[path])
        else:
            bus.emit_items_changed({p: (self.values[p], self._texts[p]) for p in pending})

    # -- ItemTree ---------------------------------------------------------------------------
    def item(self, path: str) -> tuple[JsonValue, str] | None:
        if path in self.values:
            return self.values[path], self._texts[path]
        return None

    def subtree(self, path: str) -> dict[str, tuple[JsonValue, str]]:
        prefix = path.rstrip("/") + "/"
        cut = len(prefix)
        return {p[cut:]: (v, self._texts[p]) for p, v in self.values.items()
                if p.startswith(prefix)}

    def description(self, path: str) -> str:
        return ""

    def set_value(self, path: str, value: JsonValue) -> int:
        return 1  # read-only unless a subclass says otherwise
