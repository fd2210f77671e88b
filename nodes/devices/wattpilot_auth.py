"""The Wattpilot's login and signed writes, as pure functions (no I/O).

Everything here follows docs/design/wattpilot-protocol.md (§1.3-§1.5, §2.4), whose
worked examples are this module's unit tests:

- `password_hash` makes HP, the per-charger password hash: PBKDF2-HMAC-SHA512 (100,000
  iterations, the serial as salt, base64, first 32 characters) for the classic
  Wattpilot, bcrypt (cost 8, a salt made from the serial's digits, the 31-character
  hash part) for the Wattpilot Flex. HP is the key of both the login and the HMAC.
- `choose_method` is the manufacturer's rule for which of the two a charger wants.
- `auth_response` answers `authRequired`; `secured_message` wraps a `setValue` as a
  `securedMsg` signed with HMAC-SHA256.

bcrypt is imported only when the bcrypt method is used, so a classic Wattpilot works
without the package installed; a Flex without it fails with a `MissingBcrypt` that
names the package. Both hashes are slow on purpose (PBKDF2 takes about a second on a
GX): the client computes them with `asyncio.to_thread` (under `run` in a thread that
ends with the hash, `flowengine.threads`) and caches them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["HashMethod", "MissingBcrypt", "auth_response", "choose_method", "other_method",
           "password_hash", "secured_message"]

log = logging.getLogger(__name__)

HashMethod = Literal["pbkdf2", "bcrypt"]

PBKDF2_ITERATIONS = 100_000
PBKDF2_BYTES = 256
HP_PBKDF2_CHARS = 32
BCRYPT_PREFIX = "$2a$08$"  # bcrypt version 2a, cost 8
FLEX_DEVICETYPE = "wattpilot_flex"

_STD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = str.maketrans(_STD_B64, _BCRYPT_B64)


class MissingBcrypt(RuntimeError):
    """The bcrypt method is needed (a Wattpilot Flex) and the package is not installed."""


def password_hash(password: str, serial: str, method: HashMethod) -> str:
    """HP: the password hash the charger with this serial expects (slow: seconds).

    ValueError for a bcrypt serial that is not all digits (no source knows what the
    charger does then); MissingBcrypt when bcrypt is needed and not installed.
    """
    if method == "pbkdf2":
        derived = hashlib.pbkdf2_hmac("sha512", password.encode(), serial.encode(),
                                      PBKDF2_ITERATIONS, PBKDF2_BYTES)
        return base64.b64encode(derived).decode()[:HP_PBKDF2_CHARS]
    if method == "bcrypt":
        salt = bcrypt_salt(serial)
        full: str = _bcrypt().hashpw(hashlib.sha256(password.encode()).hexdigest().encode(),
                                salt.encode()).decode()
        return full[len(salt):]
    raise ValueError(f"unknown hash method {method!r}")


def bcrypt_salt(serial: str) -> str:
    """The bcrypt salt string of a serial: its digits as byte values, left-padded to 16
    bytes, in bcrypt's base64 ("$2a$08$" + 22 characters)."""
    if not serial.isascii() or not serial.isdigit() or len(serial) > 16:
        raise ValueError(f"the bcrypt login needs a serial of at most 16 digits, "
                         f"got {serial!r}")
    raw = bytes(16 - len(serial)) + bytes(int(digit) for digit in serial)
    encoded = base64.b64encode(raw).decode().rstrip("=").translate(_TO_BCRYPT)
    return BCRYPT_PREFIX + encoded


def _bcrypt() -> Any:
    try:
        import bcrypt  # here, not at the top: only a Wattpilot Flex needs it
    except ImportError as exc:
        raise MissingBcrypt("this Wattpilot logs in with bcrypt (a Wattpilot Flex): "
                            "install the Python package 'bcrypt' (pip install bcrypt)"
                            ) from exc
    return bcrypt


def choose_method(hello: Mapping[str, Any], auth_required: Mapping[str, Any]) -> HashMethod:
    """The hash method by the manufacturer's rule: `hash` in authRequired if present;
    else bcrypt for devicetype `wattpilot_flex`; else pbkdf2. An unknown `hash` value
    is logged and taken as pbkdf2 (the client retries once with the other method)."""
    advertised = auth_required.get("hash")
    if advertised is not None:
        name = str(advertised).strip().lower()
        if name in ("pbkdf2", "bcrypt"):
            return "bcrypt" if name == "bcrypt" else "pbkdf2"
        log.warning("wattpilot: unknown hash method %r in authRequired; trying pbkdf2",
                    str(advertised)[:40])
        return "pbkdf2"
    if hello.get("devicetype") == FLEX_DEVICETYPE:
        return "bcrypt"
    return "pbkdf2"


def other_method(method: HashMethod) -> HashMethod:
    return "pbkdf2" if method == "bcrypt" else "bcrypt"


def auth_response(token1: str, token2: str, hp: str,
                  token3: str | None = None) -> tuple[str, str]:
    """(token3, hash) for the `auth` message; token3 is 32 random hex chars unless given."""
    if token3 is None:
        token3 = secrets.token_hex(16)
    hash1 = hashlib.sha256(token1.encode() + hp.encode()).hexdigest()
    return token3, hashlib.sha256((token3 + token2 + hash1).encode()).hexdigest()


def secured_message(inner: dict[str, Any], hp: str, request_id: int) -> dict[str, Any]:
    """`inner` (a setValue with its integer requestId) as a securedMsg: the JSON text of
    `inner` as `data`, signed with HMAC-SHA256 keyed by HP, requestId "<N>sm"."""
    data = json.dumps(inner)
    signature = hmac.new(hp.encode(), data.encode(), hashlib.sha256).hexdigest()
    return {"type": "securedMsg", "data": data, "requestId": f"{request_id}sm",
            "hmac": signature}
