"""The Wattpilot login and signed writes against every worked example of
docs/design/wattpilot-protocol.md (§1.5) and the manufacturer's hash-method rule."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
from typing import Any

import pytest

from nodes.devices import wattpilot_auth
from nodes.devices.wattpilot_auth import (
    MissingBcrypt,
    auth_response,
    bcrypt_salt,
    choose_method,
    password_hash,
    secured_message,
)

TOKEN1 = "YJXAL4PsUsV9iQAUhW4rWShhMNKebqjS"
TOKEN2 = "fTHFDHiwQUBlmQfmUKgtBK00lMpJIdoz"
TOKEN3 = "0123456789abcdef0123456789abcdef"

CASES = {
    "A": ("test-password", "91400617"),
    "B": ("SecurP4$$w0Rd!", "91234567"),
}
SHA256 = {
    "A": "c638833f69bbfb3c267afa0a74434812436b8f08a81fd263c6be6871de4f1265",
    "B": "b0c219e3377382ffd61eaf20b124a3869cfb46e406bc9f2d1c2ec31a16ca5157",
}
SALT = {"A": "$2a$08$...........H.OO...W//u", "B": "$2a$08$...........H.OGB/.SE/u"}
HP = {
    ("A", "pbkdf2"): "H4qAEEAkGfFrxJacwdZxmxwHJK3oFsEe",
    ("B", "pbkdf2"): "8osfRxZYHDN+8u78weGfY/xKUaMAvaOc",
    ("A", "bcrypt"): "OvhQq6fPKifTHXQe4GCC0igEyh0wkSu",
    ("B", "bcrypt"): "O.2loA2ej7aI1wkdz6JsxEPshjtFhhq",
}
FULL_BCRYPT = {
    "A": "$2a$08$...........H.OO...W//uOvhQq6fPKifTHXQe4GCC0igEyh0wkSu",
    "B": "$2a$08$...........H.OGB/.SE/uO.2loA2ej7aI1wkdz6JsxEPshjtFhhq",
}
HASH1 = {
    ("A", "pbkdf2"): "724ec102332506a0313f3ffc81a2c6704db0f6c363033890dd2ac80eba965480",
    ("A", "bcrypt"): "9ae91795ae0dc62cb53c6713532963ef3c0704a0849caa0dca6c24fab6c1de0a",
    ("B", "pbkdf2"): "7386399a4770786a132c7b85725cafe1b8b03b7411b560b2f6796f40ad85eb19",
    ("B", "bcrypt"): "2c6e85635221da350f5f8a9143f38a77b107876314ad9abaa07536f6edf41d31",
}
AUTH_HASH = {
    ("A", "pbkdf2"): "820e760df98cbf24c690948a49be9ed234f44c2e19f8d514aa7f74229c023041",
    ("A", "bcrypt"): "3db0dc86e30b2f6aca77242db527c66857f92912ae46de58fd68b00982d24d94",
    ("B", "pbkdf2"): "f3d344dde3653364e4ebf29c9757d2659991957a712ee3a00946af7bfe4d2b26",
    ("B", "bcrypt"): "c91304a020471049db4f268c7e527c76ccc6cd4e1879949044b3da224419c5bf",
}
HMAC = {
    ("A", "pbkdf2"): "f2bf73c3de91c318556c4be385a90ef70ac6173823cd467bb48d04d96947a397",
    ("A", "bcrypt"): "f4086b8378aabe61a70ff5fa55259336e9ad0914b78f8cc7b1213e9a76fa770a",
    ("B", "pbkdf2"): "a3b0d913c0e1b0f659624385a6f74d64501863ffb48c4ead76a1759d23bc9688",
    ("B", "bcrypt"): "6732a6d922e8e803d3ef6c82078c4e53c298f6fb82a0ae7d73286ab154041f6b",
}
VECTORS = sorted(HP)
SET_AMP = {"type": "setValue", "requestId": 1, "key": "amp", "value": 10}


@pytest.mark.parametrize(("case", "method"), VECTORS)
def test_password_hash_matches_the_worked_example(case: str, method: Any) -> None:
    password, serial = CASES[case]
    assert password_hash(password, serial, method) == HP[case, method]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bcrypt_input_is_the_sha256_hex_of_the_password(case: str) -> None:
    assert hashlib.sha256(CASES[case][0].encode()).hexdigest() == SHA256[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bcrypt_salt_is_made_of_the_serial_digits(case: str) -> None:
    assert bcrypt_salt(CASES[case][1]) == SALT[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bcrypt_full_hash_is_the_salt_and_the_hash_part(case: str) -> None:
    import bcrypt

    serial = CASES[case][1]
    full = bcrypt.hashpw(SHA256[case].encode(), bcrypt_salt(serial).encode()).decode()
    assert full == FULL_BCRYPT[case]
    assert full[29:] == HP[case, "bcrypt"]


@pytest.mark.parametrize(("case", "method"), VECTORS)
def test_auth_response_matches_the_worked_example(case: str, method: Any) -> None:
    hp = HP[case, method]
    assert hashlib.sha256(TOKEN1.encode() + hp.encode()).hexdigest() == HASH1[case, method]
    assert auth_response(TOKEN1, TOKEN2, hp, TOKEN3) == (TOKEN3, AUTH_HASH[case, method])


def test_auth_response_makes_a_fresh_token3_of_32_hex_chars() -> None:
    first, _ = auth_response(TOKEN1, TOKEN2, HP["A", "pbkdf2"])
    second, _ = auth_response(TOKEN1, TOKEN2, HP["A", "pbkdf2"])
    assert len(first) == 32 and int(first, 16) >= 0 and first == first.lower()
    assert first != second


@pytest.mark.parametrize(("case", "method"), VECTORS)
def test_secured_message_is_signed_as_the_worked_example(case: str, method: Any) -> None:
    message = secured_message(SET_AMP, HP[case, method], 1)
    assert message == {"type": "securedMsg",
                       "data": '{"type": "setValue", "requestId": 1, "key": "amp", '
                               '"value": 10}',
                       "requestId": "1sm", "hmac": HMAC[case, method]}


def test_secured_message_signs_exactly_the_data_it_sends() -> None:
    inner = {"type": "setValue", "requestId": 7, "key": "frc", "value": 1}
    message = secured_message(inner, "k" * 32, 7)
    assert json.loads(message["data"]) == inner
    assert message["requestId"] == "7sm"
    assert hmac.compare_digest(message["hmac"], hmac.new(
        b"k" * 32, message["data"].encode(), hashlib.sha256).hexdigest())


@pytest.mark.parametrize(("hello", "auth_required", "method"), [
    ({"devicetype": "wattpilot"}, {}, "pbkdf2"),
    ({"devicetype": "wattpilot_flex"}, {}, "bcrypt"),
    ({}, {}, "pbkdf2"),
    ({"devicetype": "wattpilot"}, {"hash": "pbkdf2"}, "pbkdf2"),
    ({"devicetype": "wattpilot"}, {"hash": "bcrypt"}, "bcrypt"),
    ({"devicetype": "wattpilot_flex"}, {"hash": "pbkdf2"}, "pbkdf2"),
    ({"devicetype": "wattpilot_flex"}, {"hash": "bcrypt"}, "bcrypt"),
    ({"devicetype": "wattpilot_flex"}, {"hash": "BCRYPT"}, "bcrypt"),
    ({"devicetype": "wattpilot_flex"}, {"hash": "argon2"}, "pbkdf2"),
    ({"devicetype": "wattpilot_flex"}, {"hash": None}, "bcrypt"),
])
def test_choose_method_follows_the_manufacturers_rule(
        hello: dict[str, Any], auth_required: dict[str, Any], method: str) -> None:
    assert choose_method(hello, auth_required) == method


@pytest.mark.parametrize("serial", ["9140061A", "", "1" * 17, "٩١٤"])
def test_bcrypt_refuses_a_serial_that_is_not_digits(serial: str) -> None:
    with pytest.raises(ValueError, match="digits"):
        password_hash("pw", serial, "bcrypt")


def test_pbkdf2_works_without_bcrypt_and_bcrypt_names_the_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_bcrypt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "bcrypt":
            raise ImportError("No module named 'bcrypt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bcrypt)
    assert password_hash(*CASES["A"], "pbkdf2") == HP["A", "pbkdf2"]
    with pytest.raises(MissingBcrypt, match="pip install bcrypt"):
        password_hash(*CASES["A"], "bcrypt")
    assert "bcrypt" not in vars(wattpilot_auth)  # never imported at module level
