"""mqtt.in decoding, mqtt.out encoding, topic matching and backoff: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from flowengine.model import Message, Secret
from flowengine.schema import build_config
from nodes.mqtt.broker import (
    CONNECTION_KINDS,
    MqttBrokerConfig,
    backoff_s,
    cleartext_password_warning,
    is_loopback,
    topic_matches,
)
from nodes.mqtt.in_ import DecodeError, make_decoder, parse_path
from nodes.mqtt.out import encode_value, exporter_topic


@pytest.mark.parametrize(("kind", "raw", "value"), [
    ("auto", b"21.5", 21.5), ("auto", b"on", "on"), ("auto", b'{"a": 1}', {"a": 1}),
    ("number", b" 42 ", 42), ("number", b"-1.5e3", -1500.0), ("string", b"42", "42"),
    ("boolean", b"ON", True), ("boolean", b"0", False), ("json", b"null", None),
    ("auto", b"NaN", "NaN"), ("auto", b"1e400", "1e400"),  # no number a flow can carry
])
def test_payload_kinds_decode(kind: str, raw: bytes, value: object) -> None:
    assert make_decoder(kind)(raw) == value


@pytest.mark.parametrize(("kind", "raw"), [
    ("number", b"warm"), ("number", b"nan"), ("boolean", b"maybe"), ("json", b"{"),
    ("string", b"\xff"), ("json", b"[NaN]"), ("json", b"1e400"), ("json", b'{"a":"\\ud800"}'),
    ("json", b"123456789012345678901234567890"),
])
def test_undecodable_payloads_raise_decode_error(kind: str, raw: bytes) -> None:
    with pytest.raises(DecodeError):
        make_decoder(kind)(raw)


DEEP = [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000]


@pytest.mark.parametrize("raw", DEEP, ids=["open", "closed", "objects"])
@pytest.mark.parametrize(("kind", "path"), [("auto", None), ("json", None), ("number", "a")])
def test_json_nested_too_deeply_is_a_decode_error(kind: str, path: str | None,
                                                  raw: bytes) -> None:
    with pytest.raises(DecodeError, match="JSON nested too deeply"):
        make_decoder(kind, path)(raw)


def test_json_paths_in_both_spellings() -> None:
    doc = b'{"StatusSNS": {"ENERGY": {"Power": [5, 7]}}, "a/b": 1}'
    assert make_decoder("auto", "StatusSNS.ENERGY.Power[1]")(doc) == 7
    assert make_decoder("auto", "/StatusSNS/ENERGY/Power/0")(doc) == 5
    assert make_decoder("auto", "/a~1b")(doc) == 1
    assert parse_path("a.b[2].c") == ("a", "b", 2, "c")
    with pytest.raises(DecodeError, match="no 'Voltage'"):
        make_decoder("auto", "StatusSNS.ENERGY.Voltage")(doc)


def test_a_json_path_value_must_be_of_the_payload_kind() -> None:
    temperature = make_decoder("number", "temperature")
    assert temperature(b'{"temperature": 21.5}') == 21.5
    assert temperature(b'{"temperature": "21.5"}') == 21.5
    for raw in (b'{"temperature": true}', b'{"temperature": null}',
                b'{"temperature": {"value": 1}}', b'{"temperature": [21]}'):
        with pytest.raises(DecodeError, match="not a number"):
            temperature(raw)
    with pytest.raises(DecodeError, match="NaN is not a JSON number"):
        temperature(b'{"temperature": NaN}')
    state = make_decoder("boolean", "on")
    assert [state(b'{"on": true}'), state(b'{"on": 0}'), state(b'{"on": "off"}')] == \
        [True, False, False]
    with pytest.raises(DecodeError, match="not a boolean"):
        state(b'{"on": 2}')
    assert make_decoder("auto", "a")(b'{"a": [1, 2]}') == [1, 2]


def test_regex_with_a_group_extracts_and_without_one_matches() -> None:
    power = make_decoder("number", regex=r'"apower":([^,]+),')
    assert power(b'{"id":0,"apower":1234.5,"voltage":230.1}') == 1234.5
    with pytest.raises(DecodeError, match="no match"):
        power(b'{"id":0}')
    is_on = make_decoder("auto", regex=r'"ison":\s*true')
    assert (is_on(b'{"ison": true}'), is_on(b'{"ison": false}')) == (True, False)
    with pytest.raises(Exception, match="2 capture groups"):
        make_decoder("auto", regex="(a)(b)")


def test_plain_payloads_are_texts_or_json() -> None:
    assert [encode_value(v) for v in ("on", 21.5, 3, True, None, [1, 2])] == \
        ["on", "21.5", "3", "true", "null", "[1,2]"]


def test_exporter_star_appends_the_path_without_its_slash() -> None:
    assert exporter_topic("Grid/", Message("/Ac/L1/Power", 1)) == "Grid/Ac/L1/Power"
    assert exporter_topic("Grid/", Message("l1", 1, meta={"path": "/Ac/L1/Power"})) == \
        "Grid/Ac/L1/Power"


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False), ("a/#", "a", True),
    ("a/#", "a/b/c", True), ("+/b", "a/b/c", False), ("#", "$SYS/x", False),
    ("$SYS/#", "$SYS/x", True), ("a/b", "a/b", True), ("a/+", "a", False),
])
def test_topic_filters_match_as_mqtt_defines(topic_filter: str, topic: str,
                                             expected: bool) -> None:
    assert topic_matches(tuple(topic_filter.split("/")), topic.split("/")) is expected


def test_default_backoff_is_back_within_3_s_of_the_broker_and_waits_at_least_1_5_s() -> None:
    config = MqttBrokerConfig()
    low = [backoff_s(n, config.reconnect_min_ms, config.reconnect_max_ms, rand=lambda: 0.0)
           for n in range(40)]
    high = [backoff_s(n, config.reconnect_min_ms, config.reconnect_max_ms, rand=lambda: 1.0)
            for n in range(40)]
    assert low[:5] == [0.25, 0.5, 1.0, 1.5, 1.5] and high[:5] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert max(high) == 3.0 and min(low[3:]) == 1.5  # for as long as the broker stays away


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    low = [backoff_s(n, 500, 30000, rand=lambda: 0.0) for n in range(8)]
    high = [backoff_s(n, 500, 30000, rand=lambda: 1.0) for n in range(8)]
    assert low == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert high == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_the_gx_broker_needs_no_entry_and_gets_no_status_topic_of_ours() -> None:
    kind = CONNECTION_KINDS[0]
    local = build_config(kind.config_class, kind.defaults["local"])
    assert (local.host, local.port, local.status_topic) == ("localhost", 1883, None)
    assert build_config(kind.config_class, {"host": "broker.lan"}).status_topic == \
        "es-ESS/$SYS/Status"  # the user's own broker does get Online/Offline


@pytest.mark.parametrize(("host", "local"), [
    ("localhost", True), ("LOCALHOST.", True), ("127.0.0.1", True), ("127.8.9.10", True),
    ("::1", True), ("[::1]", True), ("::ffff:127.0.0.1", True), ("broker.lan", False),
    ("192.168.1.5", False), ("10.0.0.1", False), ("fe80::1", False), ("localhost.lan", False),
])
def test_loopback_hosts_are_this_machine(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_a_password_without_tls_to_another_host_is_warned_about() -> None:
    password = Secret("mqtt_password", "s3cret")
    remote = MqttBrokerConfig(host="broker.lan", username="esess", password=password)
    text = cleartext_password_warning("main", remote)
    assert text is not None
    assert text.startswith("mqtt.main: the password for broker.lan:1883 goes over the "
                           "network in clear text (TLS is off)")
    assert "tls: true" in text and "s3cret" not in text
    for quiet in (MqttBrokerConfig(host="broker.lan", password=password, tls=True),
                  MqttBrokerConfig(host="broker.lan", password=password, ca_file="/ca.pem"),
                  MqttBrokerConfig(host="127.0.0.1", password=password),
                  MqttBrokerConfig(host="broker.lan", username="esess")):
        assert cleartext_password_warning("main", quiet) is None
    lint = CONNECTION_KINDS[0].lint
    assert lint is not None
    assert lint("main", remote) == [text]
    insecure = lint("main", MqttBrokerConfig(host="broker.lan", password=password,
                                             insecure=True))
    assert insecure == ["mqtt.main: insecure: true turns off the TLS certificate checks; "
                        "anyone on the way can pose as broker.lan"]
    assert lint("local", build_config(CONNECTION_KINDS[0].config_class,
                                      CONNECTION_KINDS[0].defaults["local"])) == []


def test_a_broker_that_refuses_the_login_is_asked_again_slowly() -> None:
    from gmqtt.mqtt.handler import MQTTConnectError  # type: ignore[import-untyped]

    from nodes.mqtt.broker import Broker

    broker = Broker("main", MqttBrokerConfig(host="broker.lan"))
    late = 10  # attempts: well past the doubling
    down = [broker._retry_delay_s(ConnectionRefusedError(), late) for _ in range(50)]
    busy = [broker._retry_delay_s(MQTTConnectError(3), late) for _ in range(50)]
    refused = [broker._retry_delay_s(MQTTConnectError(code), late)
               for code in (4, 5, 134, 135) for _ in range(20)]
    assert all(1.5 <= d <= 3.0 for d in down + busy)
    assert all(15.0 <= d <= 30.0 for d in refused)


def test_subscribers_of_a_topic_follow_every_subscribe_and_unsubscribe() -> None:
    from nodes.mqtt.broker import ROUTES_KEPT, Broker, MqttBrokerConfig

    broker = Broker("main", MqttBrokerConfig())
    got: list[tuple[str, str]] = []

    def handler(name: str) -> Any:
        return lambda topic, payload, retained: got.append((name, topic))

    def arrive(topic: str) -> None:
        broker._on_message(None, topic, b"1", 0, {})

    wild = broker.subscribe("in/+", handler("wild"))
    arrive("in/a")
    exact = broker.subscribe("in/a", handler("exact"))  # after in/a was seen once
    arrive("in/a")
    assert got == [("wild", "in/a"), ("exact", "in/a"), ("wild", "in/a")]  # exact first
    got.clear()
    wild.cancel()
    arrive("in/a")
    arrive("in/b")
    assert got == [("exact", "in/a")]
    got.clear()
    exact.cancel()
    arrive("in/a")
    assert got == []
    broker.subscribe("#", handler("all"))
    for n in range(ROUTES_KEPT + 10):  # more topics than are remembered: all still arrive
        arrive(f"t/{n}")
    assert len(got) == ROUTES_KEPT + 10 and len(broker._routes) <= ROUTES_KEPT
