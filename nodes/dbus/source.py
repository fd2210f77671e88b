"""dbus.source: follow paths of a Victron D-Bus service and emit their values.

    - id: system
      type: dbus.source
      service: com.victronenergy.system
      paths: {power: /Dc/Battery/Power, soc: /Dc/Battery/Soc}   # topic -> path
      to: [latest]

    - id: batteries
      type: dbus.source
      service: com.victronenergy.battery.*       # every battery service ...
      device_instance: 512                       # ... with this /DeviceInstance
      paths: [/Soc, /Dc/0/Power]                 # a list: the topics are the paths

At start every value is read once (root GetItems); afterwards the node follows
ItemsChanged and PropertiesChanged, never polling. Each message has the topic of
its path (or the name given in `paths`), the value (None = invalid),
`meta.service`, the bus name it came from, and `meta.path`, the D-Bus path (so an
`mqtt.out` topic ending in `*` gets the path also when `paths` names it). Only changes
are emitted, each once, also when a service signals it both by PropertiesChanged and in
an ItemsChanged; a Double that is NaN or infinite is emitted as None (invalid).

All sources of all flows share one subscription per service (one D-Bus match rule),
whatever paths they watch. When a service leaves the bus, its paths are emitted as
None and the status says so; when it comes back (or first appears after the start),
its values are read again and followed as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flowengine.context import NodeContext
from flowengine.errors import ConfigError
from flowengine.model import JsonValue, Message, NodeSpec
from flowengine.node import Node, node_type, option
from nodes.dbus.link import DbusLink
from nodes.dbus.watcher import Watch

__all__ = ["DbusSource", "DbusSourceConfig"]


@dataclass(frozen=True, kw_only=True)
class DbusSourceConfig:
    service: str = option("bus name, or a pattern with * (com.victronenergy.battery.*)",
                          pattern=r"^[A-Za-z0-9_.*?\[\]-]+$",
                          example="com.victronenergy.system")
    paths: list[str] | dict[str, str] = option(
        "paths to follow: a list (the topics are the paths) or topic -> path",
        example={"soc": "/Dc/Battery/Soc", "power": "/Dc/Battery/Power"})
    device_instance: int | None = option(
        "only services whose /DeviceInstance is this (for patterns)", default=None,
        example=512)
    connection: str = option("name of the dbus connection", default="system",
                             connection="dbus")


def _topics(config: DbusSourceConfig) -> dict[str, str]:
    """path -> topic."""
    if isinstance(config.paths, dict):
        return {path: topic for topic, path in config.paths.items()}
    return {path: path for path in config.paths}


@node_type("dbus.source", config=DbusSourceConfig)
class DbusSource(Node[DbusSourceConfig]):
    """Follow paths of a D-Bus service (by name or pattern); emit their values."""

    inputs = {}

    def __init__(self, config: DbusSourceConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self._topic_of = _topics(config)
        for path in self._topic_of:
            if not path.startswith("/"):
                raise ConfigError(f"'{path}' is not a D-Bus path", mark=self.mark_of("paths"),
                                  hint="paths start with '/', e.g. /Dc/Battery/Soc")
        if isinstance(config.paths, dict) and len(self._topic_of) != len(config.paths):
            raise ConfigError("two topics name the same path", mark=self.mark_of("paths"))
        if not self._topic_of:
            raise ConfigError("no paths to follow", mark=self.mark_of("paths"))
        self._link: DbusLink | None = None
        self._watch: Watch | None = None
        self._present: set[str] = set()
        self._meta: dict[str, dict[str, Mapping[str, JsonValue]]] = {}  # service -> path -> meta

    @classmethod
    def output_topics(cls, config: DbusSourceConfig) -> frozenset[str]:
        return frozenset(_topics(config).values())

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        ctx.status.warning(f"waiting for {self.config.service}")
        self._link = await ctx.connections.get("dbus", self.config.connection)
        self._watch = await self._link.watcher.watch(
            self.config.service, self._topic_of, self,
            device_instance=self.config.device_instance)

    async def stop(self) -> None:
        if self._link is not None and self._watch is not None:
            await self._link.watcher.unwatch(self._watch)
        self._watch = None

    # -- Subscriber ----------------------------------------------------------------------------
    def values_changed(self, service: str, values: dict[str, JsonValue]) -> None:
        """One message per value; the values of one signal have one reading time, and
        each path of a service its one (read-only) meta mapping."""
        ctx, topic_of = self.ctx, self._topic_of
        meta = self._meta.get(service)
        if meta is None:
            meta = self._meta[service] = {path: {"service": service, "path": path}
                                          for path in topic_of}
        clock, emit = ctx.clock, ctx.emit
        ts, wall = clock.monotonic(), clock.wall()
        for path, value in values.items():
            emit(Message(topic_of[path], value, ts, wall, meta[path]))

    def presence_changed(self, service: str, present: bool) -> None:
        left = False
        if present and service not in self._present:
            self._present.add(service)
            self.ctx.log.info("following %s", service)
        elif not present and service in self._present:
            self._present.discard(service)
            left = True
            self.ctx.log.warning("%s left the bus; its values are invalid", service)
        if self._present:
            self.ctx.status.ok(", ".join(sorted(self._present)))
        elif left:
            self.ctx.status.warning(f"{service} left the bus")
        elif self.ctx.status.current.level != "warning":
            self.ctx.status.warning(f"waiting for {self.config.service}")
