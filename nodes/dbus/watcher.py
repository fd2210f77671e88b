"""Watcher: one subscription per D-Bus service, shared by every node that reads it.

A node asks to watch some paths of a service given by name or pattern
(`com.victronenergy.battery.*`). The watcher, one per bus connection:

- follows NameOwnerChanged for the names asked for (one match rule per name or
  name space), so it sees services come, go and come back;
- per service present: adds one match rule for its BusItem signals (ItemsChanged on
  `/` and PropertiesChanged on every path), then reads every value once with root
  GetItems; after that only signals are used, never polling;
- keeps the latest value of every path someone watches and hands changes to each
  watch that wants them; when the service leaves the bus, its paths become None.

A change is handed on once, however many signals carry it: a value equal to the one
kept is no change. velib_python sends one change either as PropertiesChanged on its
path or (set inside `with service as ctx:`) in the one ItemsChanged on `/` of that
block, never both; a service that did send both (or repeats a value) is still handed
on once. Both signals are followed from every service, since a velib service uses each
for different changes. A Double that is NaN or infinite is invalid (None), as our own
services publish it: NaN is unequal even to itself, so it would pass as a change with
every signal, and no JSON can carry it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from flowengine.model import JsonValue
from nodes.dbus.bus import (
    BUSITEM,
    BusCallError,
    BusConnection,
    BusEvent,
    OwnerChanged,
    ValuesChanged,
)

__all__ = ["Subscriber", "Watch", "Watcher"]

log = logging.getLogger(__name__)

DEVICE_INSTANCE = "/DeviceInstance"
READ_TIMEOUT_S = 3.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
_UNKNOWN = object()  # a path not read yet: unequal to every value
_isfinite = math.isfinite


class Subscriber(Protocol):
    def values_changed(self, service: str, values: dict[str, JsonValue]) -> None: ...
    def presence_changed(self, service: str, present: bool) -> None: ...


@dataclass(eq=False)
class Watch:
    """One node's interest: some paths of the services matching `pattern`."""

    pattern: str
    paths: frozenset[str]
    subscriber: Subscriber
    device_instance: int | None = None
    services: set[str] = field(default_factory=set)  # names it currently receives from

    @property
    def is_pattern(self) -> bool:
        return any(c in self.pattern for c in "*?[")

    def matches(self, name: str) -> bool:
        if self.is_pattern:
            return fnmatch.fnmatchcase(name, self.pattern)
        return name == self.pattern

    def accepts(self, service: _Service) -> bool:
        return self.device_instance is None or \
            service.values.get(DEVICE_INSTANCE) == self.device_instance

    @property
    def owner_rule(self) -> str:
        head = self.pattern
        for i, char in enumerate(self.pattern):
            if char in "*?[":
                head = self.pattern[:i].rsplit(".", 1)[0]
                return (f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
                        f"arg0namespace='{head}'")
        return (f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
                f"arg0='{head}'")


@dataclass(eq=False)
class _Service:
    name: str
    owner: str = ""
    values: dict[str, JsonValue] = field(default_factory=dict)
    watches: list[Watch] = field(default_factory=list)  # changed by add() and drop() only
    ready: bool = False  # values were read since the owner appeared
    generation: int = 0
    reader: asyncio.Task[None] | None = None
    # kept up to date with `watches`, for every signal: the paths any watch wants (and
    # /DeviceInstance), and the watches that want all of them (perhaps but that one)
    wanted: frozenset[str] = field(init=False, default=frozenset())
    whole: frozenset[Watch] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        self._rewatched()

    @property
    def rule(self) -> str:
        return f"type='signal',sender='{self.name}',interface='{BUSITEM}'"

    def add(self, watch: Watch) -> None:
        self.watches.append(watch)
        self._rewatched()

    def drop(self, watch: Watch) -> None:
        """Stop handing changes to `watch`; the values of paths that no watch wants now
        are forgotten (no longer followed, they would go stale), so a watch that wants
        one later reads it again."""
        self.watches.remove(watch)
        self._rewatched()
        for path in self.values.keys() - self.wanted:
            del self.values[path]

    def _rewatched(self) -> None:
        wanted = frozenset({DEVICE_INSTANCE}).union(*(w.paths for w in self.watches))
        others = wanted - {DEVICE_INSTANCE}
        self.wanted = wanted
        self.whole = frozenset(w for w in self.watches if w.paths >= others)


