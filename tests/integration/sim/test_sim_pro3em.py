"""Shelly Pro 3EM simulator: RPC over HTTP, sample shapes, model readings, SHA-256 digest."""

from __future__ import annotations

import hashlib
import re

import aiohttp
import pytest
from conftest import run
from simkit import get_json, noon_model, sample

from sim import EnergyModel
from sim.devices import ShellyPro3EM

PASSWORD = "pro-secret"
CHALLENGE = re.compile(
    r'^Digest qop="auth", realm="shellypro3em-a0a3b3000001", nonce="[0-9a-f]+", '
    r"algorithm=SHA-256$")


@pytest.fixture
def model() -> EnergyModel:
    return noon_model()


def test_shelly_identifies_gen2_with_its_auth_domain(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter:
            status, info = await get_json(f"{meter.url}/shelly")
            assert status == 200
            assert info.keys() == sample("shelly_gen2_shelly").keys()
            assert (info["gen"], info["app"], info["auth_en"]) == (2, "Pro3EM", True)
            assert info["auth_domain"] == info["id"] == "shellypro3em-a0a3b3000001"
    run(scenario())


def test_em_getstatus_has_the_sample_shape_and_the_model_grid(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter:
            status, em = await get_json(f"{meter.url}/rpc/EM.GetStatus?id=0", password=PASSWORD)
            assert status == 200
            assert em.keys() == sample("shellypro3em_em_getstatus").keys()
            snap = model.snapshot
            powers = [em[f"{p}_act_power"] for p in "abc"]
            assert powers == pytest.approx(list(snap.grid_l), abs=0.05)
            assert em["a_act_power"] > 0 > em["b_act_power"]
            assert em["total_act_power"] == pytest.approx(snap.grid_w, abs=0.2)
            for p in "abc":
                assert em[f"{p}_aprt_power"] >= abs(em[f"{p}_act_power"])
                assert em[f"{p}_freq"] == pytest.approx(50.0, abs=0.1)
    run(scenario())


def test_emdata_getstatus_has_the_sample_shape_and_the_model_counters(
        model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter:
            url = f"{meter.url}/rpc/EMData.GetStatus?id=0"
            status, data = await get_json(url, password=PASSWORD)
            assert status == 200
            assert data.keys() == sample("shellypro3em_emdata_getstatus").keys()
            snap = model.snapshot
            assert data["total_act"] == pytest.approx(snap.grid_import_kwh * 1000, abs=0.01)
            assert data["total_act_ret"] == pytest.approx(snap.grid_export_kwh * 1000, abs=0.01)
            assert data["b_total_act_ret_energy"] > 0 and data["a_total_act_energy"] > 0
    run(scenario())


def test_shelly_getstatus_holds_every_component(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter:
            status, body = await get_json(f"{meter.url}/rpc/Shelly.GetStatus",
                                          password=PASSWORD)
            assert status == 200
            assert body["em:0"].keys() == sample("shellypro3em_em_getstatus").keys()
            assert body["emdata:0"].keys() == sample("shellypro3em_emdata_getstatus").keys()
            assert body["sys"]["mac"] == "A0A3B3000001"
    run(scenario())


def test_post_rpc_answers_a_json_rpc_frame(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter, aiohttp.ClientSession(
                middlewares=(aiohttp.DigestAuthMiddleware("admin", PASSWORD),)) as session:
            frame = {"id": 7, "src": "test", "method": "EM.GetStatus", "params": {"id": 0}}
            async with session.post(f"{meter.url}/rpc", json=frame) as resp:
                reply = await resp.json()
            assert resp.status == 200
            assert (reply["id"], reply["src"], reply["dst"]) == (7, meter.device_id, "test")
            assert reply["result"]["total_act_power"] == pytest.approx(
                model.snapshot.grid_w, abs=0.2)
            frame = {"id": 8, "method": "Nope.GetStatus"}
            async with session.post(f"{meter.url}/rpc", json=frame) as resp:
                reply = await resp.json()
            assert reply["error"]["code"] == 404
    run(scenario())


def test_unknown_method_and_component_are_errors(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model) as meter:
            status, body = await get_json(f"{meter.url}/rpc/Switch.GetStatus?id=0")
            assert (status, body["code"]) == (404, 404)
            status, body = await get_json(f"{meter.url}/rpc/EM.GetStatus?id=1")
            assert (status, body["code"]) == (400, -105)
    run(scenario())


def test_no_credentials_get_the_digest_challenge(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter, \
                aiohttp.ClientSession() as session, \
                session.get(f"{meter.url}/rpc/EM.GetStatus?id=0") as resp:
            assert resp.status == 401
            assert CHALLENGE.match(resp.headers["WWW-Authenticate"])
    run(scenario())


def test_wrong_password_is_refused(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter:
            status, _ = await get_json(f"{meter.url}/rpc/EM.GetStatus?id=0", password="guess")
            assert status == 401
    run(scenario())


def test_a_hand_computed_digest_is_accepted_and_a_tampered_one_refused(
        model: EnergyModel) -> None:
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter, \
                aiohttp.ClientSession() as session:
            uri = "/rpc/EMData.GetStatus?id=0"
            async with session.get(meter.url + uri) as resp:
                nonce = re.search(r'nonce="([^"]+)"', resp.headers["WWW-Authenticate"])
            assert nonce is not None
            realm = meter.device_id
            ha1 = sha(f"admin:{realm}:{PASSWORD}")
            ha2 = sha(f"GET:{uri}")
            digest = sha(f"{ha1}:{nonce[1]}:00000001:c0ffee:auth:{ha2}")

            def header(response: str) -> dict[str, str]:
                return {"Authorization": (
                    f'Digest username="admin", realm="{realm}", nonce="{nonce[1]}", '
                    f'uri="{uri}", algorithm=SHA-256, response="{response}", qop=auth, '
                    f'nc=00000001, cnonce="c0ffee"')}
            async with session.get(meter.url + uri, headers=header(digest)) as resp:
                assert resp.status == 200
            async with session.get(meter.url + uri, headers=header("0" * 64)) as resp:
                assert resp.status == 401
    run(scenario())


def test_without_a_password_rpc_is_open(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model) as meter:
            status, _ = await get_json(f"{meter.url}/rpc/EM.GetStatus?id=0")
            assert status == 200
            _, info = await get_json(f"{meter.url}/shelly")
            assert info["auth_en"] is False
    run(scenario())


def test_a_poller_keeps_one_session_and_follows_the_model(model: EnergyModel) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model, password=PASSWORD) as meter, aiohttp.ClientSession(
                middlewares=(aiohttp.DigestAuthMiddleware("admin", PASSWORD),)) as session:
            readings = []
            for _ in range(4):
                async with session.get(f"{meter.url}/rpc/EM.GetStatus?id=0") as resp:
                    assert resp.status == 200
                    readings.append((await resp.json())["total_act_power"])
                model.step(30)
            assert len(set(readings)) == 4
    run(scenario())
