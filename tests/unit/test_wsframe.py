"""RFC 6455 framing without I/O (flowengine.wsframe): the examples of the RFC itself,
every length form, and every rule a server's frame can break, with its close code."""

from __future__ import annotations

import base64

import pytest

from flowengine import wsframe
from flowengine.wsframe import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    ProtocolError,
    accept_key,
    check_upgrade,
    close_payload,
    encode_frame,
    mask,
    parse_close,
    parse_header,
    upgrade_request,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
RFC_MASK = bytes.fromhex("37fa213d")  # RFC 6455 §5.7


def answer(key: str = RFC_KEY, *extra: str, status: str = "HTTP/1.1 101 Switching Protocols",
           accept: str | None = None) -> bytes:
    lines = [status, "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept or accept_key(key)}", *extra]
    return "\r\n".join(lines).encode()


# -- the upgrade ---------------------------------------------------------------------------

def test_the_accept_key_is_the_rfcs_example() -> None:
    assert accept_key(RFC_KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_new_key_is_16_random_bytes_in_base64() -> None:
    keys = {wsframe.new_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)


def test_the_upgrade_request_asks_for_nothing_but_the_websocket() -> None:
    assert upgrade_request("192.168.1.60", 80, "/ws", RFC_KEY) == (
        b"GET /ws HTTP/1.1\r\nHost: 192.168.1.60\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n")


@pytest.mark.parametrize(("host", "port", "tls", "expected"), [
    ("wattpilot.lan", 8080, False, b"Host: wattpilot.lan:8080\r\n"),
    ("::1", 80, False, b"Host: [::1]\r\n"),
    ("fe80::1", 81, False, b"Host: [fe80::1]:81\r\n"),
    ("example.com", 443, True, b"Host: example.com\r\n"),
    ("example.com", 80, True, b"Host: example.com:80\r\n"),
])
def test_the_host_header_carries_the_port_unless_it_is_the_schemes(
        host: str, port: int, tls: bool, expected: bytes) -> None:
    assert expected in upgrade_request(host, port, "/", RFC_KEY, tls=tls)


def test_a_101_that_accepts_the_key_passes() -> None:
    check_upgrade(answer(), RFC_KEY)
    check_upgrade(answer("x", "connection: keep-alive", "Server: sim").replace(
        b"Connection: Upgrade", b"CONNECTION: upgrade").replace(
        b"Upgrade: websocket", b"upgrade: WebSocket"), "x")


@pytest.mark.parametrize(("head", "problem"), [
    (answer(status="HTTP/1.1 404 Not Found"), "the server answered 'HTTP/1.1 404 Not Found'"),
    (answer(status="HTTP/1.0 101 Switching"), "answered 'HTTP/1.0 101"),
    (b"garbage", "the server answered 'garbage'"),
    (answer(accept="c2FtZQ=="), "wrong Sec-WebSocket-Accept"),
    (answer().replace(b"Upgrade: websocket\r\n", b""), "lacks 'Upgrade: websocket'"),
    (answer().replace(b"Connection: Upgrade", b"Connection: close"),
     "lacks 'Connection: Upgrade'"),
    (answer(RFC_KEY, "Sec-WebSocket-Extensions: permessage-deflate"),
     "sets sec-websocket-extensions"),
    (answer(RFC_KEY, "Sec-WebSocket-Protocol: chat"), "sets sec-websocket-protocol"),
])
def test_an_answer_that_is_no_upgrade_is_refused(head: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem.replace("(", r"\(")):
        check_upgrade(head, RFC_KEY)


# -- masking and frames out ------------------------------------------------------------------

def test_a_masked_hello_is_the_rfcs_example() -> None:
    assert encode_frame(TEXT, b"Hello", RFC_MASK) == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1000, 4097])
