"""The input queue: telemetry merges by topic, events and kept messages queue in order."""

from __future__ import annotations

from flowengine.mailbox import Mailbox
from flowengine.model import KeptMessage, Message


def drain(box: Mailbox) -> list[tuple[str, str, object]]:
    out = []
    while (item := box.get_nowait()) is not None:
        port, msg = item
        out.append((port, msg.topic, msg.value))
    return out


def test_telemetry_keeps_the_latest_value_of_a_topic_in_its_place() -> None:
    box = Mailbox({"in": "telemetry"})
    for topic, value in [("a", 1), ("b", 2), ("a", 3)]:
        box.put("in", Message(topic, value))
    assert drain(box) == [("in", "a", 3), ("in", "b", 2)]


def test_kept_messages_on_a_telemetry_port_are_all_kept_in_order() -> None:
    box = Mailbox({"in": "telemetry"})
    box.put("in", Message("a", 1))
    for value in (2, 3):
        box.put("in", KeptMessage("a", value))
    box.put("in", Message("a", 4))  # a reading again: merges with the first reading only
    box.put("in", KeptMessage("a", 5))
    assert drain(box) == [("in", "a", 4), ("in", "a", 2), ("in", "a", 3), ("in", "a", 5)]


def test_a_full_box_drops_the_oldest_kept_message_and_counts_it() -> None:
    box = Mailbox({"in": "telemetry"}, capacity=4)
    for value in range(7):
        box.put("in", KeptMessage("a", value))
    assert box.dropped == 3
    assert [value for _, _, value in drain(box)] == [3, 4, 5, 6]


def test_messages_made_from_a_kept_one_are_kept_too() -> None:
    event = KeptMessage("a", 1)
    assert event.with_value(2, "b").keep and event.with_meta(x=1).keep
    assert type(event.with_value(2)) is KeptMessage
    assert not Message("a", 1).with_value(2).keep
