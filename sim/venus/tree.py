"""One simulated Venus OS service: its values, texts, writable paths and bus name.

    service = SimService("com.victronenergy.system", units={"/Dc/Battery/Soc": "%"})
    service.update({"/Dc/Battery/Soc": 51.2})     # before start: the initial values
    await service.start(address)                   # own connection, paths, then the name
    service.update({"/Dc/Battery/Soc": 51.3})     # signalled with the next loop turn
    await service.close()

Like a velib process, each service has a bus connection of its own and owns one
name, requested only after every path exists. The BusItem protocol itself (GetItems,
GetValue, GetText, SetValue, the variant encoding of invalid values) is answered by
`nodes.dbus.bus`; this class is the `ItemTree` it answers from. All changes made in
one event-loop turn go out together: one change as `PropertiesChanged` on its path,
several as one `ItemsChanged` on `/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping

from flowengine.errors import NotConnected
from flowengine.model import JsonValue
from nodes.dbus.bus import BusCallError, BusConnection, MethodHandler, open_bus
from nodes.dbus.presets import Writable
from nodes.dbus.text import render

__all__ = ["OnWrite", "SimService"]

OnWrite = Callable[[str, JsonValue], int]
"""Called with (path, accepted value) after a SetValue passed its `Writable` check;
returns 0 to keep the value, 2 to refuse it."""


class SimService:
    """A Venus OS service of the simulation; see the module docstring."""

    def __init__(self, name: str, *, units: Mapping[str, str] | None = None,
                 writable: Mapping[str, Writable] | None = None,
                 on_write: OnWrite | None = None,
                 methods: Mapping[tuple[str, str], MethodHandler] | None = None) -> None:
        self.name = name
        self.units = dict(units or {})
        self.writable = dict(writable or {})
        self.on_write = on_write
        self.methods = dict(methods or {})
        self.values: dict[str, JsonValue] = {}
        self._texts: dict[str, str] = {}
        self._pending: dict[str, None] = {}
        self._flush_scheduled = False
        self._bus: BusConnection | None = None
        self._stack = contextlib.AsyncExitStack()
        self.writes: list[tuple[str, JsonValue]] = []
        """every accepted SetValue, in order (for tests and the demo's report)"""

    @property
    def running(self) -> bool:
        return self._bus is not None

    async def start(self, address: str) -> None:
        bus = await self._stack.enter_async_context(open_bus(address))
        try:
            bus.serve(self, methods=self.methods)
            self._pending.clear()
            await bus.request_name(self.name)
        except BaseException:
            await self._stack.aclose()
            raise
        self._bus = bus

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(BusCallError, TimeoutError, OSError, NotConnected):
                await bus.release_name(self.name)
        await self._stack.aclose()

    # -- values -------------------------------------------------------------------------------
    def update(self, values: Mapping[str, JsonValue]) -> None:
        """Set paths (new ones are created); changes are signalled with the next loop turn."""
        changed = False
        for path, value in values.items():
            changed = self._store(path, value) or changed
        if changed and self._bus is not None and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _store(self, path: str, value: JsonValue) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        old = self.values.get(path, ...)
        if path in self.values and old == value and type(old) is type(value):
            return False
        self.values[path] = value
        self._texts[path] = render(value, self.units.get(path, ""), path=path)
        self._pending[path] = None
        return True

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

    # -- ItemTree -----------------------------------------------------------------------------
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
        rule = self.writable.get(path)
        if rule is None:
            return 1
        code, accepted = rule.check(value)
        if code:
            return code
        if self.on_write is not None:
            code = self.on_write(path, accepted)
            if code:
                return code
        self.writes.append((path, accepted))
        self.update({path: accepted})
        return 0
