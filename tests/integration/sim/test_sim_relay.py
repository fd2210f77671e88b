"""Gen1 relay simulator (Shelly 1PM): /relay/0 switches a consumer of the model."""

from __future__ import annotations

import pytest
from conftest import run
from simkit import get_json, noon_model, sample

from sim import EnergyModel
from sim.devices import Shelly3EMGen1, ShellyRelayGen1

AUTH = ("admin", "relay-secret")


@pytest.fixture
def model() -> EnergyModel:
    return noon_model()


def test_status_has_the_sample_shape(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model, password=AUTH[1]) as relay:
            status, body = await get_json(f"{relay.url}/status", basic=AUTH)
            expected = sample("shelly_gen1_relay_status")
            assert status == 200
            assert set(expected) <= set(body)
            assert body["relays"][0].keys() >= expected["relays"][0].keys()
            assert body["meters"][0].keys() == expected["meters"][0].keys()
            _, info = await get_json(f"{relay.url}/shelly")
            assert info["type"] == "SHSW-PM" and "gen" not in info
    run(scenario())


def test_turn_on_and_off_switches_the_load_the_grid_meter_sees(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model, name="boiler", power_w=2400.0, phases=(2,),
                                   password=AUTH[1]) as relay, Shelly3EMGen1(model) as meter:
            load_before = model.snapshot.load_l[1]
            _, before = await get_json(f"{meter.url}/status")
            status, reply = await get_json(f"{relay.url}/relay/0?turn=on", basic=AUTH)
            assert (status, reply["ison"], reply["source"]) == (200, True, "http")
            assert model.loads["boiler"].on
            assert model.snapshot.load_l[1] - load_before == pytest.approx(2400.0)
            _, after = await get_json(f"{meter.url}/status")
            # the battery takes part of the new load; the grid meter follows the model
            assert after["total_power"] > before["total_power"] + 500
            assert after["emeters"][1]["power"] == pytest.approx(model.snapshot.grid_l[1],
                                                                 abs=0.01)
            _, body = await get_json(f"{relay.url}/status", basic=AUTH)
            assert (body["relays"][0]["ison"], body["meters"][0]["power"]) == (True, 2400.0)
            model.step(60)
            _, body = await get_json(f"{relay.url}/status", basic=AUTH)
            assert body["meters"][0]["total"] == 40 * 60  # 40 Wh, in watt-minutes
            _, reply = await get_json(f"{relay.url}/relay/0?turn=toggle", basic=AUTH)
            assert reply["ison"] is False
            assert model.snapshot.extra_w["boiler"] == 0.0
    run(scenario())


def test_relay_refuses_bad_requests_and_bad_credentials(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model, password=AUTH[1]) as relay:
            status, _ = await get_json(f"{relay.url}/relay/0?turn=on")
            assert status == 401
            status, _ = await get_json(f"{relay.url}/relay/0?turn=on", basic=("admin", "x"))
            assert status == 401
            assert not relay.load.on
            status, _ = await get_json(f"{relay.url}/relay/0?turn=up", basic=AUTH)
            assert status == 400
            status, reply = await get_json(f"{relay.url}/relay/0", basic=AUTH)
            assert (status, reply["ison"]) == (200, False)
    run(scenario())
