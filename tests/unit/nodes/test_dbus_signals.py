"""How the D-Bus adapter turns received BusItem signals into events: the values as
`decode` gives them (whatever the variant), one event for every listener."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant

from nodes.dbus.bus import BUSITEM, BusConnection, BusEvent, ValuesChanged, decode

SENDER = ":1.42"
VARIANTS = [
    Variant("d", -1234.5), Variant("i", 7), Variant("x", 2 ** 40), Variant("u", 3),
    Variant("b", True), Variant("s", "ESS"), Variant("ai", []), Variant("ai", [1, 2]),
    Variant("au", []), Variant("as", ["a", "b"]), Variant("ay", b"\x01\x02"),
    Variant("a{sv}", {"x": Variant("d", 1.5), "y": Variant("ai", [])}),
    Variant("av", [Variant("i", 1), Variant("s", "two")]),
]


class _Bus:
    """What BusConnection needs of dbus-fast's MessageBus to take messages in."""

    unique_name = ":1.1"
    connected = True

    def add_message_handler(self, handler: Any) -> None:
        pass


def _signal(path: str, member: str, signature: str, body: list[Any]) -> Message:
    return Message(path=path, interface=BUSITEM, member=member, signature=signature,
                   body=body, message_type=MessageType.SIGNAL, sender=SENDER, serial=1)


def _events(*messages: Message) -> list[BusEvent]:
    connection = BusConnection(_Bus(), None)  # type: ignore[arg-type]
    events: list[BusEvent] = []
    connection.listen(events.append)
    for msg in messages:
        connection._on_message(msg)
    return events


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.signature)
def test_a_properties_changed_value_is_what_decode_makes_of_it(variant: Variant) -> None:
    events = _events(_signal("/Ac/Power", "PropertiesChanged", "a{sv}",
                             [{"Value": variant, "Text": Variant("s", "text")}]))
    assert events == [ValuesChanged(SENDER, {"/Ac/Power": decode(variant)})]


def test_items_changed_values_are_what_decode_makes_of_them() -> None:
    body = {f"/Path/{n}": {"Value": v, "Text": Variant("s", "")}
            for n, v in enumerate(VARIANTS)}
    body["/No/Value"] = {"Text": Variant("s", "---")}
    (event,) = _events(_signal("/", "ItemsChanged", "a{sa{sv}}", [body]))
    expected = {f"/Path/{n}": decode(v) for n, v in enumerate(VARIANTS)}
    assert event == ValuesChanged(SENDER, {**expected, "/No/Value": None})
    assert expected["/Path/6"] is None and expected["/Path/10"] == [1, 2]


def test_a_properties_changed_without_a_value_is_no_event() -> None:
    assert _events(_signal("/Ac/Power", "PropertiesChanged", "a{sv}",
                           [{"Text": Variant("s", "1 W")}])) == []


def test_a_values_changed_event_is_frozen() -> None:
    event = ValuesChanged(sender=SENDER, values={"/Soc": 55.0})
    assert event == ValuesChanged(SENDER, {"/Soc": 55.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.sender = ":1.43"  # type: ignore[misc]


def test_a_listener_removed_while_a_signal_is_handed_out_still_gets_that_one() -> None:
    """Every listener listening when a signal came in gets it, however the listeners
    change meanwhile; from the next signal on, the ones listening then."""
    connection = BusConnection(_Bus(), None)  # type: ignore[arg-type]
    seen: list[str] = []
    stops: dict[str, Any] = {}

    def first(event: BusEvent) -> None:
        seen.append("first")
        if "second" in stops:
            stops.pop("second")()

    stops["first"] = connection.listen(first)
    stops["second"] = connection.listen(lambda event: seen.append("second"))
    signal = _signal("/Soc", "PropertiesChanged", "a{sv}", [{"Value": Variant("d", 1.0)}])
    connection._on_message(signal)
    connection._on_message(signal)
    assert seen == ["first", "second", "first"]
    stops["first"]()
    with pytest.raises(ValueError):
        stops["first"]()  # not listening any more
    connection._on_message(signal)
    assert seen == ["first", "second", "first"]
