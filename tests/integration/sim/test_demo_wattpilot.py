"""The demo's Fronius Wattpilot: its flow logs into the simulated charger, and a car that
comes at its hour charges from the solar surplus the distributor grants it."""

from __future__ import annotations

import io
import os
import re

import pytest
from conftest import run

from flowengine.registry import Registry
from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim.broker import MqttBroker
from sim.demo import _demo, demo_files
from sim.site import SiteOptions
from sim.topic_watch import payload_number
from sim.wattpilot_watch import format_wattpilot

WP = "es-ESS/FroniusWattpilot"
REQUESTS = "es-ESS/SolarOverheadDistributor/Requests/Wattpilot"


def test_the_demo_wattpilot_charges_from_the_surplus_it_is_granted_once_a_car_is_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", ""))

    async def scenario() -> None:
        async with MqttBroker() as broker:
            seen: dict[str, list[float | None]] = {}
            watch = Broker("test-watch", MqttBrokerConfig(host="127.0.0.1", port=broker.port,
                                                          status_topic=None))
            watch.subscribe("es-ESS/#", lambda topic, payload, _r: seen.setdefault(
                topic, []).append(payload_number(payload)))
            await watch.start()
            # a sunny noon and a well charged battery (reservation 5000 - 40 * 80 = 1800 W),
            # a car 6 simulated minutes (3 s) after the start; no car at the EV station
            options = SiteOptions(speed=120.0, start_hour=12.0, soc=80.0,
                                  broker=("127.0.0.1", broker.port),
                                  wattpilot_start_hour=12.1)
            out = io.StringIO()

            def said(key: str) -> list[float | None]:
                return seen.get(key, [])
            try:
                assert await _demo(Registry.default(), demo_files(), options, 14.0, out) == 0
            finally:
                await watch.close()
        text = out.getvalue()
        assert ("device    Fronius Wattpilot on AC-out (websocket, Eco mode): ws://127.0.0.1:"
                in text), text
        assert "a car (60 kWh at 40 %) from 12:06 takes 10 kWh" in text
        news = [line for line in text.splitlines() if line.startswith("  [fronius-wattpilot]")]
        # logged in: the node's own status, never "not connected"
        assert news and all(re.match(r"  \[fronius-wattpilot\] +wattpilot: auto; ", line)
                            for line in news), news
        assert any("; charging; " in line and "; allowance " in line for line in news), news
        assert said(f"{WP}/Status")[0] == 0  # no car yet: disconnected
        assert 4 in said(f"{WP}/Status")  # the car is in: waiting for sun
        assert said(f"{REQUESTS}/Request")[0] == 0
        assert 3 * 16 * 230 in said(f"{REQUESTS}/Request")
        assert any(watts and watts >= 1380 for watts in said(f"{REQUESTS}/Allowance")), seen
        assert 2 in said(f"{WP}/Status")  # charging
        assert any(watts and watts > 0 for watts in said(f"{WP}/Ac/Power"))
        assert any(kwh and kwh > 0 for kwh in said(f"{WP}/Session/Energy"))
        lines = text.splitlines()
        assert any(line.startswith("[distributor] overhead ") and ", Wattpilot " in line
                   for line in lines)
        charger = [line for line in lines if line.startswith("[wattpilot] ")]
        assert charger[0] == "[wattpilot] auto, disconnected  0 W (0.0 A)  session 0.00 kWh"
        assert "[wattpilot] auto, waiting for sun  0 W (0.0 A)  session 0.00 kWh" in charger
        assert any(re.fullmatch(r"\[wattpilot\] auto, charging  [1-9]\d+ W \(\d+\.\d A\)  "
                                r"session \d\.\d\d kWh", line) for line in charger), charger
    run(scenario())


def test_the_wattpilot_line_names_mode_and_status_and_changes_with_power_not_energy() -> None:
    assert format_wattpilot(mode=1, status=2, power_w=1612.4, current_a=7.0,
                            session_kwh=0.254) == \
        "auto, charging  1612 W (7.0 A)  session 0.25 kWh"
    assert format_wattpilot(mode=None, status=99, power_w=None) == "?, 99  ? W"
