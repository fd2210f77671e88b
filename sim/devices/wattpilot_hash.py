"""The Wattpilot's login and message hashes, as the simulated charger computes them.

Written from docs/design/wattpilot-protocol.md §1.4 to §2.4 with hashlib, hmac and bcrypt
directly, independent of the product client in nodes/devices, so that a test of the
client against the simulator checks the client and not a copy of itself.

    HP (pbkdf2) = base64(PBKDF2-HMAC-SHA512(pw, salt=serial, 100000, 256 bytes))[:32]
    HP (bcrypt) = bcrypt(sha256_hex(pw), "$2a$08$" + bcrypt_base64(serial digits, 16 bytes))[29:]
    hash1       = sha256_hex(token1 + HP)
    auth hash   = sha256_hex(token3 + token2 + hash1)
    hmac        = hmac_sha256_hex(key=HP, msg=data)          (securedMsg)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal

import bcrypt

__all__ = ["HashMethod", "auth_hash", "bcrypt_salt", "message_hmac", "password_hash"]

HashMethod = Literal["pbkdf2", "bcrypt"]

_STD_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_B64 = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = bytes.maketrans(_STD_B64, _BCRYPT_B64)


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bcrypt_salt(serial: str) -> str:
    """`$2a$08$` and the serial's digits (byte values 0-9, zero-padded on the left to 16
    bytes) in bcrypt's base64: `91400617` -> `$2a$08$...........H.OO...W//u`."""
    if not serial.isdigit() or len(serial) > 16:
        raise ValueError(f"a bcrypt login needs a serial of at most 16 digits, got {serial!r}")
    raw = bytes(int(d) for d in serial).rjust(16, b"\x00")
    # bcrypt's base64 groups the bits as the standard one does, with its own alphabet
    encoded = base64.b64encode(raw).rstrip(b"=").translate(_TO_BCRYPT)
    return "$2a$08$" + encoded.decode()


def password_hash(method: HashMethod, password: str, serial: str) -> str:
    """HP: the key of the login hash and of every securedMsg's hmac."""
    if method == "pbkdf2":
        derived = hashlib.pbkdf2_hmac("sha512", password.encode(), serial.encode(), 100_000, 256)
        return base64.b64encode(derived).decode()[:32]
    salt = bcrypt_salt(serial)
    full = bcrypt.hashpw(_sha256_hex(password).encode(), salt.encode()).decode()
    return full[len(salt):]


def auth_hash(hp: str, token1: str, token2: str, token3: str) -> str:
    """The `hash` a client must send in `auth` for these tokens."""
    return _sha256_hex(token3 + token2 + _sha256_hex(token1 + hp))


def message_hmac(hp: str, data: str) -> str:
    """The `hmac` of a securedMsg carrying `data` (the inner message's JSON text)."""
    return hmac.new(hp.encode(), data.encode(), hashlib.sha256).hexdigest()
