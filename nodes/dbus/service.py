"""dbus.service: publish a Venus OS service that VRM and the GUI take for a Victron one.

    - id: garden
      type: dbus.service
      preset: temperature
      name: esess_garden                 # -> com.victronenergy.temperature.esess_garden
      device_instance: 1000
      custom_name: Garden
      topics: {temp: /Temperature}       # input topic -> path (paths work as topics too)

The service has a bus connection of its own and owns one name,
`com.victronenergy.<type>.<name>`. It answers Victron's `com.victronenergy.BusItem`
interface on every path and on `/` exactly as velib_python does: GetValue, GetText,
SetValue and GetDescription on a path, GetItems, GetValue and GetText (every item) on
`/` and on every branch (`/Ac`). Invalid values (None) go out as an empty int array
and show as `---`; numbers show with their unit (`123.4W`, `51.2V`, `85%`).

Every input message sets one path (its topic is the path or a key of `topics`);
with `batch_topic`, a message on that topic carries a mapping of many. A value that
really changed is signalled; all changes of one event-loop turn go out together:
one change as `PropertiesChanged` on its path, several as one `ItemsChanged` on `/`
(as velib does inside a service context).

The mandatory paths (`/Mgmt/...`, `/DeviceInstance`, `/ProductId`, `/ProductName`,
`/FirmwareVersion`, `/HardwareVersion`, `/Connected`, `/CustomName`, `/Serial`) are
filled from the options. The `preset` lists the paths of its type; a flow that feeds
a path the preset does not know is refused by `validate`. `generic` takes any path.

Writable paths (the preset's, e.g. an EV charger's `/Mode`, `/StartStop` and
`/SetCurrent`, `/CustomName`, and those under `writable`) accept SetValue from VRM
or the GUI: a wrong type gets 1, a value out of range 2, a good one 0, and the new
value goes out of this node as a message (topic: the path or its `topics` key).

With `register_instance` (the default), when com.victronenergy.settings is on the
bus, the service keeps two settings in localsettings under
`/Settings/Devices/esess_<type>_<name>/`, as Victron's drivers do:

- `ClassAndVrmInstance` (`<type>:<instance>`, created with `device_instance`):
  localsettings moves a taken instance to the next free one, and the service uses
  the instance stored there, so a user can change it in the GUI's device list; a
  change there sets `/DeviceInstance` at once (as dbus-modbus-client does), and
  consumers that read it only when the service appears (systemcalc) see it after
  the next start.
- `CustomName` (created empty): a name written to `/CustomName` (GUI, VRM, MQTT
  `W/`) is stored there and shown again after a restart; an empty name shows the
  configured `custom_name` again.

A setting localsettings refuses (its code is logged) or a missing settings service
(logged once) leaves the service running with `device_instance` and `custom_name`.
The bus name is requested only after every path exists, and released when the node
stops.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

from flowengine import __version__
from flowengine.context import NodeContext
from flowengine.errors import ConfigError, NotConnected
from flowengine.model import JsonValue, Message, NodeSpec
from flowengine.node import Claim, Node, UpstreamInfo, node_type, option
from flowengine.schema import did_you_mean
from nodes.dbus.bus import (
    BUSITEM,
    SETTING_ERRORS,
    SETTINGS,
    BusCallError,
    BusConnection,
    BusEvent,
    ValuesChanged,
)
from nodes.dbus.items import ItemTable
from nodes.dbus.link import DbusLink
from nodes.dbus.presets import PRESETS, Preset, Writable
from nodes.dbus.text import UNITS

__all__ = ["DbusService", "DbusServiceConfig", "WritableConfig"]

REGISTER_TIMEOUT_S = 2.0
STOP_SAVE_TIMEOUT_S = 0.5
CUSTOM_NAME = "/CustomName"
DEVICE_INSTANCE = "/DeviceInstance"
_JSON_TYPES = (type(None), bool, int, float, str, list, dict)
MAX_ROUTES = 1024  # input topics whose path and unit are kept

PROCESS_VERSION = __version__  # pyproject's version (a test keeps the two equal)


@dataclass(frozen=True, kw_only=True)
class WritableConfig:
    kind: Literal["number", "integer", "text", "any"] = option(
        "what a write must be", default="number")
    minimum: float | None = option("lowest value accepted", default=None)
    maximum: float | None = option("highest value accepted", default=None)


@dataclass(frozen=True, kw_only=True)
class DbusServiceConfig:
    preset: Literal["battery", "grid", "pvinverter", "temperature", "evcharger", "generic"] = \
        option("service type and its documented paths; generic allows any path",
               example="temperature")
    name: str = option("last part of the bus name com.victronenergy.<type>.<name>",
                       pattern=r"^[A-Za-z0-9_]+$", example="esess_garden")
    service_type: str | None = option(
        "with preset generic: the type part of the bus name", default=None,
        pattern=r"^[a-z0-9_]+$", example="heatpump")
    device_instance: int = option("VRM device instance (/DeviceInstance)", minimum=0,
                                  maximum=65535, example=1000)
    product_name: str | None = option("/ProductName; default: the preset's", default=None)
    product_id: int = option("/ProductId (0xFFFF: none)", default=0xFFFF, minimum=0)
    custom_name: str | None = option("/CustomName (users can change it)", default=None,
                                     example="Garden")
    firmware_version: JsonValue = option("/FirmwareVersion", default=PROCESS_VERSION)
    hardware_version: JsonValue = option("/HardwareVersion", default=0)
    serial: str | None = option("/Serial", default=None)
    mgmt_connection: str = option("/Mgmt/Connection: how the data arrives",
                                  default="es-ESS flows", example="MQTT")
    values: dict[str, JsonValue] = option("paths set at start (fixed values)", default={},
                                          example={"/TemperatureType": 4})
    topics: dict[str, str] = option("input topic -> path, for topics that are not paths",
                                    default={}, example={"temp": "/Temperature"})
    batch_topic: str | None = option(
        "messages on this topic carry a mapping of paths (or topics) to values",
        default=None, example="values")
    writable: dict[str, WritableConfig] = option(
        "more paths users may change, with the write they accept", default={},
        example={"/Setpoint": {"kind": "number", "minimum": 0, "maximum": 100}})
    units: dict[str, str] = option("text unit of paths the preset does not know",
                                   default={}, example={"/Power": "W"})
    register_instance: bool = option(
        "keep ClassAndVrmInstance and CustomName in com.victronenergy.settings when it "
        "is on the bus (a user's instance and name last)", default=True)
    connection: str = option("name of the dbus connection", default="system",
                             connection="dbus")


@node_type("dbus.service", config=DbusServiceConfig)
class DbusService(Node[DbusServiceConfig], ItemTable):
    """Publish a Victron D-Bus service (BusItem interface, mandatory paths, presets)."""

    def __init__(self, config: DbusServiceConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self.preset: Preset = PRESETS[config.preset]
        service_type = config.service_type or self.preset.service_type
        if config.preset == "generic" and not service_type:
            raise ConfigError("preset generic needs service_type", mark=self.mark_of("preset"),
                              hint="add service_type: <the type part of the bus name>")
        if config.preset != "generic" and config.service_type not in (None, service_type):
            raise ConfigError(f"preset {config.preset} publishes a {service_type} service",
                              mark=self.mark_of("service_type"),
                              hint="drop service_type, or use preset: generic")
        self.service_type = service_type
        self.bus_name = f"com.victronenergy.{service_type}.{config.name}"
        for key in ("values", "writable", "units"):
            for path in getattr(config, key):
                self._check_path(path, key, path)
        for topic, path in config.topics.items():
            self._check_path(path, "topics", topic)
        for path, unit in config.units.items():
            if unit not in UNITS:
                raise ConfigError(f"unknown unit '{unit}' for {path}", mark=self.mark_of(
                    "units", path), hint="known units: " + ", ".join(u for u in UNITS if u))
        self._topic_of = {path: topic for topic, path in config.topics.items()}
        self._writable: dict[str, Writable] = {
            path: spec.writable for path, spec in self.preset.paths.items() if spec.writable}
        for path, w in config.writable.items():
            self._writable[path] = Writable(w.kind, w.minimum, w.maximum)
        ItemTable.__init__(self)
        self._stack = contextlib.AsyncExitStack()
        self._warned: set[str] = set()
        self._routes: dict[str, tuple[str, str]] = {}  # input topic -> (path, unit)
        self._settings_dir = f"/Settings/Devices/esess_{service_type}_{config.name}"
        self._instance_setting = self._settings_dir + "/ClassAndVrmInstance"
        self._name_setting = self._settings_dir + "/CustomName"
        self._keeps_name = False  # the CustomName setting exists: a rename is stored
        self._unsaved_name: str | None = None  # a rename not yet stored in localsettings

    def _check_path(self, path: str, key: str, where: str) -> None:
        if not path.startswith("/"):
            raise ConfigError(f"'{path}' is not a D-Bus path", mark=self.mark_of(key, where),
                              hint="paths start with '/', e.g. /Ac/Power")
        if not self.preset.knows(path):
            raise ConfigError(
                f"preset {self.preset.name} has no path {path}", mark=self.mark_of(key, where),
                hint=did_you_mean(path, self.preset.paths) or
                "use preset: generic for paths of your own")

    # -- validate ----------------------------------------------------------------------------
    def claims(self) -> list[Claim]:
        return [Claim("D-Bus name", self.bus_name, "name")]

    def check(self, upstream: UpstreamInfo) -> list[ConfigError]:
        if upstream.topics is None:
            return []
        errors = []
        for topic in sorted(upstream.topics):
            if topic == self.config.batch_topic or self._path_of(topic) is not None:
                continue
            choices = [*self.config.topics, *self.preset.paths]
            errors.append(ConfigError(
                f"input topic '{topic}' is no path of preset {self.preset.name}",
                mark=self.spec.mark, hint=did_you_mean(topic, choices) or
                "map it to a path under topics:, or use preset: generic"))
        return errors

    def _path_of(self, topic: str) -> str | None:
        path = self.config.topics.get(topic, topic)
        return path if path.startswith("/") and self.preset.knows(path) else None

    # -- run ------------------------------------------------------------------------------------
    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        link: DbusLink = await ctx.connections.get("dbus", self.config.connection)
        self._keeps_name, self._unsaved_name = False, None
        try:
            bus = await self._stack.enter_async_context(link.private())
            instance, name = await self._load_settings(bus)
            self._fill(instance, name)
            bus.serve(self)
            await bus.request_name(self.bus_name)
        except BaseException:
            await self._stack.aclose()
            raise
        self._bus = bus
        ctx.status.ok(f"{self.bus_name} (instance {instance})")
        ctx.log.info("published %s with %d paths", self.bus_name, len(self.values))

    async def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            if self._unsaved_name is not None:  # a rename just before the stop
                await self._save_name(bus, timeout_s=STOP_SAVE_TIMEOUT_S)
            with contextlib.suppress(BusCallError, TimeoutError, OSError):
                await bus.release_name(self.bus_name)
        await self._stack.aclose()

    def _fill(self, instance: int, name: str) -> None:
        cfg, preset = self.config, self.preset
        mandatory: dict[str, JsonValue] = {
            "/Mgmt/ProcessName": "esess-flows", "/Mgmt/ProcessVersion": PROCESS_VERSION,
            "/Mgmt/Connection": cfg.mgmt_connection, "/DeviceInstance": instance,
            "/ProductId": cfg.product_id,
            "/ProductName": cfg.product_name or preset.product_name,
            "/FirmwareVersion": cfg.firmware_version, "/HardwareVersion": cfg.hardware_version,
            "/Connected": 1, CUSTOM_NAME: name, "/Serial": cfg.serial or "",
        }
        for path, spec in preset.paths.items():
            if not path.endswith("/*"):
                self.store(path, None, spec.unit)
        for values in (mandatory, preset.defaults, cfg.values):
            for path, value in values.items():
                self.store(path, value, self._unit(path))
        self.forget_changes()
        self._routes.clear()  # the units of the paths are those stored now

    def _unit(self, path: str) -> str:
        unit = self.config.units.get(path)
        if unit is None:
            spec = self.preset.spec(path)
            unit = spec.unit if spec is not None else ""
        return unit

    # -- localsettings: ClassAndVrmInstance and CustomName -----------------------------------
    async def _load_settings(self, bus: BusConnection) -> tuple[int, str]:
        """The instance and name to start with: localsettings' if it has them."""
        cfg = self.config
        instance, name = cfg.device_instance, cfg.custom_name or ""
        if not cfg.register_instance:
            return instance, name
        if await bus.name_owner(SETTINGS) is None:
            self.ctx.log.info("%s is not on the bus: instance %d and the configured name; "
                              "a rename lasts until the next start", SETTINGS, instance)
            return instance, name
        # follow the settings before creating them, so no change in between is missed
        await bus.add_match(f"type='signal',sender='{SETTINGS}',interface='{BUSITEM}',"
                            f"member='PropertiesChanged',path_namespace='{self._settings_dir}'")
        bus.listen(self._on_settings_event)
        try:
            stored = await self._add_setting(bus, self._instance_setting,
                                             f"{self.service_type}:{instance}")
            if stored is not None:
                number = self._instance_of(stored)
                if number is not None and number != instance:
                    self.ctx.log.info("instance %d from %s (configured: %d)", number,
                                      self._instance_setting, instance)
                instance = instance if number is None else number
            stored = await self._add_setting(bus, self._name_setting, "")
        except TimeoutError:  # a hung localsettings: one wait, not one per setting
            self.ctx.log.warning("%s did not answer in %.0f s: instance %d and the name "
                                 "%r", SETTINGS, REGISTER_TIMEOUT_S, instance, name)
            return instance, name
        if stored is not None:
            self._keeps_name = True
            name = str(stored) or name
        return instance, name

    async def _add_setting(self, bus: BusConnection, path: str,
                           default: JsonValue) -> JsonValue | None:
        """AddSetting, then the value stored; None when refused or failed (logged).
        TimeoutError passes: the caller gives up on localsettings for this start."""
        try:
            code = await bus.add_setting(path, default, timeout_s=REGISTER_TIMEOUT_S)
            if code == 0:
                return await bus.get_value(SETTINGS, path, timeout_s=REGISTER_TIMEOUT_S)
            problem = f"refused ({code}: {SETTING_ERRORS.get(code, 'unknown code')})"
        except BusCallError as exc:
            problem = f"failed: {exc}"
        self.ctx.log.warning("AddSetting %s in %s %s; using the configured value", path,
                             SETTINGS, problem)
        return None

    def _instance_of(self, stored: JsonValue) -> int | None:
        """The instance of a ClassAndVrmInstance value of our class (else None, logged)."""
        kind, _, number = str(stored).partition(":")
        if kind == self.service_type and number.isdigit():
            return int(number)
        self.ctx.log.warning("ignored %s = %r: not %s:<instance>", self._instance_setting,
                             stored, self.service_type)
        return None

    def _on_settings_event(self, event: BusEvent) -> None:
        """A setting of ours changed in localsettings (the GUI, VRM, another tool)."""
        if type(event) is not ValuesChanged or DEVICE_INSTANCE not in self.values:
            return
        for path, value in event.values.items():
            if path == self._instance_setting:
                number = self._instance_of(value)
                if number is not None and self.store(DEVICE_INSTANCE, number, ""):
                    self.ctx.log.info("instance %d from %s", number, path)
                    self.ctx.status.ok(f"{self.bus_name} (instance {number})")
                    self.signal_soon()
            elif path == self._name_setting and self._unsaved_name is None:
                name = str(value) if value is not None else ""
                if self.store(CUSTOM_NAME, name or self.config.custom_name or "", ""):
                    self.signal_soon()

    async def _save_name(self, bus: BusConnection | None = None, *,
                         timeout_s: float = REGISTER_TIMEOUT_S) -> None:
        """Store the latest rename in localsettings (it is shown again after a restart)."""
        bus = bus or self._bus
        while bus is not None and self._unsaved_name is not None:
            name = self._unsaved_name
            try:
                code = await bus.set_value(SETTINGS, self._name_setting, name,
                                           timeout_s=timeout_s)
                problem = "" if code == 0 else \
                    f"refused ({code}: {SETTING_ERRORS.get(code, 'unknown code')})"
            except (BusCallError, TimeoutError, NotConnected) as exc:
                problem = f"failed: {exc or type(exc).__name__}"
            if problem:
                self._unsaved_name = None
                self.ctx.log.warning("storing the name %r in %s %s; it lasts until the "
                                     "next start", name, self._name_setting, problem)
            elif self._unsaved_name == name:  # else: renamed again meanwhile, store that
                self._unsaved_name = None

    def receive(self, port: str, msg: Message) -> bool:
        batch = self.config.batch_topic
        if batch is not None and msg.topic == batch and isinstance(msg.value, dict):
            for topic, value in msg.value.items():
                self._from_flow(str(topic), value)
        else:
            self._from_flow(msg.topic, msg.value)
        return True

    def _from_flow(self, topic: str, value: JsonValue) -> None:
        route = self._routes.get(topic)
        if route is None or not isinstance(value, _JSON_TYPES):
            route = self._route(topic, value)
            if route is None:
                return
        if self.store(route[0], value, route[1]):
            self.signal_soon()

    def _route(self, topic: str, value: JsonValue) -> tuple[str, str] | None:
        """(path, unit) of an input topic, kept for the next message of that topic;
        None, warned once, for a topic that is no path or a value that is no JSON."""
        path = self._path_of(topic)
        if path is None or not isinstance(value, _JSON_TYPES):
            problem = f"ignored topic '{topic}': no path of preset {self.preset.name}" \
                if path is None else f"ignored a {type(value).__name__} for {path}"
            if problem not in self._warned and len(self._warned) < 100:
                self._warned.add(problem)
                self.ctx.log.warning("%s", problem)
                self.ctx.status.warning(problem)
            return None
        route = (path, self.unit_of(path) or self._unit(path))
        if len(self._routes) < MAX_ROUTES:  # a generic service takes any path a batch names
            self._routes[topic] = route
        return route

    # -- ItemTree: what the bus adapter answers calls from (the rest in ItemTable) ---------
    def set_value(self, path: str, value: JsonValue) -> int:
        rule = self._writable.get(path)
        if rule is None:
            return 1
        code, accepted = rule.check(value)
        if code:
            self.ctx.log.info("refused SetValue %r on %s (%d)", value, path, code)
            return code
        if path == CUSTOM_NAME and isinstance(accepted, str):
            if self._keeps_name:
                if self._unsaved_name is None:
                    self.ctx.after(0, self._save_name, name="save-name")
                self._unsaved_name = accepted
            accepted = accepted or self.config.custom_name or ""
        if self.store(path, accepted, self.unit_of(path) or ""):
            self.signal_soon()
            self.ctx.emit(self.ctx.message(self._topic_of.get(path, path), accepted,
                                           {"service": self.bus_name, "source": "dbus"}))
        return 0
