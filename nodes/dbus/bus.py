"""The D-Bus adapter: the only module that imports dbus-fast.

Everything else in `nodes.dbus` talks to a `BusConnection`: method calls with a
timeout, match rules counted per rule, decoded signals, and the server side of
Victron's `com.victronenergy.BusItem` interface for one `ItemTree`. Values cross
this module as JSON values; the variant typing Venus OS expects lives here:

- None (invalid) is an empty array of int32 (`ai`, `[]`), never 0;
- bool -> `b`, int -> `i` (`x` when it does not fit 32 bits), float -> `d`,
  str -> `s`, list -> an array (an empty list as `au`, since an empty `ai` means
  invalid), dict -> `a{sv}`.

Swapping the D-Bus library means rewriting this file only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dbus_fast import BusType, Message, MessageFlag, MessageType, NameFlag, RequestNameReply
from dbus_fast import Variant as _Variant
from dbus_fast.aio import MessageBus

from flowengine.errors import DeviceError, FlowEngineError, NotConnected
from flowengine.model import JsonValue
from nodes.dbus.explain import name_taken_text, no_bus_hint

__all__ = [
    "BUSITEM",
    "SETTINGS",
    "SETTINGS_INTERFACE",
    "SETTINGS_PATH",
    "SETTING_ERRORS",
    "BusCallError",
    "BusConnection",
    "ItemTree",
    "MethodHandler",
    "NameTaken",
    "OwnerChanged",
    "ServiceAbsent",
    "ValuesChanged",
    "decode",
    "encode",
    "open_bus",
    "resolve_address",
]

log = logging.getLogger(__name__)

BUSITEM = "com.victronenergy.BusItem"
_DBUS = "org.freedesktop.DBus"
_DBUS_PATH = "/org/freedesktop/DBus"
_INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
_ABSENT = frozenset({"org.freedesktop.DBus.Error.ServiceUnknown",
                     "org.freedesktop.DBus.Error.NameHasNoOwner"})
_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
_INT32 = range(-(2 ** 31), 2 ** 31)
_SIGNAL = MessageType.SIGNAL
_CALL = MessageType.METHOD_CALL
_PLAIN = frozenset("ybnqiuxtdsog")

CALL_TIMEOUT_S = 2.0
SETTINGS = "com.victronenergy.settings"
SETTINGS_INTERFACE = "com.victronenergy.Settings"
SETTINGS_PATH = "/Settings"
SETTING_ERRORS = {
    -1: "refused", -2: "a path part starts with '_'", -3: "unknown type",
    -4: "invalid path", -5: "it exists with another type", -6: "invalid default",
    -7: "default out of range", -8: "the path is a group", -9: "not under /Settings",
}
"""localsettings' answers to AddSetting (AddSettingError) and SetValue (-1)."""
SEND_BUFFER_BYTES = 4 * 1024 * 1024  # the kernel caps it at net.core.wmem_max


