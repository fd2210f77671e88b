"""nodes.mqtt.wire.publish_packet makes the bytes gmqtt's PublishPacket makes (QoS 0)."""

from __future__ import annotations

from types import SimpleNamespace

import gmqtt  # type: ignore[import-untyped]
import pytest
from gmqtt.mqtt.constants import MQTTv50, MQTTv311  # type: ignore[import-untyped]
from gmqtt.mqtt.package import PublishPacket  # type: ignore[import-untyped]

from nodes.mqtt import wire

CASES = [
    ("out/1", "12.5", False), ("out/1", "12.5", True), ("N/abc/system/0/Dc", "", False),
    ("a", b"\x00\xff raw", True), ("temp/küche/°C", "21 °C ✓", False),
    ("bad\udcffsurrogate", "lone \ud800 half", False), ("x" * 300, "y" * 130, False),
    ("t", "z" * 20_000, True), ("t", "q" * 2_100_000, False),
]


@pytest.mark.parametrize("version", [MQTTv311, MQTTv50])
@pytest.mark.parametrize(("topic", "payload", "retain"), CASES)
def test_the_bytes_are_gmqtts(topic: str, payload: str | bytes, retain: bool,
                              version: int) -> None:
    protocol = SimpleNamespace(proto_ver=version)
    _, expected = PublishPacket.build_package(
        gmqtt.Message(topic, payload, qos=0, retain=retain), protocol)
    got = wire.publish_packet(topic, payload, retain=retain, v5=version >= MQTTv50)
    assert got == bytes(expected)
    assert wire.publish_packet(topic, payload, retain=retain, v5=version >= MQTTv50) == got


def test_more_than_mqtt_can_carry_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert wire.MAX_REMAINING == 2**28 - 1
    monkeypatch.setattr(wire, "MAX_REMAINING", 1000)  # not 256 MB of payload in a test
    assert len(wire.publish_packet("t", b"\x00" * 997, retain=False, v5=False)) == 1003
    with pytest.raises(ValueError, match="too large"):
        wire.publish_packet("t", b"\x00" * 998, retain=False, v5=False)
    with pytest.raises(ValueError, match="topic too long"):
        wire.publish_packet("t" * 70_000, "1", retain=False, v5=False)


def test_the_topic_headers_kept_are_bounded() -> None:
    for n in range(wire.TOPICS_KEPT + 50):
        assert wire.publish_packet(f"t/{n}", "1", retain=False, v5=False).endswith(b"1")
    assert len(wire._headers) <= wire.TOPICS_KEPT
