"""Publish what the runtime does to an MQTT broker: service messages and node status.

Switched on in the site file with `observe: [mqtt.main]`. Then, on that broker:

- `es-ESS/<flow>/ServiceMessages/<Type>/MessageNN` (retained): the flow's operational
  messages (started, stopped, node failed, safe state applied). `<Type>` is
  `Operational`, `Warning`, `Error` or `Critical`; each type of each flow is a ring of
  `service_message_count` slots (NN from 00), so the newest message overwrites the
  oldest. Where each ring stands is kept in the state directory, so after a restart the
  ring goes on instead of overwriting the newest messages from 00. The payload is
  `"<local time YYYY-mm-dd HH:MM:SS> | <text>"`, as in es-ESS.
- `es-ESS/<flow>/Status/<node>` (retained): the node's status as JSON,
  `{"level": "ok", "text": "...", "since": "<local time>"}`; level is idle, ok,
  warning or error. A new level goes out at once. A new text at the same level goes out
  at once too when the node's status was last sent `STATUS_TEXT_EVERY_S` (5 s) ago or
  more; otherwise it waits, and the latest text of every waiting node goes out together
  when the first of them has waited that long (on the next whole second of the
  runtime's clock, when its 1 s timers wake it anyway). Nodes whose text carries a live figure
  (time to go, the power of a poll) would otherwise cost a publish each second each.

`es-ESS` is the connection's `topic_prefix`. `es-ESS/$SYS/Status` (Online/Offline) is
published by the broker connection itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowengine.context import NodeStatus
    from flowengine.runtime import EngineEvent, Runtime
    from flowengine.state import NodeState
    from nodes.mqtt.broker import Broker

__all__ = ["STATUS_TEXT_EVERY_S", "Observer", "message_type"]

STATUS_TEXT_EVERY_S = 5.0


def message_type(level: int) -> str:
    """The es-ESS service message type of a log level."""
    if level >= logging.CRITICAL:
        return "Critical"
    if level >= logging.ERROR:
        return "Error"
    if level >= logging.WARNING:
        return "Warning"
    return "Operational"


def local_time(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))


class Observer:
    """Turns runtime events and node status changes into retained MQTT messages."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._prefix = broker.config.topic_prefix
        self._slots = broker.config.service_message_count
        self._width = max(2, len(str(self._slots - 1)))
        self._next: NodeState | None = None  # "<flow> <type>" -> next slot, persisted
        self._sent: dict[tuple[str, str], tuple[str, float]] = {}  # -> level, when (mono)
        self._waiting: dict[tuple[str, str], NodeStatus] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._origin = time.monotonic()  # the runtime clock's, once attached

    def attach(self, runtime: Runtime) -> None:
        # flow ids start with a letter or digit: "_runtime" is no flow's state directory
        self._next = runtime.state.node_state("_runtime", f"observe-{self._broker.name}")
        self._origin = runtime.clock.origin
        runtime.on_event(self.on_event)
        runtime.on_status(self.on_status)

    def on_event(self, event: EngineEvent) -> None:
        kind = message_type(event.level)
        ring = self._next
        key = f"{event.flow} {kind}"
        slot = ring.get(key, 0) if ring is not None else 0
        if not isinstance(slot, int) or not 0 <= slot < self._slots:
            slot = 0  # fewer slots than before, or a hand-edited file
        if ring is not None:
            ring.set(key, (slot + 1) % self._slots)
        topic = (f"{self._prefix}/{event.flow}/ServiceMessages/{kind}/"
                 f"Message{slot:0{self._width}d}")
        self._broker.publish(topic, f"{local_time(event.wall)} | {event.text}", qos=1,
                             retain=True)

    def on_status(self, flow: str, node: str, status: NodeStatus) -> None:
        key = (flow, node)
        sent = self._sent.get(key)
        now = time.monotonic()
        if sent is None or sent[0] != status.level or now - sent[1] >= STATUS_TEXT_EVERY_S:
            self._waiting.pop(key, None)
            self._publish_status(key, status, now)
            return
        self._waiting[key] = status  # the latest text wins
        if self._flush is None:  # on a whole second of the runtime's clock: with its
            due = sent[1] + STATUS_TEXT_EVERY_S  # 1 s timers, not a wake-up of its own
            step = min(1.0, STATUS_TEXT_EVERY_S)
            due = self._origin + math.ceil((due - self._origin) / step) * step
            self._flush = asyncio.get_running_loop().call_later(due - now, self._send_waiting)

    def _send_waiting(self) -> None:
        self._flush = None
        waiting, self._waiting = self._waiting, {}
        now = time.monotonic()
        for key, status in waiting.items():
            self._publish_status(key, status, now)

    def _publish_status(self, key: tuple[str, str], status: NodeStatus, now: float) -> None:
        self._sent[key] = (status.level, now)
        flow, node = key
        payload = json.dumps({"level": status.level, "text": status.text,
                              "since": local_time(status.since)}, ensure_ascii=False)
        self._broker.publish(f"{self._prefix}/{flow}/Status/{node}", payload, qos=0,
                             retain=True)
