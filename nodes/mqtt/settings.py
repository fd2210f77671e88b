"""What a broker connection is configured with (`connections: mqtt:` in the site file),
what `validate` warns about in it, and the reconnect delays its settings give.

Apart from `Broker` (nodes/mqtt/broker.py), so that what only reads settings or needs
the backoff (the Wattpilot's websocket) does not load gmqtt.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass

from flowengine.model import Secret
from flowengine.node import option

__all__ = ["MqttBrokerConfig", "backoff_s", "cleartext_password_warning", "is_loopback",
           "lint_broker"]


@dataclass(frozen=True, kw_only=True)
class MqttBrokerConfig:
    host: str = option("broker host name or address", default="localhost",
                       example="broker.lan")
    port: int | None = option("TCP port (default 1883, or 8883 with TLS)", default=None,
                              minimum=1, maximum=65535, example=1883)
    username: str | None = option("user name", default=None, example="esess")
    password: Secret | None = option("password (use !secret)", default=None)
    client_id: str | None = option(
        "MQTT client id (default: esess-flows-<connection>-<host name>)", default=None)
    keepalive_s: int = option("keep-alive interval in seconds", default=60, minimum=5,
                              maximum=3600)
    tls: bool = option("connect with TLS (also on when ca_file or insecure is set)",
                       default=False)
    ca_file: str | None = option(
        "CA certificate (PEM) that signed the broker's certificate (default: system CAs)",
        default=None, example="/data/es-ESS-flows/broker-ca.pem")
    insecure: bool = option(
        "TLS without certificate checks (anyone can pose as the broker; warned on connect)",
        default=False)
    status_topic: str | None = option(
        "where Online / Offline (the last will) is published, retained; null for none",
        default="es-ESS/$SYS/Status")
    topic_prefix: str = option(
        "first topic level of service messages and node status (site `observe:`)",
        default="es-ESS")
    service_message_count: int = option(
        "slots in each flow's ring of service messages per type", default=50, minimum=1,
        maximum=1000)
    outbox_size: int = option(
        "while disconnected, keep the latest value of at most this many topics",
        default=1000, minimum=1)
    send_buffer_kb: int = option(
        "most KiB waiting to be sent to a slow broker; beyond it only the latest value "
        "of each topic waits (in the outbox)", default=256, minimum=16)
    reconnect_min_ms: int = option("first reconnect delay (each wait is 50-100 % of the "
                                   "delay)", default=500, minimum=10)
    reconnect_max_ms: int = option(
        "longest reconnect delay: bounds how long after the broker's return the "
        "connection is back", default=3000, minimum=100)
    connect_timeout_ms: int = option("give up on one connection attempt after",
                                     default=5000, minimum=100)


def backoff_s(attempt: int, min_ms: int, max_ms: int,
              rand: Callable[[], float] = random.random) -> float:
    """Delay before reconnect `attempt` (0-based): doubling from min, capped, 50-100 %."""
    ceiling: float = min(max_ms, min_ms * 2 ** min(attempt, 30))
    return ceiling * (0.5 + 0.5 * rand()) / 1000


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine: localhost, 127.0.0.0/8 or ::1 (names are not
    looked up, except localhost)."""
    name = host.strip().rstrip(".").strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def cleartext_password_warning(name: str, config: MqttBrokerConfig) -> str | None:
    """The warning for a connection that sends its password in clear text over the
    network (no TLS, a broker that is not on this machine), or None."""
    if config.password is None or config.tls or config.ca_file is not None \
            or config.insecure or is_loopback(config.host):
        return None
    return (f"mqtt.{name}: the password for {config.host}:{config.port or 1883} goes over "
            "the network in clear text (TLS is off); anyone on the way can read it. Set "
            "`tls: true` (and `ca_file` for a private CA) in the site file, see \"MQTT "
            "over TLS\" in docs/flows.md")


def lint_broker(name: str, config: MqttBrokerConfig) -> list[str]:
    """Warnings about one broker connection for `validate` (it still passes)."""
    warnings = []
    cleartext = cleartext_password_warning(name, config)
    if cleartext is not None:
        warnings.append(cleartext)
    if config.insecure:
        warnings.append(f"mqtt.{name}: insecure: true turns off the TLS certificate "
                        f"checks; anyone on the way can pose as {config.host}")
    return warnings