class Watcher:
    """Shared subscriptions on one bus connection; see the module docstring."""

    def __init__(self, bus: BusConnection) -> None:
        self._bus = bus
        self._watches: list[Watch] = []
        self._services: dict[str, _Service] = {}
        self._by_owner: dict[str, list[_Service]] = {}
        self._unlisten = bus.listen(self._on_event)
        self._closed = False

    @property
    def services(self) -> list[str]:
        return sorted(self._services)

    async def watch(self, pattern: str, paths: Iterable[str], subscriber: Subscriber, *,
                    device_instance: int | None = None) -> Watch:
        """Start watching; current values are handed over before this returns."""
        watch = Watch(pattern, frozenset(paths), subscriber, device_instance)
        self._watches.append(watch)
        await self._bus.add_match(watch.owner_rule)
        names = [n for n in await self._bus.list_names() if watch.matches(n)] \
            if watch.is_pattern else [pattern]
        for name in names:
            await self._attach(watch, name)
        return watch

    async def unwatch(self, watch: Watch) -> None:
        if watch not in self._watches:
            return
        self._watches.remove(watch)
        for service in list(self._services.values()):
            if watch in service.watches:
                service.drop(watch)
                if not service.watches:
                    await self._forget(service)
        await self._bus.remove_match(watch.owner_rule)

    async def close(self) -> None:
        self._closed = True
        self._unlisten()
        for service in list(self._services.values()):
            if service.reader is not None:
                service.reader.cancel()
        readers = [s.reader for s in self._services.values() if s.reader is not None]
        if readers:
            await asyncio.wait(readers, timeout=1.0)
        self._services.clear()
        self._by_owner.clear()

    # -- services ---------------------------------------------------------------------------
    async def _attach(self, watch: Watch, name: str) -> None:
        service = self._services.get(name)
        if service is None:
            service = _Service(name, watches=[watch])
            self._services[name] = service
            await self._bus.add_match(service.rule)
            owner = await self._bus.name_owner(name)
            if owner:
                self._set_owner(service, owner)
                reader = self._start_reading(service, add_rule=False)
                await asyncio.wait([reader], timeout=READ_TIMEOUT_S)  # it retries on its own
            else:
                self._announce_absent(service, [watch])
            return
        service.add(watch)
        if service.ready:
            if watch.paths <= service.values.keys():
                self._hand_over(service, watch)
            else:  # followed already, but not these paths: their values were never read
                await self._read_more(service, watch)
        elif not service.owner:
            self._announce_absent(service, [watch])

    async def _forget(self, service: _Service) -> None:
        self._services.pop(service.name, None)
        self._set_owner(service, "")
        if service.reader is not None:
            service.reader.cancel()
        await self._bus.remove_match(service.rule)

    def _set_owner(self, service: _Service, owner: str) -> None:
        if service.owner:
            siblings = self._by_owner.get(service.owner, [])
            if service in siblings:
                siblings.remove(service)
            if not siblings:
                self._by_owner.pop(service.owner, None)
        service.owner = owner
        service.generation += 1
        service.ready = False
        if owner:
            self._by_owner.setdefault(owner, []).append(service)

    async def _read(self, service: _Service, generation: int) -> None:
        """Read every value of a service once (after it appeared); retry while it stays."""
        delay = RETRY_FIRST_S
        while service.generation == generation and not self._closed:
            try:
                items = await self._bus.get_items(service.name, timeout_s=READ_TIMEOUT_S)
            except (BusCallError, TimeoutError) as exc:
                log.warning("reading %s failed (%s); retrying in %.1f s", service.name, exc,
                            delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if service.generation != generation:
                return
            service.values = {p: _finite(items.get(p)) for p in service.wanted}
            service.ready = True
            for watch in list(service.watches):
                self._hand_over(service, watch)
            return

    async def _read_more(self, service: _Service, watch: Watch) -> None:
        """Read the paths a new watch wants of a service followed for others, hand over.

        The paths known already are current (signals keep them); only the new ones are
        taken from the reply. If the read fails, the new paths start invalid and get
        their values with the service's next change of them."""
        generation = service.generation
        try:
            items = await self._bus.get_items(service.name, timeout_s=READ_TIMEOUT_S)
        except (BusCallError, TimeoutError) as exc:
            log.warning("reading %s failed (%s); the new paths start invalid",
                        service.name, exc)
            items = {}
        if service.generation != generation or not service.ready:
            return  # it left or came back meanwhile: the reader of then hands over
        for path in watch.paths - service.values.keys():
            service.values[path] = _finite(items.get(path))
        self._hand_over(service, watch)

    def _hand_over(self, service: _Service, watch: Watch) -> None:
        """Give a watch every value it wants of a service that was just read."""
        if not watch.accepts(service):
            return
        values = {p: service.values.get(p) for p in watch.paths}
        watch.services.add(service.name)
        watch.subscriber.presence_changed(service.name, True)
        watch.subscriber.values_changed(service.name, values)

    def _announce_absent(self, service: _Service, watches: list[Watch]) -> None:
        for watch in watches:
            watch.subscriber.presence_changed(service.name, False)
            if service.name == watch.pattern:
                watch.subscriber.values_changed(service.name, dict.fromkeys(watch.paths))

    # -- signals ---------------------------------------------------------------------------------
    def _on_event(self, event: BusEvent) -> None:
        if type(event) is ValuesChanged:
            for service in self._by_owner.get(event.sender, ()):
                if service.ready:
                    self._changed(service, event.values)
        elif type(event) is OwnerChanged:
            self._owner_changed(event.name, event.owner)

    def _changed(self, service: _Service, values: dict[str, JsonValue]) -> None:
        """Hand on what really changed, to each watch that wants it (once per signal).

        A watch that wants every path changed gets the one dict of changes itself (the
        one watch of most services): subscribers read it, they never change or keep it."""
        known, wanted = service.values, service.wanted
        changed: dict[str, JsonValue] = {}
        for p, v in values.items():
            if p in wanted:
                if type(v) is float and not _isfinite(v):
                    v = None
                if known.get(p, _UNKNOWN) != v:  # a repeat is no change
                    changed[p] = v
        if not changed:
            return
        known.update(changed)
        name = service.name
        instance = DEVICE_INSTANCE in changed
        for watch in service.watches:
            if name not in watch.services:
                if instance and watch.accepts(service):
                    self._hand_over(service, watch)  # its instance now matches
                continue
            if watch in service.whole and (not instance or DEVICE_INSTANCE in watch.paths):
                watch.subscriber.values_changed(name, changed)
                continue
            mine = {p: v for p, v in changed.items() if p in watch.paths}
            if mine:
                watch.subscriber.values_changed(name, mine)

    def _owner_changed(self, name: str, owner: str) -> None:
        if self._closed:
            return
        service = self._services.get(name)
        if service is None:
            if not owner:
                return
            watches = [w for w in self._watches if w.matches(name)]
            if not watches:
                return
            service = _Service(name, watches=watches)
            self._services[name] = service
            self._set_owner(service, owner)
            self._start_reading(service, add_rule=True)
            return
        if owner == service.owner:
            return
        if service.owner:
            self._gone(service)
        self._set_owner(service, owner)
        if owner:
            log.info("%s is back on the bus", name)
            self._start_reading(service, add_rule=False)

    def _gone(self, service: _Service) -> None:
        log.info("%s left the bus", service.name)
        for path in service.values:
            service.values[path] = None
        for watch in service.watches:
            if service.name in watch.services:
                watch.services.discard(service.name)
                watch.subscriber.values_changed(service.name, dict.fromkeys(watch.paths))
            watch.subscriber.presence_changed(service.name, False)

    def _start_reading(self, service: _Service, *, add_rule: bool) -> asyncio.Task[None]:
        generation = service.generation

        async def read() -> None:
            if add_rule:
                await self._bus.add_match(service.rule)
            await self._read(service, generation)

        task = asyncio.ensure_future(read())
        task.set_name(f"dbus-watcher:{service.name}")
        service.reader = task
        task.add_done_callback(_log_failure)
        return task


def _finite(value: JsonValue) -> JsonValue:
    """A NaN or infinite Double as invalid (None); any other value as it is."""
    return None if type(value) is float and not _isfinite(value) else value


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %s", task.get_name(), task.exception())
