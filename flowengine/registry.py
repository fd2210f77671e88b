"""Registry: node type name -> class, connection kind name -> how to open it.

Built-in node modules are listed in BUILTIN_MODULES; other packages add theirs
through the entry point group "esess.nodes" (the entry point names a module; read by
`flowengine.plugins`, which does not need `importlib.metadata`). A
Registry is an ordinary object passed in: importing a module registers nothing.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from flowengine.connections import ConnectionKind
from flowengine.errors import UnknownNodeType, shown
from flowengine.model import SourceMark
from flowengine.node import Node
from flowengine.plugins import entry_points
from flowengine.schema import did_you_mean

__all__ = ["BUILTIN_MODULES", "ENTRY_POINT_GROUP", "Registry"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "esess.nodes"

BUILTIN_MODULES = (
    "nodes.logic.timer",
    "nodes.logic.formula",
    "nodes.logic.join",
    "nodes.logic.filter",
    "nodes.logic.change",
    "nodes.logic.delay",
    "nodes.logic.log",
    "nodes.dbus.link",
    "nodes.dbus.service",
    "nodes.dbus.source",
    "nodes.dbus.write",
    "nodes.mqtt.broker",
    "nodes.mqtt.in_",
    "nodes.mqtt.out",
    "nodes.http.session",
    "nodes.http.poll",
    "nodes.devices.shelly",
    "nodes.energy.counter",
    "nodes.energy.distributor",
    "nodes.energy.switch",
    "nodes.energy.setpoint",
    "nodes.energy.nobattoev",
    "nodes.energy.charge_reducer",
    "nodes.energy.wattpilot",
)


class Registry:
    """The node types and connection kinds a runtime knows."""

    def __init__(self) -> None:
        self.node_types: dict[str, type[Node[Any]]] = {}
        self.connection_kinds: dict[str, ConnectionKind] = {}

    @classmethod
    def default(cls, *, plugins: bool = True) -> Registry:
        """Built-in node types, plus installed plugins unless `plugins` is False."""
        registry = cls()
        registry.add_modules(BUILTIN_MODULES)
        if plugins:
            registry.add_entry_points()
        return registry

    def add(self, node_class: type[Node[Any]]) -> None:
        name = node_class.type_name
        if not name:
            raise TypeError(f"{node_class.__name__} is not marked with @node_type")
        known = self.node_types.get(name)
        if known is not None and known is not node_class:
            raise ValueError(f"node type '{name}' is defined twice: "
                             f"{known.__module__} and {node_class.__module__}")
        self.node_types[name] = node_class

    def add_connection_kind(self, kind: ConnectionKind) -> None:
        self.connection_kinds[kind.name] = kind

    def add_module(self, module: ModuleType) -> None:
        """Every node class defined in `module`, and its CONNECTION_KINDS if any."""
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Node) and obj.type_name and obj.__module__ == module.__name__:
                self.add(obj)
        for kind in getattr(module, "CONNECTION_KINDS", ()):
            self.add_connection_kind(kind)

    def add_modules(self, names: Iterable[str]) -> None:
        for name in names:
            self.add_module(importlib.import_module(name))

    def add_entry_points(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken plugin must not take the built-ins down
                log.error("node plugin '%s' (%s) failed to load: %s", ep.name, ep.value, exc)
                continue
            if isinstance(loaded, ModuleType):
                self.add_module(loaded)
            elif inspect.isclass(loaded) and issubclass(loaded, Node):
                self.add(loaded)
            else:
                log.error("node plugin '%s' is neither a module nor a node class", ep.name)

    def get(self, name: str, *, mark: SourceMark | None = None) -> type[Node[Any]]:
        if not isinstance(name, str):  # `type: ${var}` with a var that is null or a number
            raise UnknownNodeType(f"a node type is a text, not {shown(name)}", mark=mark,
                                  hint="see `esess-flowctl list-nodes` for the known types")
        found = self.node_types.get(name)
        if found is None:
            hint = did_you_mean(name, self.node_types) or \
                "see `esess-flowctl list-nodes` for the known types"
            raise UnknownNodeType(f"unknown node type '{name}'", mark=mark, hint=hint)
        return found
