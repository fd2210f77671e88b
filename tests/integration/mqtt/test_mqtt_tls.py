"""TLS: verified by default; a wrong CA fails with a clear error; insecure warns."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import eventually, run
from testkit.mosquitto import Mosquitto, make_ca

from flowengine.errors import NotConnected
from flowengine.model import Secret
from nodes.mqtt.broker import MqttBrokerConfig, open_broker


def tls_config(server: Mosquitto, **options: object) -> MqttBrokerConfig:
    settings: dict[str, object] = {
        "host": "localhost", "port": server.port, "status_topic": "tls/$SYS/Status",
        "client_id": f"tls-{len(options)}", "reconnect_min_ms": 50, "reconnect_max_ms": 200,
        **options}
    return MqttBrokerConfig(**settings)  # type: ignore[arg-type]


def test_tls_with_the_right_ca_connects_and_publishes(tls_mosquitto: Mosquitto) -> None:
    assert tls_mosquitto.tls is not None
    config = tls_config(tls_mosquitto, ca_file=str(tls_mosquitto.tls["ca"]))

    async def scenario() -> None:
        async with open_broker("main", config) as broker:
            await broker.wait_connected(5)
            seen: list[bytes] = []
            broker.subscribe("tls/$SYS/Status", lambda t, p, r: seen.append(p))
            await eventually(lambda: seen == [b"Online"], timeout=5)
            assert broker.use_tls and broker.describe() == \
                f"connected to localhost:{tls_mosquitto.port}"
    run(scenario())


def test_tls_with_a_wrong_ca_fails_with_a_clear_error(
        tls_mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wrong = make_ca(tmp_path, "other")
    config = tls_config(tls_mosquitto, ca_file=str(wrong["ca"]), tls=True)

    async def scenario() -> str:
        async with open_broker("main", config) as broker:
            with pytest.raises(NotConnected) as failure:
                await broker.wait_connected(1.5)
            assert not broker.connected
            return str(failure.value)
    text = run(scenario())
    assert text.startswith(f"mqtt.main: not connected to localhost:{tls_mosquitto.port}: "
                           "TLS certificate not trusted (")
    assert "set ca_file to the CA that signed the broker's certificate" in text
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # logged once, not on every retry
    assert "TLS certificate not trusted" in errors[0].getMessage()


def test_tls_insecure_connects_without_checks_and_warns_on_connect(
        tls_mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    config = tls_config(tls_mosquitto, insecure=True)

    async def scenario() -> None:
        async with open_broker("main", config) as broker:
            await broker.wait_connected(5)
    run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("TLS certificate checks are off (insecure: true)" in w for w in warnings)


def test_missing_ca_file_is_reported_when_the_connection_opens(
        tls_mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = tls_config(tls_mosquitto, ca_file=str(tmp_path / "nope.pem"))

    async def scenario() -> None:
        async with open_broker("main", config):
            pass
    with pytest.raises(NotConnected, match=r"mqtt.main: cannot use ca_file '.*nope.pem'"):
        run(scenario())


def test_a_password_in_clear_text_to_another_host_is_warned_about_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """192.0.2.1 (TEST-NET-1) stands for a broker elsewhere on the network: no broker
    answers there, which does not matter: the warning comes with the first attempt, as
    the password would go out with it."""
    config = MqttBrokerConfig(host="192.0.2.1", username="esess",
                              password=Secret("mqtt_password", "s3cret"),
                              client_id="cleartext", connect_timeout_ms=100,
                              reconnect_min_ms=20, reconnect_max_ms=40)

    async def scenario() -> None:
        async with open_broker("main", config) as broker:
            await eventually(lambda: broker.attempts >= 3, timeout=5)
    run(scenario())
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
              and "clear text" in r.getMessage()]
    assert warned == ["mqtt.main: the password for 192.0.2.1:1883 goes over the network in "
                      "clear text (TLS is off); anyone on the way can read it. Set `tls: "
                      "true` (and `ca_file` for a private CA) in the site file, see \"MQTT "
                      "over TLS\" in docs/flows.md"]
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


def test_no_clear_text_warning_with_tls_or_for_this_machine(
        tls_mosquitto: Mosquitto, mosquitto: Mosquitto,
        caplog: pytest.LogCaptureFixture) -> None:
    assert tls_mosquitto.tls is not None
    secret = Secret("mqtt_password", "s3cret")
    configs = [tls_config(tls_mosquitto, ca_file=str(tls_mosquitto.tls["ca"]),
                          username="esess", password=secret),
               MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port, username="esess",
                                password=secret, client_id="loopback", status_topic=None)]

    async def scenario() -> None:
        for config in configs:
            async with open_broker("main", config) as broker:
                await broker.wait_connected(5)
    run(scenario())
    assert not [r for r in caplog.records if "clear text" in r.getMessage()]
