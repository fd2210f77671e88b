"""The simulated EV charging station: its D-Bus service, its controls, its load on AC-out."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import eventually, run
from dbus_fast import Variant
from testkit.dbus import VictronClient

from nodes.dbus.daemon import PrivateBus
from sim import EnergyModel, LoadProfile, ModelParams
from sim.venus import EVCHARGER, SimVenus

SYSTEM = "com.victronenergy.system"
QUIET = LoadProfile(noise=0.0, spike_chance=0.0)


def night_model() -> EnergyModel:
    """No sun, a quiet house, the battery at 60 %: the battery covers what is drawn."""
    return EnergyModel(ModelParams(seed=5, start_hour=22.0, initial_soc=60.0, load=QUIET))


def consumption(items: dict[str, Any], where: str = "Consumption") -> float:
    return sum(float(items[f"/Ac/{where}/L{n}/Power"]) for n in (1, 2, 3))


def test_the_charger_is_on_the_bus_unplugged_on_the_ac_output() -> None:
    async def scenario() -> None:
        model = night_model()
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            assert EVCHARGER == "com.victronenergy.evcharger.sim_ev"
            assert EVCHARGER in await client.names()
            items = await client.items(EVCHARGER)
            assert items["/DeviceInstance"] == 40 and items["/Connected"] == 1
            assert (items["/Status"], items["/Position"], items["/Mode"]) == (0, 0, 0)
            assert (items["/StartStop"], items["/Ac/Power"], items["/Current"]) == (0, 0.0, 0.0)
            assert items["/MaxCurrent"] == 16.0 and items["/SetCurrent"] == 10.0
    run(scenario())


def test_charging_at_7kw_draws_on_three_phases_and_counts_in_consumption() -> None:
    async def scenario() -> None:
        model = night_model()
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            ev = venus.evcharger
            assert ev is not None
            before = await client.items(SYSTEM)
            ev.plug_in()
            assert (await client.items(EVCHARGER))["/Status"] == 1
            ev.charge(7000.0)
            assert ev.charging
            items = await client.items(EVCHARGER)
            assert items["/Status"] == 2 and items["/StartStop"] == 1
            assert items["/Ac/Power"] == pytest.approx(7000.0, abs=0.05)
            assert [items[f"/Ac/L{n}/Power"] for n in (1, 2, 3)] == \
                pytest.approx([7000.0 / 3] * 3, abs=0.05)
            assert items["/Current"] == pytest.approx(10.14, abs=0.01)  # 7000 / 3 / 230 A
            await eventually(lambda: venus.system.values["/Ac/Consumption/L1/Power"] >
                             float(before["/Ac/Consumption/L1/Power"]) + 2000)
            after = await client.items(SYSTEM)
            assert consumption(after) - consumption(before) == pytest.approx(7000.0, abs=0.5)
            assert consumption(after, "ConsumptionOnOutput") == \
                pytest.approx(consumption(after), abs=0.01)
            # setpoint 0: the battery gives what the car takes (NoBatToEV's case), up to
            # its 5 kW; the grid the rest
            assert float(before["/Dc/Battery/Power"]) > -1000.0
            assert after["/Dc/Battery/Power"] == pytest.approx(-5000.0)
            assert sum(float(after[f"/Ac/Grid/L{n}/Power"]) for n in (1, 2, 3)) == \
                pytest.approx(consumption(after) - 5000.0, abs=0.5)
            model.step(3600)
            items = await client.items(EVCHARGER)
            assert items["/Session/Energy"] == pytest.approx(7.0, abs=0.001)
            assert items["/Ac/Energy/Forward"] == pytest.approx(7.0, abs=0.001)
            assert items["/Session/Time"] == 3600
            ev.stop()
            assert (await client.items(EVCHARGER))["/Status"] == 1
            assert model.snapshot.extra_w["evcharger"] == 0.0
            ev.unplug()
            items = await client.items(EVCHARGER)
            assert (items["/Status"], items["/Session/Energy"], items["/Ac/Power"]) == (0, 0, 0)
            assert items["/Ac/Energy/Forward"] == pytest.approx(7.0, abs=0.001)  # lifetime
    run(scenario())


def test_a_client_starts_stops_and_sets_the_current_over_dbus() -> None:
    async def scenario() -> None:
        model = night_model()
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            assert venus.evcharger is not None
            # no car: started, but nothing to charge
            assert await client.set_value(EVCHARGER, "/StartStop", Variant("i", 1)) == 0
            assert (await client.items(EVCHARGER))["/Status"] == 0
            venus.evcharger.plug_in()
            items = await client.items(EVCHARGER)
            assert items["/Status"] == 2
            assert items["/Ac/Power"] == pytest.approx(6900.0)  # 10 A x 230 V x 3
            assert await client.set_value(EVCHARGER, "/SetCurrent", Variant("d", 6.0)) == 0
            assert (await client.value(EVCHARGER, "/Ac/Power")) == pytest.approx(4140.0)
            assert model.snapshot.extra_w["evcharger"] == pytest.approx(4140.0)
            # above /MaxCurrent is refused (2), a wrong type too (1)
            assert await client.set_value(EVCHARGER, "/SetCurrent", Variant("d", 20.0)) == 2
            assert await client.set_value(EVCHARGER, "/SetCurrent", Variant("s", "6")) == 1
            assert await client.set_value(EVCHARGER, "/Position", Variant("i", 1)) == 1
            assert await client.set_value(EVCHARGER, "/Mode", Variant("i", 1)) == 0
            assert await client.set_value(EVCHARGER, "/StartStop", Variant("i", 0)) == 0
            items = await client.items(EVCHARGER)
            assert (items["/Status"], items["/Ac/Power"], items["/Mode"]) == (1, 0.0, 1)
    run(scenario())


def test_a_single_phase_charger_leaves_l2_and_l3_invalid() -> None:
    async def scenario() -> None:
        from sim.venus.evcharger import SimEvCharger
        model = night_model()
        async with PrivateBus() as address, SimVenus(model, address=address, evcharger=None) \
                as venus, VictronClient(address) as client:
            assert venus.evcharger is None
            assert EVCHARGER not in await client.names()
            ev = SimEvCharger(model, name="com.victronenergy.evcharger.one", phases=(1,))
            await ev.start(address)
            try:
                ev.charge(3680.0)
                items = await client.items("com.victronenergy.evcharger.one")
                assert items["/Ac/L1/Power"] == pytest.approx(3680.0)
                assert (items["/Ac/L2/Power"], items["/Ac/L3/Power"]) == (None, None)
                assert items["/SetCurrent"] == 16.0
            finally:
                await ev.close()
    run(scenario())
