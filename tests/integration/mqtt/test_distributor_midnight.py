"""The distributor's energy statistics roll over at local midnight (Europe/Berlin here,
not UTC), on the runtime's clock: a manual one, moved across the night, with a real
mosquitto for the allowance publishers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import run

from flowengine.clock import ManualClock
from flowengine.connections import Connections
from flowengine.testing import FlowHarness

from .mqttkit import Mosquitto

ROOT = "es-ESS/SolarOverheadDistributor"
# 2026-06-15 20:00 CEST (18:00 UTC): four hours before the local midnight
EVENING = 1_781_546_400.0

FLOW = """
id: sod
nodes:
  - id: distributor
    type: energy.distributor
    cycle_s: 3600
    expire_cycles: 100
    fake_bms: false
"""


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


def test_energy_today_becomes_yesterday_at_local_midnight(mosquitto: Mosquitto,
                                                          berlin: None) -> None:
    async def scenario() -> None:
        h = FlowHarness(FLOW)
        h.clock = ManualClock(wall_start=EVENING)
        h.runtime.clock = h.clock
        h.runtime.connections = Connections(h.registry.connection_kinds, {"mqtt": {"main": {
            "host": mosquitto.host, "port": mosquitto.port, "status_topic": None,
            "client_id": "midnight"}}})
        async with h:
            for topic, value in (("grid_l1", -3000.0), ("battery_power", 0.0), ("soc", 50.0)):
                await h.send("distributor", topic, value)
            for name, value in (("IsAutomatic", "true"), ("Request", "1000"),
                                ("StepSize", "1000"), ("Consumption", "1000")):
                await h.send("distributor", f"{ROOT}/Requests/heater/{name}", value)

            def energy(name: str) -> object:
                found = [m.value for m in h.messages("distributor", "energy")
                         if m.topic == f"heater/Energy/{name}"]
                return found[-1] if found else None

            await h.advance(3600 * 1000)  # 21:00: one hour at 1000 W
            assert energy("energyToday") == 1000.0
            await h.advance(3 * 3600 * 1000)  # 00:00 local: four hours counted, then midnight
            await h.advance(3600 * 1000)  # 01:00
            assert energy("energyYesterday") == 4000.0, h.messages("distributor", "energy")
            assert energy("energyToday") == 1000.0
            assert energy("energyTotal") == 5000.0
            assert energy("runtimeYesterday") == 4 * 3600
    run(scenario())
