"""The two ways `energy.switch` reaches an on/off consumer: HTTP URLs or MQTT topics.

Each adapter switches (`switch`), says how its state and power are read (HTTP: `read`,
asked by the node; MQTT: messages on the status and power topics, handed to the
node's callbacks), and builds the guardian's safe action (the off URL, the off publish)
in the format `flowengine.guardian.actions` checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowengine.errors import NotConnected

if TYPE_CHECKING:
    from nodes.energy.switch import HttpSwitchConfig, MqttSwitchConfig
    from nodes.http.session import JsonClient
    from nodes.mqtt.broker import Broker, Subscription

__all__ = ["HttpOnOff", "MqttOnOff", "extract_power"]


def extract_power(pattern: re.Pattern[str] | None, text: str) -> float | None:
    """The power in a device's text: the regex's group (or, without a regex, the whole
    text) as a finite number; None when it is not there or no number."""
    if pattern is not None:
        match = pattern.search(text)
        if match is None or match.group(1) is None:
            return None
        text = match.group(1)
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class HttpOnOff:
    """A consumer switched by GETting its on and off URLs (a Shelly Gen1 relay, ...)."""

    def __init__(self, config: HttpSwitchConfig, client: JsonClient, *,
                 on_pattern: re.Pattern[str], power_pattern: re.Pattern[str] | None) -> None:
        self.config = config
        self._client = client
        self._on = on_pattern
        self._power = power_pattern
        self.timeout_s = config.timeout_ms / 1000
        self.has_power = power_pattern is not None

    def where(self) -> str:
        return self.config.status_url

    async def switch(self, on: bool, *, timeout_s: float | None = None) -> None:
        """GET the on or off URL; DeviceUnreachable when it fails."""
        url = self.config.on_url if on else self.config.off_url
        await self._client.get_text(url, timeout_s=timeout_s or self.timeout_s)

    async def read(self) -> tuple[bool, float | None]:
        """(on, power): on when the regex is found in the status answer; the power from
        the power URL (or the status answer) while on, None without a power regex or
        when it is not in the answer. DeviceUnreachable when the device fails."""
        cfg = self.config
        text = await self._client.get_text(cfg.status_url, timeout_s=self.timeout_s)
        on = self._on.search(text) is not None
        if not on or self._power is None:
            return on, None
        if cfg.power_url is not None and cfg.power_url != cfg.status_url:
            text = await self._client.get_text(cfg.power_url, timeout_s=self.timeout_s)
        return on, extract_power(self._power, text)

    def guardian_action(self) -> dict[str, Any]:
        cfg = self.config
        action: dict[str, Any] = {"type": "http.get", "url": cfg.off_url,
                                  "timeout_s": self.timeout_s}
        if cfg.auth == "basic" and cfg.password is not None:
            action.update(username=cfg.username, password=cfg.password.reveal())
        return action


class MqttOnOff:
    """A consumer switched by publishing to its on and off topics; its state (and power)
    arrive on topics of its own."""

    def __init__(self, config: MqttSwitchConfig, broker: Broker, *,
                 on_pattern: re.Pattern[str], power_pattern: re.Pattern[str] | None) -> None:
        self.config = config
        self._broker = broker
        self._on = on_pattern
        self._power = power_pattern
        self.has_power = config.power_topic is not None
        self._subs: list[Subscription] = []

    def where(self) -> str:
        return self.config.status_topic

    def listen(self, state: Callable[[bool | None], None],
               power: Callable[[float | None, str], None]) -> None:
        """`state(on)` for each status message (None for an empty one); `power(watts,
        text)` for each power message (watts None when it holds no number)."""
        cfg = self.config

        def on_state(_topic: str, payload: bytes, _retained: bool) -> None:
            text = payload.decode("utf-8", errors="replace")
            state(None if not text.strip() else self._on.search(text) is not None)

        def on_power(_topic: str, payload: bytes, _retained: bool) -> None:
            text = payload.decode("utf-8", errors="replace")
            power(extract_power(self._power, text), text)

        self._subs.append(self._broker.subscribe(cfg.status_topic, on_state, qos=1))
        if cfg.power_topic is not None:
            self._subs.append(self._broker.subscribe(cfg.power_topic, on_power, qos=1))

    def close(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs.clear()

    async def switch(self, on: bool, *, timeout_s: float | None = None,
                     strict: bool = False) -> None:
        """Publish the on or off value. While the broker is away it waits in the outbox
        and goes out on the reconnect, unless `strict` (the safe state: it must go now,
        or the guardian does it)."""
        cfg = self.config
        if strict and not self._broker.connected:
            raise NotConnected(f"not connected to {self._broker.address}")
        topic, value = (cfg.on_topic, cfg.on_value) if on else (cfg.off_topic, cfg.off_value)
        self._broker.publish(topic, value, qos=cfg.qos, retain=False)

    def guardian_action(self) -> dict[str, Any]:
        cfg = self.config
        return self._broker.safe_publish_action(cfg.off_topic, cfg.off_value, qos=cfg.qos,
                                   retain=False)
