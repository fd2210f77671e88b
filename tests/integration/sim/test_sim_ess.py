"""The simulated Multiplus on ESS as a D-Bus client sees it: the setpoint's ramp, the
feed-in settings, grid loss, and the system paths systemcalc leaves invalid."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import eventually, run
from dbus_fast import Variant
from testkit.dbus import VictronClient

from nodes.dbus.daemon import PrivateBus
from sim import EnergyModel, EssSettings, LoadProfile, ModelDriver, ModelParams
from sim.venus import SimVenus

SYSTEM = "com.victronenergy.system"
SETTINGS = "com.victronenergy.settings"
VEBUS = "com.victronenergy.vebus.ttyS4"
HUB4 = "com.victronenergy.hub4"
MPPT = "com.victronenergy.solarcharger.ttyS5"
SETPOINT = "/Settings/CGwacs/AcPowerSetPoint"
DC_FEED_IN = "/Settings/CGwacs/OvervoltageFeedIn"
MAX_FEED_IN = "/Settings/CGwacs/MaxFeedInPower"
PREVENT_FEEDBACK = "/Settings/CGwacs/PreventFeedback"
QUIET = LoadProfile(noise=0.0, spike_chance=0.0)


def total(items: dict[str, Any], template: str) -> float:
    return sum(float(items[template.format(n)]) for n in (1, 2, 3))


def balance(items: dict[str, Any]) -> tuple[float, float]:
    """(grid + pv, load + battery) from what systemcalc shows; PV paths may be invalid."""
    pv = sum(float(items.get(f"/Ac/PvOn{where}/L{n}/Power") or 0.0)
             for where in ("Grid", "Output", "Genset") for n in (1, 2, 3))
    pv += float(items.get("/Dc/Pv/Power") or 0.0)
    grid = sum(float(items.get(f"/Ac/Grid/L{n}/Power") or 0.0) for n in (1, 2, 3))
    load = total(items, "/Ac/Consumption/L{}/Power")
    return grid + pv, load + float(items["/Dc/Battery/Power"])


def test_a_setpoint_step_reaches_the_grid_within_seconds_monotonic_without_overshoot() -> None:
    async def scenario() -> None:
        # 8 h, half-full battery: room to charge 2 kW more; 8 simulated s per real second
        model = EnergyModel(ModelParams(seed=5, start_hour=8.0, load=QUIET, time_scale=8.0))
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            await client.follow(SYSTEM)
            seen = await client.items(SYSTEM)
            assert total(seen, "/Ac/Grid/L{}/Power") == pytest.approx(0.0, abs=0.5)
            series: list[tuple[float, dict[str, Any]]] = []  # (simulated time, system paths)
            done = len(client.changed())

            def settled() -> bool:
                nonlocal done
                changes = client.changed()
                for change in changes[done:]:
                    seen.update(change)
                    series.append((model.snapshot.time_s, dict(seen)))
                done = len(changes)
                return bool(series) and series[-1][0] - start >= 24.0
            async with ModelDriver(model, interval_s=0.05):
                start = model.snapshot.time_s
                assert await client.set_value(SETTINGS, SETPOINT, Variant("d", 2000.0)) == 0
                await eventually(settled, timeout=10.0)
            grids = [(t - start, total(items, "/Ac/Grid/L{}/Power")) for t, items in series]
            assert len(grids) > 30 and grids[0][1] < 1000.0  # seen on its way
            # monotonic (within the 0.1 W rounding of each phase), never past 2000 W
            assert all(b >= a - 0.3 for (_, a), (_, b) in itertools.pairwise(grids))
            assert max(g for _, g in grids) <= 2000.0 + 0.3
            # on its way after 1 s, within 5 % after 5 s, there after 20 s (tau 1.5 s)
            assert [g for t, g in grids if t <= 1.0][-1] < 1500.0
            assert all(g >= 1900.0 for t, g in grids if t >= 5.0)
            assert all(g == pytest.approx(2000.0, abs=0.5) for t, g in grids if t >= 20.0)
            # at each moment the battery took the difference: the books balance on the bus
            for _, items in series:
                supplied, used = balance(items)
                assert supplied == pytest.approx(used, abs=1.0)
    run(scenario())


def test_feed_in_settings_are_there_with_the_types_of_venus_os() -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=5, start_hour=8.0))
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            items = await client.items(SETTINGS)
            assert items[DC_FEED_IN] == 1  # this site feeds in DC-coupled PV
            assert items[MAX_FEED_IN] == -1.0 and isinstance(items[MAX_FEED_IN], float)
            assert items[PREVENT_FEEDBACK] == 0
            assert await client.set_value(SETTINGS, DC_FEED_IN, Variant("i", 2)) == -1
            assert await client.set_value(SETTINGS, MAX_FEED_IN, Variant("i", 800)) == 0
            assert await client.value(SETTINGS, MAX_FEED_IN) == 800.0
            assert model.settings.max_feed_in_w == 800.0
            assert await client.set_value(SETTINGS, MAX_FEED_IN, Variant("d", -1.0)) == 0
            assert model.settings.max_feed_in_w is None
    run(scenario())


def test_with_dc_feed_in_off_a_negative_setpoint_exports_only_the_ac_pv_surplus() -> None:
    async def scenario() -> None:
        # noon, battery at 60 %: AC PV beyond the house, DC PV, room in the battery
        model = EnergyModel(ModelParams(seed=5, start_hour=12.5, initial_soc=60.0, load=QUIET))
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            assert await client.set_value(SETTINGS, SETPOINT, Variant("d", -6000.0)) == 0
            s = model.step(30)
            assert s.grid_w == pytest.approx(-6000.0, abs=0.01)  # feed-in on: the battery helps
            assert s.battery_w < 0
            assert await client.set_value(SETTINGS, DC_FEED_IN, Variant("i", 0)) == 0
            s = model.step(1)
            surplus = s.pv_ac_w - s.load_w
            assert surplus > 1000
            assert s.grid_w == pytest.approx(-surplus, abs=0.01)  # no battery, no DC PV out
            assert s.battery_w == pytest.approx(s.pv_dc_w)  # DC PV charges the battery
            # at night there is nothing to export
            night = EnergyModel(ModelParams(seed=5, start_hour=22.0, load=QUIET),
                                settings=EssSettings(setpoint_w=-2000.0, dc_feed_in=False))
            dark = night.step(10)
            assert dark.grid_w == pytest.approx(0.0, abs=1e-6)
            assert dark.battery_w == pytest.approx(-dark.load_w)
    run(scenario())


def test_max_feed_in_power_and_prevent_feedback_limit_export_and_hold_back_pv() -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=5, start_hour=12.5, initial_soc=100.0, load=QUIET))
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            free = model.step(1)
            assert free.grid_w < -3000 and free.pv_limited_w == 0  # full: all PV goes out
            assert await client.set_value(SETTINGS, MAX_FEED_IN, Variant("d", 1000.0)) == 0
            s = model.step(1)
            assert s.grid_w == pytest.approx(-1000.0, abs=0.01)
            assert s.pv_dc_w == 0.0 and s.pv_limited_w > 0  # the MPPTs first, then AC PV
            assert s.grid_w + s.pv_w == pytest.approx(s.load_w + s.battery_w)
            await eventually(lambda: venus.hub4.values.get("/PvPowerLimiterActive") == 1)
            assert await client.value(HUB4, "/PvPowerLimiterActive") == 1
            mppt = await client.items(MPPT)
            assert (mppt["/MppOperationMode"], mppt["/Yield/Power"]) == (1, 0.0)  # held back
            assert await client.set_value(SETTINGS, PREVENT_FEEDBACK, Variant("i", 1)) == 0
            s = model.step(1)
            assert s.grid_w == pytest.approx(0.0, abs=0.01)
            assert s.pv_ac_w == pytest.approx(s.load_w)
    run(scenario())


def test_grid_loss_puts_the_multi_in_island_mode() -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=5, start_hour=12.5, initial_soc=60.0, load=QUIET),
                            settings=EssSettings(setpoint_w=-1000.0))
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            assert (await client.items(SYSTEM))["/Ac/ActiveIn/NumberOfPhases"] == 3
            s = model.lose_grid()
            assert s.grid_w == 0.0 and s.grid_l == (0.0, 0.0, 0.0)
            assert s.pv_ac_w == 0.0  # the PV inverter on AC-in has no grid
            assert s.battery_w == pytest.approx(s.pv_w - s.load_w)
            await eventually(lambda: venus.system.values["/Ac/ActiveIn/Source"] == 240)
            items = await client.items(SYSTEM)
            assert items["/Ac/ActiveIn/NumberOfPhases"] is None
            assert items["/Ac/ActiveIn/Source"] == 240
            assert [items[f"/Ac/Grid/L{n}/Power"] for n in (1, 2, 3)] == [0.0] * 3  # PV: dead
            assert items["/Dc/Battery/Power"] == pytest.approx(s.battery_w, abs=0.05)
            vebus = await client.items(VEBUS)
            assert (vebus["/Ac/ActiveIn/ActiveInput"], vebus["/Ac/ActiveIn/Connected"]) == \
                (240, 0)
            # the grid comes back: the Multiplus ramps from 0 W to the setpoint again
            model.restore_grid()
            s = model.step(1)
            assert -1000.0 < s.grid_target_w < -300.0
            assert model.step(30).grid_w == pytest.approx(-1000.0, abs=0.01)
            await eventually(lambda: venus.system.values["/Ac/ActiveIn/NumberOfPhases"] == 3)
    run(scenario())


def test_grid_loss_without_pv_on_the_grid_side_leaves_the_grid_invalid() -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=5, start_hour=12.5, pv_ac_position="output"))
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            s = model.lose_grid()
            assert s.pv_ac_w > 0  # on the output the PV inverter runs on the Multiplus's grid
            await eventually(lambda: venus.system.values["/Ac/ActiveIn/Source"] == 240)
            items = await client.items(SYSTEM)
            assert [items[f"/Ac/Grid/L{n}/Power"] for n in (1, 2, 3)] == [None] * 3
            assert items["/Ac/Grid/NumberOfPhases"] is None
            assert items["/Ac/ActiveIn/NumberOfPhases"] is None
    run(scenario())


def test_an_island_overload_switches_the_output_off() -> None:
    model = EnergyModel(ModelParams(seed=5, start_hour=22.0, load=QUIET))
    oven = model.add_load("oven", 9000.0, phases=(1, 2, 3), on=True)
    s = model.lose_grid()
    assert not s.output_on and s.load_w == 0.0 and s.extra_w == {"oven": 0.0}
    oven.on = False
    s = model.refresh()
    assert s.output_on and s.battery_w == pytest.approx(-s.load_w)


@pytest.mark.parametrize("position", ["grid", "output", "genset"])
def test_system_pv_paths_are_invalid_where_there_is_no_pv(position: str) -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=5, start_hour=12.0, pv_ac_position=position))
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            items = await client.items(SYSTEM)
            for where in ("Grid", "Output", "Genset"):
                there = where.lower() == position
                for n in (1, 2, 3):
                    value = items[f"/Ac/PvOn{where}/L{n}/Power"]
                    assert (value is not None and value > 0) if there else value is None
                assert items[f"/Ac/PvOn{where}/NumberOfPhases"] == (3 if there else None)
            assert items["/Dc/Pv/Power"] > 0
            assert items["/Ac/ActiveIn/NumberOfPhases"] == 3
            # systemcalc's DC PV is the MPPTs' battery side, V x I
            mppt = await client.items(MPPT)
            assert mppt["/Yield/Power"] == items["/Dc/Pv/Power"]
            assert mppt["/Dc/0/Voltage"] * mppt["/Dc/0/Current"] == \
                pytest.approx(items["/Dc/Pv/Power"], abs=1.0)
            assert (mppt["/MppOperationMode"], mppt["/State"]) == (2, 3)
            assert mppt["/DeviceInstance"] == 278
            for n in (1, 2, 3):
                assert items[f"/Ac/Consumption/L{n}/Power"] > 0
    run(scenario())


def test_a_site_without_pv_inverter_or_mppt_leaves_all_pv_paths_invalid() -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=5, start_hour=12.0, pv_ac=None, pv_dc=None))
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            items = await client.items(SYSTEM)
            assert items["/Dc/Pv/Power"] is None
            assert MPPT not in await client.names()  # no MPPT, no solarcharger service
            assert await client.text(SYSTEM, "/Dc/Pv/Power") == "---"
            for where in ("Grid", "Output", "Genset"):
                assert [items[f"/Ac/PvOn{where}/L{n}/Power"] for n in (1, 2, 3)] == [None] * 3
            s = model.snapshot
            assert s.pv_w == 0.0 and s.battery_w == pytest.approx(-s.load_w)
    run(scenario())