class BusCallError(DeviceError):
    """A D-Bus call came back with an error (its D-Bus name in `name`)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name
        self.text = text


class ServiceAbsent(BusCallError):
    """The called service is not on the bus."""


class NameTaken(FlowEngineError):
    """Another connection owns the bus name this service asked for."""


# -- values -------------------------------------------------------------------------------

def encode(value: JsonValue) -> _Variant:
    """A JSON value as the variant velib would send."""
    if value is None:
        return _Variant("ai", [])
    kind = type(value)
    if kind is float:
        return _Variant("d", value)
    if kind is bool:
        return _Variant("b", value)
    if kind is int:
        return _Variant("i" if value in _INT32 else "x", value)
    if kind is str:
        return _Variant("s", value)
    if isinstance(value, list | tuple):
        return _encode_list(list(value))
    if isinstance(value, dict):
        return _Variant("a{sv}", {str(k): encode(v) for k, v in value.items()})
    raise TypeError(f"cannot send {kind.__name__} over D-Bus")


def _encode_list(items: list[Any]) -> _Variant:
    if not items:
        return _Variant("au", [])
    kinds = {type(i) for i in items}
    if kinds == {int} and all(i in _INT32 for i in items):
        return _Variant("ai", items)
    if kinds <= {int, float} and bool not in kinds:
        return _Variant("ad", [float(i) for i in items])
    if kinds == {str}:
        return _Variant("as", items)
    return _Variant("av", [encode(i) for i in items])


def decode(value: Any) -> JsonValue:
    """A received D-Bus value as a JSON value; an empty `ai` becomes None (invalid)."""
    if type(value) is _Variant:
        signature = value.signature
        inner = value.value
        if signature in _PLAIN:
            return inner
        if signature == "ai" and not inner:
            return None
        return decode(inner)
    if isinstance(value, list | tuple):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): decode(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return list(value)
    return value


def _texts(changes: Mapping[str, Any]) -> dict[str, JsonValue]:
    """path -> value out of an ItemsChanged body (path -> {Value, Text})."""
    values: dict[str, JsonValue] = {}
    for path, item in changes.items():
        variant = item.get("Value")
        # what decode() does, without its call for the plain values of nearly every item
        values[path] = variant.value if type(variant) is _Variant and \
            variant.signature in _PLAIN else decode(variant)
    return values


# -- events --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ValuesChanged:
    """PropertiesChanged of one path, or ItemsChanged of many, from `sender` (unique name)."""

    sender: str
    values: dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class OwnerChanged:
    """A bus name got a new owner ("" when it left the bus)."""

    name: str
    owner: str


BusEvent = ValuesChanged | OwnerChanged


def _quick_init(cls: type[ValuesChanged]) -> None:
    """Give ValuesChanged an __init__ that fills its slots through their descriptors.

    The one dataclass generates calls object.__setattr__ for each field (what a frozen
    class must do), 1.8x as slow, and one event is made for every signal received. Same
    signature; assignment after __init__ still raises FrozenInstanceError (as the
    engine's Message does it, flowengine/model.py)."""
    set_sender, set_values = (cls.__dict__[name].__set__ for name in ("sender", "values"))

    def __init__(self: ValuesChanged, sender: str, values: dict[str, JsonValue]) -> None:
        set_sender(self, sender)
        set_values(self, values)

    cls.__init__ = __init__  # type: ignore[method-assign]


_quick_init(ValuesChanged)


MethodHandler = Callable[[str, list[JsonValue]], int]
"""(object path, decoded arguments) -> the `i` answered; raising BusCallError answers
with that D-Bus error instead."""
"""A method beside BusItem (e.g. settings' AddSetting): (object path, decoded args) -> int."""


class ItemTree(Protocol):
    """What a published service answers BusItem calls from."""

    def item(self, path: str) -> tuple[JsonValue, str] | None:
        """Value and text of a value path; None when `path` is not one."""

    def subtree(self, path: str) -> dict[str, tuple[JsonValue, str]]:
        """Relative path -> (value, text) of every item below `path` ("/" for all)."""

    def set_value(self, path: str, value: JsonValue) -> int:
        """0 accepted, 1 not writable or wrong type, 2 refused by the service's check."""

    def description(self, path: str) -> str: ...


# -- the connection -------------------------------------------------------------------------

def resolve_address(address: str | None) -> str | None:
    """The bus to use: the given address, else DBUS_SYSTEM_BUS_ADDRESS, else None (system)."""
    return address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or None


class BusConnection:
    """One connection to a bus; see the module docstring."""

    def __init__(self, bus: MessageBus, address: str | None) -> None:
        self._bus = bus
        self.address = address
        self.unique_name: str = bus.unique_name or ""
        # a tuple, replaced on change: every signal walks it without copying it first
        self._listeners: tuple[Callable[[BusEvent], None], ...] = ()
        self._matches: dict[str, int] = {}
        self._tree: ItemTree | None = None
        self._methods: dict[tuple[str, str], MethodHandler] = {}
        bus.add_message_handler(self._on_message)

    @property
    def connected(self) -> bool:
        return bool(self._bus.connected)

    # -- calls ---------------------------------------------------------------------------------
    async def call(self, destination: str, path: str, member: str, *, interface: str = BUSITEM,
                   signature: str = "", body: Iterable[Any] = (),
                   timeout_s: float = CALL_TIMEOUT_S) -> list[Any]:
        """Call a method; its reply body (raw). Raises BusCallError, ServiceAbsent, TimeoutError."""
        if not self._bus.connected:
            raise NotConnected("the D-Bus connection is closed")
        msg = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=list(body))
        async with asyncio.timeout(timeout_s):
            reply = await self._bus.call(msg)
        if reply.message_type is MessageType.ERROR:
            name = reply.error_name or "error"
            text = str(reply.body[0]) if reply.body else ""
            raise (ServiceAbsent if name in _ABSENT else BusCallError)(name, text)
        return list(reply.body)

    async def get_items(self, service: str, *, timeout_s: float = CALL_TIMEOUT_S,
                        ) -> dict[str, JsonValue]:
        """Every path -> value of a service, from root GetItems (root GetValue if missing)."""
        try:
            (items,) = await self.call(service, "/", "GetItems", timeout_s=timeout_s)
            return _texts(items)
        except BusCallError as exc:
            if isinstance(exc, ServiceAbsent) or exc.name != _UNKNOWN_METHOD:
                raise
        (tree,) = await self.call(service, "/", "GetValue", timeout_s=timeout_s)
        values = decode(tree)
        if not isinstance(values, dict):
            return {}
        return {"/" + path.lstrip("/"): value for path, value in values.items()}

    async def get_value(self, service: str, path: str, *,
                        timeout_s: float = CALL_TIMEOUT_S) -> JsonValue:
        (value,) = await self.call(service, path, "GetValue", timeout_s=timeout_s)
        return decode(value)

    async def set_value(self, service: str, path: str, value: JsonValue, *,
                        timeout_s: float = CALL_TIMEOUT_S) -> int:
        """SetValue; the service's answer (0 = accepted)."""
        (code,) = await self.call(service, path, "SetValue", signature="v",
                                  body=[encode(value)], timeout_s=timeout_s)
        return int(code)

    async def add_setting(self, path: str, default: JsonValue, *,
                          timeout_s: float = CALL_TIMEOUT_S) -> int:
        """Create the localsettings setting `path` (`/Settings/...`) unless it exists.

        AddSetting(group, name, default, type, min, max) on the object `/Settings`, as
        velib's settingsdevice calls it: on `/`, localsettings refuses any group outside
        `Settings/` (-9). The type follows `default` (s, f or i), without limits. Returns
        localsettings' code: 0 created or kept (an existing setting keeps its value),
        negative refused (`SETTING_ERRORS`)."""
        group, _, name = path.removeprefix(SETTINGS_PATH + "/").rpartition("/")
        if not path.startswith(SETTINGS_PATH + "/") or not name:
            raise ValueError(f"{path} is no path under {SETTINGS_PATH}/")
        kind = "s" if isinstance(default, str) else "f" if isinstance(default, float) else "i"
        zero = encode(0)
        (code,) = await self.call(SETTINGS, SETTINGS_PATH, "AddSetting",
                                  interface=SETTINGS_INTERFACE, signature="ssvsvv",
                                  body=[group, name, encode(default), kind, zero, zero],
                                  timeout_s=timeout_s)
        return int(code)

    async def list_names(self) -> list[str]:
        (names,) = await self.call(_DBUS, _DBUS_PATH, "ListNames", interface=_DBUS)
        return [str(n) for n in names]

    async def name_owner(self, name: str) -> str | None:
        """The unique name owning `name`, or None when nobody does."""
        try:
            (owner,) = await self.call(_DBUS, _DBUS_PATH, "GetNameOwner", interface=_DBUS,
                                       signature="s", body=[name])
        except ServiceAbsent:
            return None
        return str(owner)

    # -- signals -------------------------------------------------------------------------------
    async def add_match(self, rule: str) -> None:
        """Ask the bus for signals matching `rule` (counted: added once, removed at zero)."""
        count = self._matches.get(rule, 0)
        self._matches[rule] = count + 1
        if count == 0:
            try:
                await self.call(_DBUS, _DBUS_PATH, "AddMatch", interface=_DBUS,
                                signature="s", body=[rule])
            except BaseException:
                self._matches.pop(rule, None)
                raise

    async def remove_match(self, rule: str) -> None:
        count = self._matches.get(rule, 0)
        if count > 1:
            self._matches[rule] = count - 1
            return
        if self._matches.pop(rule, None) is not None and self._bus.connected:
            with contextlib.suppress(BusCallError, TimeoutError):
                await self.call(_DBUS, _DBUS_PATH, "RemoveMatch", interface=_DBUS,
                                signature="s", body=[rule])

    @property
    def match_rules(self) -> list[str]:
        return list(self._matches)

    def listen(self, listener: Callable[[BusEvent], None]) -> Callable[[], None]:
        """Call `listener` for every BusItem change signal and name owner change received."""
        self._listeners = (*self._listeners, listener)
        return lambda: self._unlisten(listener)

    def _unlisten(self, listener: Callable[[BusEvent], None]) -> None:
        listeners = list(self._listeners)
        listeners.remove(listener)  # ValueError when it is not listening, as before
        self._listeners = tuple(listeners)

    def _on_message(self, msg: Message) -> Message | bool | None:
        kind = msg.message_type
        if kind is _SIGNAL:
            listeners = self._listeners
            if listeners:
                event = _event_of(msg)
                if event is not None:
                    for listener in listeners:
                        listener(event)
            return None
        if kind is _CALL and self._tree is not None:
            return _answer(self._tree, msg, self._methods)
        return None

    # -- the server side ------------------------------------------------------------------
    def serve(self, tree: ItemTree, *,
              methods: Mapping[tuple[str, str], MethodHandler] | None = None) -> None:
        """Answer BusItem calls (and Introspect) on every path from `tree`; `methods`
        adds (interface, member) -> handler for calls beyond BusItem, answered with `i`."""
        self._tree = tree
        self._methods = dict(methods or {})

    async def request_name(self, name: str) -> None:
        """Own `name` now (never queue behind another owner); NameTaken when it is owned."""
        reply = await self._bus.request_name(name, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            raise NameTaken(await name_taken_text(self, name))

    async def release_name(self, name: str) -> None:
        if self._bus.connected:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await self._bus.release_name(name)

    def emit_properties_changed(self, path: str, value: JsonValue, text: str) -> None:
        self._signal(path, "PropertiesChanged", "a{sv}",
                     [{"Value": encode(value), "Text": _Variant("s", text)}])

    def emit_items_changed(self, items: Mapping[str, tuple[JsonValue, str]]) -> None:
        self._signal("/", "ItemsChanged", "a{sa{sv}}", [_items_body(items)])

    def _signal(self, path: str, member: str, signature: str, body: list[Any]) -> None:
        if self._bus.connected:
            self._bus.send(Message.new_signal(path, BUSITEM, member, signature, body))

    async def close(self) -> None:
        self._tree = None
        self._listeners = ()
        if self._bus.connected:
            self._bus.disconnect()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


def _event_of(msg: Message) -> BusEvent | None:
    member = msg.member
    if msg.interface == BUSITEM:
        if member == "PropertiesChanged":
            variant = msg.body[0].get("Value")
            if variant is not None:
                value = variant.value if type(variant) is _Variant and \
                    variant.signature in _PLAIN else decode(variant)
                return ValuesChanged(msg.sender or "", {msg.path or "/": value})
        elif member == "ItemsChanged":
            return ValuesChanged(msg.sender or "", _texts(msg.body[0]))
    elif member == "NameOwnerChanged" and msg.sender == _DBUS:
        name, _old, new = msg.body
        return OwnerChanged(str(name), str(new))
    return None


def _items_body(items: Mapping[str, tuple[JsonValue, str]]) -> dict[str, dict[str, _Variant]]:
    return {path: {"Value": _Variant("d", value) if type(value) is float else encode(value),
                   "Text": _Variant("s", text)}  # most values are floats: encode's first case
            for path, (value, text) in items.items()}


def _answer(tree: ItemTree, msg: Message,
            methods: Mapping[tuple[str, str], MethodHandler]) -> Message | bool | None:
    """The reply to one method call on a published service (None: not ours)."""
    interface, member, path = msg.interface, msg.member, msg.path or "/"
    handler = methods.get((interface or "", member or "")) if methods else None
    if handler is not None:
        try:
            reply: Message = Message.new_method_return(
                msg, "i", [handler(path, [decode(arg) for arg in msg.body])])
        except BusCallError as exc:  # the handler answers with a D-Bus error
            reply = Message.new_error(msg, exc.name, exc.text)
    elif interface == _INTROSPECTABLE and member == "Introspect":
        reply = Message.new_method_return(msg, "s", [_introspect(tree, path)])
    elif interface not in (BUSITEM, None):
        return None
    else:
        reply = _busitem_reply(tree, msg, member or "", path)
    if msg.flags & MessageFlag.NO_REPLY_EXPECTED:
        return True
    return reply


def _busitem_reply(tree: ItemTree, msg: Message, member: str, path: str) -> Message:
    item = tree.item(path)
    if member == "GetItems" and path == "/":
        everything = {"/" + rel: pair for rel, pair in tree.subtree("/").items()}
        return Message.new_method_return(msg, "a{sa{sv}}", [_items_body(everything)])
    if member == "SetValue":
        if msg.signature != "v":
            return Message.new_error(msg, _INVALID_ARGS, "SetValue takes one variant")
        if item is None:
            return Message.new_error(msg, _UNKNOWN_METHOD, f"{path} is not a value path")
        return Message.new_method_return(msg, "i", [tree.set_value(path, decode(msg.body[0]))])
    if member == "GetDescription":
        return Message.new_method_return(msg, "s", [tree.description(path)])
    if member not in ("GetValue", "GetText"):
        return Message.new_error(msg, _UNKNOWN_METHOD, f"no method {member} on {path}")
    if item is not None:
        if member == "GetValue":
            return Message.new_method_return(msg, "v", [encode(item[0])])
        return Message.new_method_return(msg, "s", [item[1]])
    below = tree.subtree(path)
    if not below and path != "/":
        return Message.new_error(msg, _UNKNOWN_OBJECT, f"no object {path}")
    if member == "GetValue":
        tree_value = {rel: encode(value) for rel, (value, _) in below.items()}
    else:
        tree_value = {rel: _Variant("s", text) for rel, (_, text) in below.items()}
    return Message.new_method_return(msg, "v", [_Variant("a{sv}", tree_value)])


_METHODS = """  <interface name="com.victronenergy.BusItem">
   <method name="GetValue"><arg direction="out" type="v"/></method>
   <method name="GetText"><arg direction="out" type="{text}"/></method>
{extra}  </interface>
"""


def _introspect(tree: ItemTree, path: str) -> str:
    item = tree.item(path)
    below = tree.subtree(path) if item is None else {}
    children = sorted({rel.split("/", 1)[0] for rel in below})
    extra = ""
    if item is not None:
        extra = ('   <method name="SetValue"><arg direction="in" type="v"/>'
                 '<arg direction="out" type="i"/></method>\n'
                 '   <method name="GetDescription"><arg direction="in" type="s"/>'
                 '<arg direction="in" type="i"/><arg direction="out" type="s"/></method>\n'
                 '   <signal name="PropertiesChanged"><arg type="a{sv}"/></signal>\n')
    elif path == "/":
        extra = ('   <method name="GetItems"><arg direction="out" type="a{sa{sv}}"/></method>\n'
                 '   <signal name="ItemsChanged"><arg type="a{sa{sv}}"/></signal>\n')
    parts = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
             ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n<node>\n',
             ' <interface name="org.freedesktop.DBus.Introspectable">\n'
             '  <method name="Introspect"><arg direction="out" type="s"/></method>\n'
             ' </interface>\n']
    if item is not None or below or path == "/":
        parts.append(_METHODS.replace("{text}", "s" if item is not None else "v")
                     .replace("{extra}", extra))
    parts += [f" <node name={_quoted(child)}/>\n" for child in children]
    parts.append("</node>\n")
    return "".join(parts)


