"""The Wattpilot login's steps, without a socket (docs/design/wattpilot-protocol.md §1)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from flowengine.model import Secret
from nodes.devices import wattpilot_login
from nodes.devices.wattpilot_login import AuthError, LoginRefused, WattpilotLogin

HELLO = {"type": "hello", "serial": "91400617", "devicetype": "wattpilot",
         "version": "42.5", "secured": True}
CHALLENGE = {"type": "authRequired", "token1": "YJXAL4PsUsV9iQAUhW4rWShhMNKebqjS",
             "token2": "fTHFDHiwQUBlmQfmUKgtBK00lMpJIdoz"}
HP_PBKDF2 = "H4qAEEAkGfFrxJacwdZxmxwHJK3oFsEe"  # case A of the sheet


def login() -> WattpilotLogin:
    flow = WattpilotLogin("wattpilot test", Secret("wp", "test-password"))
    flow.new_round()
    flow.begin()
    return flow


def steps(flow: WattpilotLogin, *messages: dict[str, Any]) -> list[tuple[str, Any]]:
    async def go() -> list[tuple[str, Any]]:
        return [await flow.receive(m) for m in messages]

    return asyncio.run(go())


def test_auth_answers_the_challenge_with_the_sheets_hash() -> None:
    flow = login()
    (first, _), (step, reply) = steps(flow, HELLO, CHALLENGE)
    assert (first, step) == ("wait", "reply") and flow.method == "pbkdf2"
    assert flow.hp == HP_PBKDF2
    hash1 = hashlib.sha256((CHALLENGE["token1"] + HP_PBKDF2).encode()).hexdigest()
    assert reply == {"type": "auth", "token3": reply["token3"], "hash": hashlib.sha256(
        (reply["token3"] + CHALLENGE["token2"] + hash1).encode()).hexdigest()}
    assert steps(flow, {"type": "authSuccess"}) == [("done", {})]


def test_after_one_refusal_the_other_method_then_wrong_password() -> None:
    flow = login()
    steps(flow, HELLO, CHALLENGE)
    with pytest.raises(AuthError) as refused:
        steps(flow, {"type": "authError", "message": "Wrong password"})
    assert flow.after_refusal(refused.value) == "bcrypt"
    flow.begin()
    steps(flow, HELLO, CHALLENGE)
    assert flow.method == "bcrypt" and flow.logins == 2
    with pytest.raises(AuthError) as again:
        steps(flow, {"type": "authError", "message": "Wrong password"})
    with pytest.raises(LoginRefused, match=r"check the password.*tried pbkdf2 and bcrypt"):
        flow.after_refusal(again.value)
    assert flow.refused


def test_without_bcrypt_a_classic_charger_is_not_retried_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wattpilot_login, "_can_use", lambda method: method != "bcrypt")
    flow = login()
    steps(flow, HELLO, CHALLENGE)
    with pytest.raises(AuthError) as refused:
        steps(flow, {"type": "authError", "message": "Wrong password"})
    with pytest.raises(LoginRefused, match="tried pbkdf2\\)"):
        flow.after_refusal(refused.value)


def test_a_method_that_worked_is_used_first_next_time() -> None:
    flow = login()
    steps(flow, HELLO, CHALLENGE)
    with pytest.raises(AuthError) as refused:
        steps(flow, {"type": "authError", "message": "Wrong password"})
    flow.after_refusal(refused.value)
    flow.begin()
    steps(flow, HELLO, CHALLENGE, {"type": "authSuccess"})
    flow.new_round()
    flow.begin()
    steps(flow, HELLO, CHALLENGE)
    assert flow.method == "bcrypt"


def test_a_bcrypt_serial_with_letters_cannot_log_in() -> None:
    flow = login()
    with pytest.raises(LoginRefused, match=r"cannot log in: .*digits"):
        steps(flow, {**HELLO, "serial": "WP-1", "devicetype": "wattpilot_flex"}, CHALLENGE)


def test_an_unsecured_charger_may_send_status_without_a_login() -> None:
    flow = login()
    assert steps(flow, {**HELLO, "secured": False},
                 {"type": "fullStatus", "status": {}})[1] == ("skipped", {})
    assert flow.hp == ""


@pytest.mark.parametrize("message", [
    {"type": "authRequired"}, {"type": "authSuccess"}, {"type": "fullStatus"},
])
def test_messages_before_hello_or_out_of_turn_are_unexpected(message: dict[str, Any]) -> None:
    assert steps(login(), message) == [("unexpected", {})]


def test_success_before_our_auth_is_unexpected() -> None:
    assert steps(login(), HELLO, {"type": "authSuccess"})[1] == ("unexpected", {})


def test_the_hash_thread_ends_with_the_hash_and_its_error_reaches_the_caller() -> None:
    """As under `run`, whose loop has flowengine.threads' executor."""
    import threading

    from flowengine.threads import install

    def hashing_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("esess-blocking-call")]

    def refuse(serial: str) -> str:
        raise ValueError(f"serial {serial} has letters")

    async def go() -> tuple[str, bool]:
        install()
        before = threading.active_count()
        flow = login()
        await flow.receive(HELLO)
        await flow.receive(CHALLENGE)  # the hash is made in a thread of the executor
        for _ in range(100):
            if threading.active_count() == before and not hashing_threads():
                break
            await asyncio.sleep(0.01)
        ended = threading.active_count() == before and not hashing_threads()
        assert flow.hp is not None
        with pytest.raises(ValueError, match="serial 9X has letters"):
            await asyncio.to_thread(refuse, "9X")
        return flow.hp, ended

    hp, ended = asyncio.run(go())
    assert hp == HP_PBKDF2
    assert ended, "an idle thread stayed after the hash"  # asyncio.to_thread's pool would
