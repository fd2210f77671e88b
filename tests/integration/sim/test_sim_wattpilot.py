"""Wattpilot simulator: its websocket protocol, spoken by a raw `websockets` client here.

Logins use the worked examples of docs/design/wattpilot-protocol.md §1.5 as literals
(serial 91400617, password test-password, the sheet's tokens), so the tests check the
simulator against the sheet, not against code of its own or of the product client.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from conftest import eventually, run
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sim import EnergyModel
from sim.devices import WattpilotSim
from sim.devices.wattpilot_hash import auth_hash, bcrypt_salt, message_hmac, password_hash

SERIAL, PASSWORD = "91400617", "test-password"
TOKENS = ("YJXAL4PsUsV9iQAUhW4rWShhMNKebqjS", "fTHFDHiwQUBlmQfmUKgtBK00lMpJIdoz")
TOKEN3 = "0123456789abcdef0123456789abcdef"
HP = {"pbkdf2": "H4qAEEAkGfFrxJacwdZxmxwHJK3oFsEe", "bcrypt": "OvhQq6fPKifTHXQe4GCC0igEyh0wkSu"}
AUTH = {"pbkdf2": "820e760df98cbf24c690948a49be9ed234f44c2e19f8d514aa7f74229c023041",
        "bcrypt": "3db0dc86e30b2f6aca77242db527c66857f92912ae46de58fd68b00982d24d94"}
AMP_10 = '{"type": "setValue", "requestId": 1, "key": "amp", "value": 10}'
AMP_10_HMAC = {"pbkdf2": "f2bf73c3de91c318556c4be385a90ef70ac6173823cd467bb48d04d96947a397",
               "bcrypt": "f4086b8378aabe61a70ff5fa55259336e9ad0914b78f8cc7b1213e9a76fa770a"}
Msg = dict[str, Any]


def charger(**kwargs: Any) -> WattpilotSim:
    return WattpilotSim(**{"password": PASSWORD, "serial": SERIAL, "tokens": TOKENS, **kwargs})


async def recv(ws: ClientConnection, timeout: float = 3.0) -> Msg:
    async with asyncio.timeout(timeout):
        msg: Msg = json.loads(await ws.recv())
        return msg


async def next_of(ws: ClientConnection, kind: str,
                  where: Callable[[Msg], bool] = lambda m: True) -> Msg:
    """The next frame of this type (and condition), skipping others (deltas in between)."""
    while True:
        msg = await recv(ws)
        if msg["type"] == kind and where(msg):
            return msg


async def handshake(ws: ClientConnection) -> tuple[Msg, Msg]:
    return await recv(ws), await recv(ws)


@asynccontextmanager
async def logged_in(wp: WattpilotSim, method: str = "pbkdf2") -> AsyncIterator[
        tuple[ClientConnection, Msg]]:
    """A client past authSuccess, and the merged fullStatus."""
    async with connect(wp.url) as ws:
        await handshake(ws)
        await ws.send(json.dumps({"type": "auth", "token3": TOKEN3, "hash": AUTH[method]}))
        assert (await recv(ws))["type"] == "authSuccess"
        status: Msg = {}
        while True:
            part = await next_of(ws, "fullStatus")
            status.update(part["status"])
            if not part["partial"]:
                break
        yield ws, status


def secured(data: str, request_id: int, key: str = HP["pbkdf2"]) -> str:
    mac = hmac.new(key.encode(), data.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"type": "securedMsg", "data": data, "requestId": f"{request_id}sm",
                       "hmac": mac})


def set_value(request_id: int, key: str, value: Any) -> str:
    inner = {"type": "setValue", "requestId": request_id, "key": key, "value": value}
    return secured(json.dumps(inner), request_id)


@pytest.mark.parametrize("method", ["pbkdf2", "bcrypt"])
def test_hashes_are_the_sheets_worked_examples(method: str) -> None:
    hp = password_hash(method, PASSWORD, SERIAL)  # type: ignore[arg-type]
    assert hp == HP[method]
    assert auth_hash(hp, *TOKENS, TOKEN3) == AUTH[method]
    assert message_hmac(hp, AMP_10) == AMP_10_HMAC[method]
    assert password_hash(method, "SecurP4$$w0Rd!", "91234567") == {  # type: ignore[arg-type]
        "pbkdf2": "8osfRxZYHDN+8u78weGfY/xKUaMAvaOc",
        "bcrypt": "O.2loA2ej7aI1wkdz6JsxEPshjtFhhq"}[method]
    assert bcrypt_salt(SERIAL) == "$2a$08$...........H.OO...W//u"


@pytest.mark.parametrize(("devicetype", "method"),
                         [("wattpilot", "pbkdf2"), ("wattpilot_flex", "bcrypt")])
def test_login_with_the_sheets_auth_hash(devicetype: str, method: str) -> None:
    async def scenario() -> None:
        async with charger(devicetype=devicetype) as wp, connect(wp.url) as ws:
            hello, required = await handshake(ws)
            assert hello == {"type": "hello", "serial": SERIAL, "hostname": f"Wattpilot_{SERIAL}",
                             "friendly_name": "Wattpilot", "manufacturer": "fronius",
                             "devicetype": devicetype, "version": "42.5", "protocol": 2,
                             "secured": True}
            assert required == {"type": "authRequired", "token1": TOKENS[0],
                                "token2": TOKENS[1], "hash": method}
            assert wp.password_hash == HP[method]
            await ws.send(json.dumps({"type": "auth", "token3": TOKEN3, "hash": AUTH[method]}))
            assert (await recv(ws))["type"] == "authSuccess"
            assert (await recv(ws))["type"] == "fullStatus"
            assert wp.clients == 1
    run(scenario())


def test_an_early_flex_leaves_the_hash_out_and_takes_bcrypt() -> None:
    async def scenario() -> None:
        async with charger(devicetype="wattpilot_flex", announce_hash=False) as wp, \
                connect(wp.url) as ws:
            _, required = await handshake(ws)
            assert "hash" not in required
            await ws.send(json.dumps({"type": "auth", "token3": TOKEN3, "hash": AUTH["bcrypt"]}))
            assert (await recv(ws))["type"] == "authSuccess"
    run(scenario())


def test_random_tokens_differ_per_connection() -> None:
    async def scenario() -> None:
        async with charger(tokens=None) as wp, connect(wp.url) as a, connect(wp.url) as b:
            (_, first), (_, second) = await handshake(a), await handshake(b)
            assert len(first["token1"]) == 32 and first["token1"] != second["token1"]
            assert first["token2"] != second["token2"]
    run(scenario())


@pytest.mark.parametrize("wrong", [AUTH["bcrypt"], "0" * 64])
def test_a_wrong_password_gets_auth_error_and_the_socket_closes(wrong: str) -> None:
    async def scenario() -> None:
        async with charger() as wp, connect(wp.url) as ws:
            await handshake(ws)
            await ws.send(json.dumps({"type": "auth", "token3": TOKEN3, "hash": wrong}))
            error = await recv(ws)
            assert (error["type"], error["message"]) == ("authError", "Wrong password")
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            assert wp.clients == 0
    run(scenario())


def test_full_status_parts_merge_to_the_whole_status() -> None:
    async def scenario() -> None:
        async with charger(status_parts=3) as wp, connect(wp.url) as ws:
            await handshake(ws)
            await ws.send(json.dumps({"type": "auth", "token3": TOKEN3, "hash": AUTH["pbkdf2"]}))
            await recv(ws)
            parts = [await recv(ws) for _ in range(3)]
            assert [p["partial"] for p in parts] == [True, True, False]
            merged = {k: v for p in parts for k, v in p["status"].items()}
            whole = wp.state.status()
            assert sum(len(p["status"]) for p in parts) == len(whole) == len(merged)
            assert {k: v for k, v in merged.items() if k not in ("rbt", "utc")} == \
                {k: v for k, v in whole.items() if k not in ("rbt", "utc")}
            expected = {"car": 1, "amp": 16, "frc": 0, "psm": 0, "lmo": 3, "alw": True, "acs": 0,
                        "sse": SERIAL, "typ": "wattpilot", "fwv": "42.5", "wh": 0.0}
            assert expected.items() <= merged.items()
            assert merged["nrg"][:4] == [230.0, 230.0, 230.0, 0.0] and len(merged["nrg"]) == 16
            await ws.send(json.dumps({"type": "requestFullStatus"}))
            again = await next_of(ws, "fullStatus")
            assert again["partial"] is True
    run(scenario())


def test_a_secured_write_with_the_sheets_hmac_changes_amp() -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, _):
            await ws.send(json.dumps({"type": "securedMsg", "data": AMP_10, "requestId": "1sm",
                                      "hmac": AMP_10_HMAC["pbkdf2"]}))
            assert await recv(ws) == {"type": "response", "requestId": "1", "success": True,
                                      "status": {"amp": 10}}
            delta = await next_of(ws, "deltaStatus", lambda m: "amp" in m["status"])
            assert delta["status"]["amp"] == 10
            assert wp.state.settings["amp"] == 10 and wp.writes == [("amp", 10, True)]
    run(scenario())


def test_a_bad_hmac_is_refused() -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, _):
            await ws.send(json.dumps({"type": "securedMsg", "data": AMP_10, "requestId": "1sm",
                                      "hmac": AMP_10_HMAC["bcrypt"]}))
            reply = await next_of(ws, "response")
            assert (reply["requestId"], reply["success"]) == ("1", False)
            assert "hmac" in reply["message"]
            assert wp.state.settings["amp"] == 16
    run(scenario())


def test_a_plain_set_value_is_refused_while_secured_and_taken_when_not() -> None:
    async def scenario() -> None:
        plain = json.dumps({"type": "setValue", "requestId": 3, "key": "frc", "value": 2})
        async with charger() as wp, logged_in(wp) as (ws, _):
            await ws.send(plain)
            assert (await next_of(ws, "response"))["success"] is False
            assert wp.state.settings["frc"] == 0
        async with charger(secured=False) as wp, logged_in(wp) as (ws, _):
            await ws.send(plain)
            reply = await next_of(ws, "response")
            assert (reply["requestId"], reply["success"], reply["status"]) == \
                ("3", True, {"frc": 2})
    run(scenario())


@pytest.mark.parametrize(("key", "value"), [
    ("amp", 17), ("amp", 5), ("amp", "10"), ("amp", 10.5), ("frc", 3), ("psm", True),
    ("lmo", 1), ("car", 2), ("nosuchkey", 1)])
def test_a_write_outside_the_range_is_refused(key: str, value: Any) -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, status):
            await ws.send(set_value(7, key, value))
            reply = await next_of(ws, "response")
            assert (reply["requestId"], reply["success"]) == ("7", False)
            assert reply["message"]
            assert wp.state.status().get(key) == status.get(key)
    run(scenario())


def test_a_22_kw_unit_takes_32_amps() -> None:
    async def scenario() -> None:
        async with charger(variant=22) as wp, logged_in(wp) as (ws, status):
            assert (status["var"], status["ama"]) == (22, 32)
            await ws.send(set_value(1, "amp", 32))
            assert (await next_of(ws, "response"))["success"] is True
    run(scenario())


def test_refuse_writes_answers_success_false_until_clear() -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, _):
            wp.refuse_writes()
            await ws.send(set_value(1, "amp", 8))
            reply = await next_of(ws, "response")
            assert reply["success"] is False and "refused" in reply["message"]
            assert wp.state.settings["amp"] == 16
            wp.clear()
            await ws.send(set_value(2, "amp", 8))
            assert (await next_of(ws, "response"))["success"] is True
            assert wp.state.settings["amp"] == 8
    run(scenario())


def test_drop_closes_the_connection_and_a_new_one_logs_in() -> None:
    async def scenario() -> None:
        async with charger() as wp:
            async with logged_in(wp) as (ws, _):
                wp.drop()
                with pytest.raises(ConnectionClosed):
                    while True:
                        await recv(ws)
            await eventually(lambda: wp.clients == 0)
            async with logged_in(wp) as (_, status):
                assert status["sse"] == SERIAL
    run(scenario())


def test_silent_sends_and_answers_nothing_then_clear_catches_up() -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, _):
            wp.silent()
            await ws.send(set_value(1, "amp", 8))
            wp.app_set("frc", 1)
            with pytest.raises(TimeoutError):
                await recv(ws, timeout=0.3)
            assert wp.state.settings["amp"] == 16
            wp.clear()
            delta = await next_of(ws, "deltaStatus", lambda m: "frc" in m["status"])
            assert delta["status"]["frc"] == 1
            await ws.send(set_value(2, "amp", 8))
            assert (await next_of(ws, "response"))["success"] is True
    run(scenario())


def test_an_app_change_reaches_the_client_as_a_delta() -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, _):
            wp.app_set("lmo", 4)
            delta = await next_of(ws, "deltaStatus", lambda m: "lmo" in m["status"])
            assert delta["status"]["lmo"] == 4
            with pytest.raises(ValueError, match="amp"):
                wp.app_set("amp", 99)
    run(scenario())


def test_charge_power_is_amps_times_phases_times_230() -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, _):
            for n, (key, value) in enumerate([("amp", 10), ("psm", 1), ("frc", 2)]):
                await ws.send(set_value(n, key, value))
                assert (await next_of(ws, "response"))["success"] is True
            wp.plug_in(capacity_wh=50_000, soc=50)
            delta = await next_of(ws, "deltaStatus", lambda m: m["status"].get("car") == 2)
            nrg = delta["status"]["nrg"]
            assert (nrg[4:7], nrg[7:10], nrg[11]) == ([10.0, 0.0, 0.0], [2300.0, 0.0, 0.0], 2300)
            await ws.send(set_value(9, "psm", 2))
            delta = await next_of(ws, "deltaStatus", lambda m: "nrg" in m["status"]
                                  and m["status"]["nrg"][11] == 6900.0)
            assert delta["status"]["nrg"][4:7] == [10.0, 10.0, 10.0]
            await ws.send(set_value(10, "frc", 1))
            delta = await next_of(ws, "deltaStatus", lambda m: m["status"].get("car") == 3)
            assert delta["status"]["nrg"][11] == 0.0 and delta["status"]["modelStatus"] == 4
    run(scenario())


def test_a_full_battery_ends_charging() -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, _):
            wp.plug_in(capacity_wh=10_000, soc=90)  # 1000 Wh to go at 16 A x 3 x 230 V
            assert wp.state.power_w == 11_040.0
            wp.advance(180)
            assert wp.state.car_state() == 2 and wp.state.session_wh == pytest.approx(552.0)
            wp.advance(3600)
            delta = await next_of(ws, "deltaStatus", lambda m: m["status"].get("car") == 4)
            assert delta["status"]["nrg"][11] == 0.0
            assert wp.state.car is not None and wp.state.car.soc == pytest.approx(100.0)
            assert (wp.state.session_wh, wp.state.energy_total_wh) == pytest.approx((1000, 1000))
            wp.unplug()
            assert (await next_of(ws, "deltaStatus", lambda m: "car" in m["status"])
                    )["status"]["car"] == 1
            wp.plug_in(soc=20)
            assert wp.state.session_wh == 0.0 and wp.state.energy_total_wh == pytest.approx(1000)
    run(scenario())


def test_measurements_arrive_every_interval_while_charging() -> None:
    async def scenario() -> None:
        async with charger(interval_s=0.05) as wp, logged_in(wp) as (ws, _):
            wp.plug_in(soc=10)
            seen = [await next_of(ws, "deltaStatus", lambda m: "eto" in m["status"])
                    for _ in range(3)]
            assert all(m["status"]["nrg"][11] == 11_040.0 for m in seen)
            assert seen[-1]["status"]["wh"] > 0
    run(scenario())


def test_the_charger_is_a_load_of_the_model() -> None:
    async def scenario() -> None:
        model = EnergyModel()
        async with charger(model=model) as wp, logged_in(wp) as (ws, _):
            base = model.snapshot.load_w
            wp.plug_in(capacity_wh=60_000, soc=50)
            assert model.snapshot.extra_w["wattpilot"] == 11_040.0
            assert model.snapshot.load_w == pytest.approx(base + 11_040.0, abs=100)
            model.step(3600)
            assert wp.state.session_wh == pytest.approx(11_040.0)
            await ws.send(set_value(1, "psm", 1))
            await next_of(ws, "response")
            assert model.loads["wattpilot"].phases == (1,)
            assert model.snapshot.extra_w["wattpilot"] == 3680.0
        assert "wattpilot" not in model.loads
    run(scenario())


def test_only_the_ws_path_is_served() -> None:
    async def scenario() -> None:
        async with charger() as wp:
            with pytest.raises(Exception, match="404"):
                async with connect(wp.url.removesuffix("/ws") + "/other"):
                    pass
    run(scenario())


def test_a_phase_switch_while_charging_pauses_for_phase_switch_s() -> None:
    async def scenario() -> None:
        async with charger(phase_switch_s=30) as wp:
            wp.plug_in(soc=10)
            assert (wp.state.phases, wp.state.power_w) == (3, 11_040.0)
            wp.app_set("psm", 1)
            assert (wp.state.model_status(), wp.state.power_w, wp.state.car_state()) == (23, 0, 3)
            wp.advance(29)
            assert wp.state.model_status() == 23 and wp.state.session_wh == 0.0
            wp.advance(1)
            assert (wp.state.model_status(), wp.state.power_w) == (15, 3680.0)
    run(scenario())


def test_eco_mode_charges_by_itself_only_while_the_price_is_low() -> None:
    async def scenario() -> None:
        async with charger() as wp, logged_in(wp) as (ws, _):
            wp.app_set("lmo", 4)
            wp.plug_in(soc=10)
            assert (wp.state.model_status(), wp.state.car_state(), wp.state.allowed) == \
                (17, 3, False)
            wp.app_set("ful", True)
            wp.app_set("awp", 15.0)
            wp.set_price(12.5)
            delta = await next_of(ws, "deltaStatus", lambda m: m["status"].get("car") == 2)
            assert delta["status"]["modelStatus"] == 7
            assert delta["status"]["awcp"]["marketprice"] == 12.5
            wp.app_set("frc", 1)
            assert wp.state.model_status() == 4 and wp.state.power_w == 0.0
    run(scenario())


def test_access_control_waits_for_a_transaction() -> None:
    async def scenario() -> None:
        async with charger() as wp:
            wp.plug_in(soc=10)
            wp.app_set("acs", 1)
            assert (wp.state.model_status(), wp.state.power_w) == (2, 0.0)
            wp.app_set("trx", 0)
            assert wp.state.charging
    run(scenario())


def test_go_away_closes_the_port_and_come_back_opens_it_again() -> None:
    async def scenario() -> None:
        async with charger() as wp:
            url = wp.url
            await wp.go_away()
            with pytest.raises(OSError):
                async with connect(url, open_timeout=1):
                    pass
            await wp.come_back()
            assert wp.url == url
            async with logged_in(wp) as (_, status):
                assert status["car"] == 1
    run(scenario())
