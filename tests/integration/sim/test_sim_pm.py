"""Shelly PM Mini Gen3 and Plus 1PM simulators: PM1 / Switch RPC, digest auth, the model."""

from __future__ import annotations

import pytest
from conftest import run
from simkit import get_json, noon_model, sample

from sim import EnergyModel
from sim.devices import ShellyPlus1PM, ShellyPMMiniGen3, pv_inverter

PASSWORD = "pm-secret"


@pytest.fixture
def model() -> EnergyModel:
    return noon_model()


def test_pm_mini_identifies_as_gen3(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPMMiniGen3(model, password=PASSWORD) as pm:
            _, info = await get_json(f"{pm.url}/shelly")
            assert (info["gen"], info["app"], info["auth_en"]) == (3, "MiniPMG3", True)
            assert info["auth_domain"] == pm.device_id
    run(scenario())


def test_pm1_getstatus_shows_the_pv_inverter_of_the_model(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPMMiniGen3(model, meter=pv_inverter(2), password=PASSWORD) as pm:
            status, pm1 = await get_json(f"{pm.url}/rpc/PM1.GetStatus?id=0", password=PASSWORD)
            assert status == 200
            expected = sample("shelly_pm1_getstatus")
            assert pm1.keys() == expected.keys()
            assert pm1["aenergy"].keys() == expected["aenergy"].keys()
            snap = model.snapshot
            assert pm1["apower"] == pytest.approx(snap.pv_ac_l[1], abs=0.05)
            assert pm1["apower"] > 500
            assert pm1["aenergy"]["total"] == pytest.approx(snap.pv_ac_l_kwh[1] * 1000, abs=0.001)
            assert pm1["voltage"] == pytest.approx(snap.voltage_l[1], abs=0.05)
            status, _ = await get_json(f"{pm.url}/rpc/PM1.GetStatus?id=0", password="guess")
            assert status == 401
    run(scenario())


def test_switch_getstatus_has_the_sample_shape(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPlus1PM(model, meter=pv_inverter(1), password=PASSWORD) as plug:
            url = f"{plug.url}/rpc/Switch.GetStatus?id=0"
            status, switch = await get_json(url, password=PASSWORD)
            assert status == 200
            expected = sample("shelly_gen2_switch_getstatus")
            assert switch.keys() == expected.keys()
            assert switch["temperature"].keys() == expected["temperature"].keys()
            assert switch["output"] is True
            assert switch["apower"] == pytest.approx(model.snapshot.pv_ac_l[0], abs=0.05)
            status, _ = await get_json(url)
            assert status == 401
    run(scenario())


def test_switch_set_switches_a_consumer_in_the_model(model: EnergyModel) -> None:
    heater = model.add_load("heater", 1800.0, phases=(3,))

    async def scenario() -> None:
        async with ShellyPlus1PM(model, load=heater, password=PASSWORD) as plug:
            base = f"{plug.url}/rpc"
            grid_before = model.snapshot.grid_l[2]
            status, reply = await get_json(f"{base}/Switch.Set?id=0&on=true", password=PASSWORD)
            assert (status, reply) == (200, {"was_on": False})
            assert heater.on
            assert model.snapshot.grid_l[2] == pytest.approx(grid_before + 1800.0, abs=1e-6)
            _, switch = await get_json(f"{base}/Switch.GetStatus?id=0", password=PASSWORD)
            assert (switch["output"], switch["apower"]) == (True, 1800.0)
            assert switch["current"] > 7
            _, reply = await get_json(f"{base}/Switch.Set?id=0&on=false", password=PASSWORD)
            assert reply == {"was_on": True}
            assert not heater.on
            status, error = await get_json(f"{base}/Switch.Set?id=0&on=maybe",
                                           password=PASSWORD)
            assert (status, error["code"]) == (400, -103)
    run(scenario())


def test_a_plus_1pm_needs_something_to_measure(model: EnergyModel) -> None:
    with pytest.raises(ValueError, match="load"):
        ShellyPlus1PM(model)
