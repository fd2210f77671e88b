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

import contextlib
from collections.abc import Callable, Mapping

from flowengine.errors import NotConnected
from flowengine.model import JsonValue
from nodes.dbus.bus import BusCallError, MethodHandler, open_bus
from nodes.dbus.items import ItemTable
from nodes.dbus.presets import Writable

__all__ = ["OnWrite", "SimService"]

OnWrite = Callable[[str, JsonValue], int]
"""Called with (path, accepted value) after a SetValue passed its `Writable` check;
returns 0 to keep the value, 2 to refuse it."""


class SimService(ItemTable):
    """A Venus OS service of the simulation; see the module docstring."""

    def __init__(self, name: str, *, units: Mapping[str, str] | None = None,
                 writable: Mapping[str, Writable] | None = None,
                 on_write: OnWrite | None = None,
                 methods: Mapping[tuple[str, str], MethodHandler] | None = None) -> None:
        super().__init__()
        self.name = name
        self.units = dict(units or {})
        self.writable = dict(writable or {})
        self.on_write = on_write
        self.methods = dict(methods or {})
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
            self.forget_changes()
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
            changed = self.store(path, value, self.units.get(path, "")) or changed
        if changed:
            self.signal_soon()

    # -- ItemTree (values and texts come from ItemTable) -------------------------------------
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
