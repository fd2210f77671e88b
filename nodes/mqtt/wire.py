"""The bytes of a QoS 0 PUBLISH, made without gmqtt's generic packet builder.

Most of what the runtime publishes is QoS 0: one packet per value, and gmqtt makes each
through a `Message` object, a property table and a bytearray grown piece by piece (a
fifth of the CPU of a busy exporter, issue 17's profile). `publish_packet` makes the
same bytes (tests/unit/nodes/test_mqtt_wire.py compares them with gmqtt's for MQTT 3.1.1
and 5) from a remembered topic header and the payload. QoS 1 and 2 still go through
gmqtt: they need a packet id and a place in its store until the broker acknowledges.
"""

from __future__ import annotations

__all__ = ["MAX_REMAINING", "publish_packet"]

MAX_REMAINING = 268_435_455  # the largest remaining length MQTT can say (4 bytes)
TOPICS_KEPT = 1024  # topic headers remembered (then started anew)

_headers: dict[str, bytes] = {}  # topic -> its length (2 bytes) and UTF-8 text


def publish_packet(topic: str, payload: bytes | str, *, retain: bool, v5: bool) -> bytes:
    """A QoS 0, not-dup PUBLISH of `payload` to `topic`, without properties. Text is
    UTF-8 with lone surrogates replaced, as gmqtt writes it; ValueError when it is
    longer than MQTT allows."""
    header = _headers.get(topic)
    if header is None:
        raw = topic.encode("utf-8", errors="replace")
        if len(raw) > 0xFFFF:
            raise ValueError("topic too long")
        header = len(raw).to_bytes(2, "big") + raw
        if len(_headers) >= TOPICS_KEPT:
            _headers.clear()
        _headers[topic] = header
    body = payload.encode("utf-8", errors="replace") if isinstance(payload, str) else payload
    remaining = len(header) + len(body) + v5  # MQTT 5: a property length of 0
    first = b"\x31" if retain else b"\x30"
    if remaining < 0x80:
        length = remaining.to_bytes(1, "big")
    elif remaining <= MAX_REMAINING:
        length = _variable_length(remaining)
    else:
        raise ValueError("Payload too large.")
    if v5:
        return b"".join((first, length, header, b"\x00", body))
    return b"".join((first, length, header, body))


def _variable_length(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 0x80)
        if value:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)