_XML_ATTRIBUTE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _quoted(text: str) -> str:
    """`text` as a double-quoted XML attribute value (xml.sax.saxutils would import
    urllib.request, http.client and email for this: about 0.8 MB resident)."""
    return '"' + text.translate(_XML_ATTRIBUTE) + '"'


def _widen_send_buffer(bus: MessageBus) -> None:
    """Give bursts of signals room in the kernel, so writes rarely have to wait."""
    sock = getattr(bus, "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


class _WaitingSocket:
    """The bus socket as dbus-fast's writer sees it: a send that meets a full socket
    (EAGAIN) reports 0 bytes sent, so the writer waits until the socket is writable.

    dbus-fast (5.x) treats that error as fatal and drops the whole connection; with 0 it
    takes its own "partly sent, wait for writable" path. Everything else is the socket's.
    """

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: Any, *flags: int) -> int:
        try:
            return self._sock.send(data, *flags)
        except (BlockingIOError, InterruptedError):
            return 0

    def sendmsg(self, *args: Any) -> int:
        try:
            return self._sock.sendmsg(*args)
        except (BlockingIOError, InterruptedError):
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _wait_on_full_socket(bus: MessageBus) -> None:
    writer = getattr(bus, "_writer", None)
    sock = getattr(writer, "sock", None)
    if isinstance(sock, socket.socket):
        writer.sock = _WaitingSocket(sock)  # type: ignore[union-attr]
    else:  # a dbus-fast whose writer looks different: say so once, keep going
        log.warning("dbus-fast's writer has no socket to guard; a full socket may drop "
                    "the bus connection")


@contextlib.asynccontextmanager
async def open_bus(address: str | None = None, *,
                   timeout_s: float = CALL_TIMEOUT_S) -> AsyncIterator[BusConnection]:
    """Connect to `address` (see resolve_address); always disconnect on exit."""
    where = resolve_address(address)
    bus = MessageBus(bus_address=where) if where else MessageBus(bus_type=BusType.SYSTEM)
    try:
        async with asyncio.timeout(timeout_s):
            await bus.connect()
    except (OSError, TimeoutError) as exc:
        raise NotConnected(f"cannot connect to D-Bus at {where or 'the system bus'}: "
                           f"{exc or type(exc).__name__}; {no_bus_hint(where)}") from exc
    _widen_send_buffer(bus)
    _wait_on_full_socket(bus)
    connection = BusConnection(bus, where)
    try:
        yield connection
    finally:
        await connection.close()