def test_masking_twice_gives_the_payload_back(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    masked = mask(payload, RFC_MASK)
    assert len(masked) == size
    assert masked == bytes(b ^ RFC_MASK[i % 4] for i, b in enumerate(payload))
    assert mask(masked, RFC_MASK) == payload


@pytest.mark.parametrize(("size", "head"), [
    (125, bytes((0x82, 0x80 | 125))),
    (126, bytes((0x82, 0x80 | 126)) + (126).to_bytes(2, "big")),
    (65535, bytes((0x82, 0x80 | 126)) + (65535).to_bytes(2, "big")),
    (65536, bytes((0x82, 0x80 | 127)) + (65536).to_bytes(8, "big")),
])
def test_each_length_form_is_used_from_its_threshold(size: int, head: bytes) -> None:
    data = encode_frame(BINARY, b"\x00" * size, RFC_MASK)
    assert data[:len(head)] == head
    assert data[len(head):len(head) + 4] == RFC_MASK
    assert len(data) == len(head) + 4 + size


def test_a_fragment_has_no_fin_bit() -> None:
    assert encode_frame(TEXT, b"a", RFC_MASK, fin=False)[0] == TEXT
    assert encode_frame(CONTINUATION, b"a", RFC_MASK)[0] == 0x80


# -- frames in -------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    (b"\x81\x05Hello", (True, TEXT, 5, 2)),
    (b"\x01\x03Hel", (False, TEXT, 3, 2)),
    (b"\x80\x02lo", (True, CONTINUATION, 2, 2)),
    (b"\x89\x05Hello", (True, PING, 5, 2)),
    (b"\x8a\x00", (True, PONG, 0, 2)),
    (b"\x88\x02\x03\xe8", (True, CLOSE, 2, 2)),
    (b"\x82\x7e\x01\x00", (True, BINARY, 256, 4)),
    (b"\x82\x7f" + (65536).to_bytes(8, "big"), (True, BINARY, 65536, 10)),
])
def test_the_rfcs_server_frames_are_read(data: bytes, expected: tuple[bool, int, int, int]
                                         ) -> None:
    assert parse_header(data) == expected
    assert parse_header(bytearray(b"xyz" + data), 3) == (*expected[:3], expected[3] + 3)


@pytest.mark.parametrize("data", [b"", b"\x81", b"\x82\x7e\x01", b"\x82\x7f" + bytes(7)])
def test_an_incomplete_header_is_none(data: bytes) -> None:
    assert parse_header(data) is None
    assert parse_header(b"\x81\x00" + data, 2) is None


@pytest.mark.parametrize(("data", "problem"), [
    (b"\xc1\x00", "RSV bit"), (b"\xa1\x00", "RSV bit"), (b"\x91\x00", "RSV bit"),
    (b"\x83\x00", "reserved opcode 3"), (b"\x87\x00", "reserved opcode 7"),
    (b"\x8b\x00", "reserved opcode 11"), (b"\x8f\x00", "reserved opcode 15"),
    (b"\x81\x85" + RFC_MASK + b"\x7f\x9f\x4d\x51\x58", "masked frame"),
    (b"\x89\x7e\x00\x7e", "control frame"), (b"\x88\x7e\x00\x7e", "control frame"),
    (b"\x09\x00", "control frame"), (b"\x0a\x00", "control frame"),
    (b"\x82\x7f\x80" + bytes(7), "top bit"),
])
def test_a_frame_that_breaks_a_rule_is_a_protocol_error_1002(data: bytes, problem: str
                                                             ) -> None:
    with pytest.raises(ProtocolError, match=problem) as caught:
        parse_header(data)
    assert caught.value.code == 1002


def test_a_control_frame_of_125_bytes_is_allowed() -> None:
    assert parse_header(b"\x89\x7d") == (True, PING, 125, 2)


# -- close frames ----------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "expected"), [
    (b"", (1005, "")), (b"\x03\xe8", (1000, "")), (b"\x03\xe9bye", (1001, "bye")),
    (b"\x03\xf1", (1009, "")), ((3000).to_bytes(2, "big"), (3000, "")),
    ((4999).to_bytes(2, "big") + "é".encode(), (4999, "é")),
])
def test_a_close_frame_gives_its_code_and_reason(payload: bytes,
                                                 expected: tuple[int, str]) -> None:
    assert parse_close(payload) == expected


@pytest.mark.parametrize("payload", [b"\x03", *(code.to_bytes(2, "big") for code in (
    0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000))])
def test_a_close_frame_with_an_invalid_code_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid code") as caught:
        parse_close(payload)
    assert caught.value.code == 1002


def test_a_close_reason_that_is_not_utf_8_is_1007() -> None:
    with pytest.raises(ProtocolError, match="not UTF-8") as caught:
        parse_close(b"\x03\xe8\xff")
    assert caught.value.code == 1007


def test_our_close_payload_fits_a_control_frame() -> None:
    assert close_payload(1000) == b"\x03\xe8"
    assert close_payload(1009, "too big") == b"\x03\xf1too big"
    assert len(close_payload(1002, "x" * 300)) == 125
    assert parse_close(close_payload(1000, "é" * 100)) == (1000, "é" * 61)
