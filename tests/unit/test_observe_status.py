"""Node status on MQTT: a new level at once, text changes at most every few seconds."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from flowengine.context import NodeStatus
from nodes.mqtt import observe
from nodes.mqtt.observe import Observer

EVERY = 0.2


class Recorder:
    """What the observer hands its broker connection (publish only)."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(topic_prefix="es-ESS", service_message_count=20)
        self.sent: list[tuple[str, str]] = []

        self.times: list[float] = []

    def publish(self, topic: str, payload: str, **_: Any) -> None:
        self.sent.append((topic.rsplit("/", 1)[1], json.loads(payload)["text"]))
        self.times.append(time.monotonic())


@pytest.fixture(autouse=True)
def short_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "STATUS_TEXT_EVERY_S", EVERY)


def test_a_live_text_goes_out_once_per_interval_with_its_latest_value() -> None:
    async def scenario() -> tuple[Recorder, float]:
        broker = Recorder()
        watcher = Observer(broker)  # type: ignore[arg-type]
        start = time.monotonic()
        for second in range(20):
            watcher.on_status("f", "ttg", NodeStatus("ok", f"{second} s to go", 1.0))
            watcher.on_status("f", "pv", NodeStatus("ok", f"{second * 100} W", 1.0))
            await asyncio.sleep(EVERY / 8)
        elapsed = time.monotonic() - start
        await asyncio.sleep(EVERY * 1.5)
        return broker, elapsed

    broker, elapsed = asyncio.run(scenario())
    sent = broker.sent
    assert sent[:2] == [("ttg", "0 s to go"), ("pv", "0 W")]  # the first at once
    assert sent[-2:] == [("ttg", "19 s to go"), ("pv", "1900 W")]
    for node in ("ttg", "pv"):
        times = [t for (n, _), t in zip(sent, broker.times, strict=True) if n == node]
        assert all(b - a >= EVERY * 0.95 for a, b in itertools.pairwise(times)), times
        assert len(times) <= elapsed / EVERY + 2 < 20
    waited = [node for node, _ in sent[2:]]
    assert waited == ["ttg", "pv"] * (len(waited) // 2)  # the waiting ones go together


def test_a_new_level_goes_out_at_once_and_replaces_a_waiting_text() -> None:
    async def scenario() -> list[tuple[str, str]]:
        broker = Recorder()
        watcher = Observer(broker)  # type: ignore[arg-type]
        watcher.on_status("f", "meter", NodeStatus("ok", "100 W", 1.0))
        watcher.on_status("f", "meter", NodeStatus("ok", "120 W", 1.0))  # waits
        watcher.on_status("f", "meter", NodeStatus("error", "no answer", 2.0))
        watcher.on_status("f", "meter", NodeStatus("ok", "130 W", 3.0))
        await asyncio.sleep(EVERY * 2)
        return broker.sent

    assert asyncio.run(scenario()) == [("meter", "100 W"), ("meter", "no answer"),
                                       ("meter", "130 W")]


def test_a_text_after_a_quiet_interval_goes_out_at_once() -> None:
    async def scenario() -> list[tuple[str, str]]:
        broker = Recorder()
        watcher = Observer(broker)  # type: ignore[arg-type]
        watcher.on_status("f", "ttg", NodeStatus("ok", "5 h", 1.0))
        await asyncio.sleep(EVERY * 1.2)
        watcher.on_status("f", "ttg", NodeStatus("ok", "4 h", 1.0))
        return list(broker.sent)

    assert asyncio.run(scenario()) == [("ttg", "5 h"), ("ttg", "4 h")]
