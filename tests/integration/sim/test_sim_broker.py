"""The demo's embedded MQTT broker, checked with our gmqtt adapter and with raw packets."""

from __future__ import annotations

import asyncio
import struct

from conftest import eventually, run

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.broker import MqttBroker, topic_matches


def client(name: str, port: int, **options: object) -> Broker:
    return Broker(name, MqttBrokerConfig(host="127.0.0.1", port=port, client_id=name,
                                         reconnect_min_ms=50, **options))  # type: ignore[arg-type]


def connect_packet(client_id: str, *, will: tuple[str, bytes] | None = None,
                   keepalive: int = 60) -> bytes:
    flags = 0x02 | (0x04 | 0x20 if will else 0)  # clean session, retained will
    body = struct.pack("!H", 4) + b"MQTT" + bytes([4, flags]) + struct.pack("!H", keepalive)
    body += struct.pack("!H", len(client_id)) + client_id.encode()
    if will:
        body += struct.pack("!H", len(will[0])) + will[0].encode()
        body += struct.pack("!H", len(will[1])) + will[1]
    return bytes([0x10, len(body)]) + body


def test_wildcards_match_as_mqtt_says() -> None:
    assert topic_matches("es-ESS/#", "es-ESS/demo/Soc")
    assert topic_matches("es-ESS/+/Soc", "es-ESS/demo/Soc")
    assert not topic_matches("es-ESS/+", "es-ESS/demo/Soc")
    assert topic_matches("#", "a") and not topic_matches("#", "$SYS/x")
    assert topic_matches("a/#", "a")


def test_publish_subscribe_with_wildcards_qos_and_retained() -> None:
    async def scenario() -> None:
        async with MqttBroker() as broker:
            pub, sub = client("pub", broker.port, status_topic=None), \
                client("sub", broker.port, status_topic=None)
            await pub.start()
            await pub.wait_connected(5)
            pub.publish("es-ESS/demo/Soc", "51.2", retain=True)
            pub.publish("es-ESS/demo/Gone", "x", retain=True)
            pub.publish("es-ESS/demo/Gone", "", retain=True)  # clears the retained message
            await eventually(lambda: "es-ESS/demo/Soc" in broker.retained)
            got: list[tuple[str, bytes, bool]] = []
            await sub.start()
            sub.subscribe("es-ESS/+/Soc", lambda t, p, r: got.append((t, p, r)), qos=1)
            sub.subscribe("es-ESS/#", lambda t, p, r: got.append((t, p, r)))
            await sub.wait_connected(5)
            await eventually(lambda: len(got) >= 2)
            assert set(got) == {("es-ESS/demo/Soc", b"51.2", True)}
            got.clear()
            pub.publish("es-ESS/demo/Soc", "51.3", qos=1)
            pub.publish("other/topic", "no")
            await eventually(lambda: len(got) >= 2)
            await asyncio.sleep(0.05)
            assert got == [("es-ESS/demo/Soc", b"51.3", False)] * 2  # one per handler
            await pub.close()
            await sub.close()
    run(scenario())


def test_a_client_that_vanishes_leaves_its_last_will() -> None:
    async def scenario() -> None:
        async with MqttBroker() as broker:
            watcher = client("watch", broker.port, status_topic=None)
            got: list[tuple[str, bytes]] = []
            watcher.subscribe("device/#", lambda t, p, r: got.append((t, p)))
            await watcher.start()
            await watcher.wait_connected(5)
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
            writer.write(connect_packet("dev", will=("device/status", b"Offline")))
            assert await reader.readexactly(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
            writer.write(b"\xc0\x00")  # PINGREQ
            assert await reader.readexactly(2) == b"\xd0\x00"
            writer.transport.abort()  # gone without DISCONNECT
            await eventually(lambda: got == [("device/status", b"Offline")])
            assert broker.retained["device/status"].payload == b"Offline"
            # a clean DISCONNECT sends no will
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
            writer.write(connect_packet("dev2", will=("device/other", b"Offline")))
            await reader.readexactly(4)
            writer.write(b"\xe0\x00")
            await eventually(lambda: "dev2" not in broker.sessions)
            writer.close()
            assert "device/other" not in broker.retained
            await watcher.close()
    run(scenario())


def test_status_online_and_offline_of_our_adapter_arrive() -> None:
    async def scenario() -> None:
        async with MqttBroker() as broker:
            flows = client("flows", broker.port)
            await flows.start()
            await flows.wait_connected(5)
            await eventually(lambda: getattr(
                broker.retained.get("es-ESS/$SYS/Status"), "payload", None) == b"Online")
            await flows.close()
            await eventually(lambda: broker.retained["es-ESS/$SYS/Status"].payload == b"Offline")
            await eventually(lambda: broker.sessions == {})  # its DISCONNECT comes after
    run(scenario())
