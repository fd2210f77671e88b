"""Shelly 3EM Gen1 simulator: documented requests, sample shapes, model readings, Basic auth."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from conftest import free_port, run
from simkit import get_json, noon_model, sample

from sim import EnergyModel
from sim.devices import Shelly3EMGen1

AUTH = ("admin", "secret")


@pytest.fixture
def model() -> EnergyModel:
    return noon_model()


async def get(url: str, auth: tuple[str, str] | None = AUTH) -> tuple[int, Any]:
    return await get_json(url, basic=auth)


def test_shelly_identifies_a_gen1_3em_without_credentials(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(model, password="secret") as meter:
            status, info = await get(f"{meter.url}/shelly", auth=None)
            assert status == 200
            assert info.keys() == sample("shelly_gen1_shelly").keys()
            assert info["type"] == "SHEM-3" and info["auth"] is True and "gen" not in info
    run(scenario())


def test_status_has_the_sample_shape(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(model, password="secret") as meter:
            status, body = await get(f"{meter.url}/status")
            expected = sample("shelly3em_gen1_status")
            assert status == 200
            assert body.keys() == expected.keys()
            assert len(body["emeters"]) == 3
            for emeter in body["emeters"]:
                assert emeter.keys() == expected["emeters"][0].keys()
            assert body["relays"][0].keys() == expected["relays"][0].keys()
    run(scenario())


def test_status_reads_the_model_grid_per_phase(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(model, password="secret") as meter:
            snap = model.snapshot
            _, body = await get(f"{meter.url}/status")
            powers = [e["power"] for e in body["emeters"]]
            assert powers == pytest.approx(list(snap.grid_l), abs=0.01)
            assert min(powers) < 0 < max(powers)  # one phase exports, another imports
            assert body["total_power"] == pytest.approx(snap.grid_w, abs=0.05)
            totals = [e["total"] for e in body["emeters"]]
            assert totals == pytest.approx([kwh * 1000 for kwh in snap.grid_import_l_kwh],
                                           abs=0.05)
            returned = [e["total_returned"] for e in body["emeters"]]
            assert sum(returned) == pytest.approx(snap.grid_export_kwh * 1000, abs=0.2)
            for emeter, volts in zip(body["emeters"], snap.voltage_l, strict=True):
                assert emeter["voltage"] == pytest.approx(volts, abs=0.05)
                assert (emeter["pf"] < 0) == (emeter["power"] < 0)
            model.step(60)
            _, later = await get(f"{meter.url}/status")
            assert later["total_power"] == pytest.approx(model.snapshot.grid_w, abs=0.05)
            assert later["total_power"] != body["total_power"]
    run(scenario())


def test_emeter_answers_one_phase(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(model, password="secret") as meter:
            status, phase = await get(f"{meter.url}/emeter/1")
            assert status == 200
            assert phase["power"] == pytest.approx(model.snapshot.grid_l[1], abs=0.01)
            status, _ = await get(f"{meter.url}/emeter/3")
            assert status == 404
    run(scenario())


def test_wrong_or_missing_credentials_get_401(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(model, password="secret") as meter:
            assert (await get(f"{meter.url}/status", auth=None))[0] == 401
            wrong = ("admin", "guess")
            assert (await get(f"{meter.url}/status", auth=wrong))[0] == 401
            other_user = ("root", "secret")
            assert (await get(f"{meter.url}/emeter/0", auth=other_user))[0] == 401
            async with aiohttp.ClientSession() as session, \
                    session.get(f"{meter.url}/status") as resp:
                assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    run(scenario())


def test_without_a_password_no_credentials_are_needed(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(model) as meter:
            status, body = await get(f"{meter.url}/status", auth=None)
            assert status == 200 and len(body["emeters"]) == 3
            _, info = await get(f"{meter.url}/shelly", auth=None)
            assert info["auth"] is False
    run(scenario())


def test_binds_a_given_port(model: EnergyModel) -> None:
    port = free_port()

    async def scenario() -> None:
        async with Shelly3EMGen1(model, port=port) as meter:
            assert meter.url == f"http://127.0.0.1:{port}"
            assert (await get(f"{meter.url}/status", auth=None))[0] == 200
    run(scenario())
