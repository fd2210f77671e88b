"""The Wattpilot's login as messages in and messages out; the client sends and receives.

Per connection (docs/design/wattpilot-protocol.md §1.2-§1.6): `hello`, then
`authRequired` is answered with `auth`, hashed with the method of
`wattpilot_auth.choose_method` (or the one that worked for this serial before); then
`authSuccess` or `authError`. A charger whose `hello` is not `secured` may send its
status without a login (wattpilot4j): that ends the login too.

Across connections: the password hash is computed in the loop's executor (PBKDF2 takes
about a second on a GX; under `run` the thread ends with it, `flowengine.threads`) and
cached per serial and method. After an `authError` the other method is tried once (IOB's
safety net; the charger's rule may be wrong for early firmware); when that is refused
too, `LoginRefused` says to check the password.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Mapping
from typing import Any, Literal

from flowengine.model import Secret
from nodes.devices.wattpilot_auth import (
    HashMethod,
    MissingBcrypt,
    auth_response,
    choose_method,
    other_method,
    password_hash,
)
from nodes.devices.wattpilot_status import WattpilotHello

__all__ = ["AuthError", "LoginRefused", "LoginStep", "WattpilotLogin"]

log = logging.getLogger(__name__)

LoginStep = Literal["wait", "reply", "done", "skipped", "unexpected"]
"""What one message before the login meant: wait for more; send the reply; logged in;
no login needed (the message is status, handle it); a message that has no place here."""


class LoginRefused(Exception):
    """A login that cannot work: authError with both methods, bcrypt not installed, a
    serial the bcrypt method refuses. Retried only after minutes."""


class AuthError(LoginRefused):
    """The charger answered `auth` with `authError` (one method)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class WattpilotLogin:
    """The logins of one client (one password)."""

    def __init__(self, name: str, password: Secret) -> None:
        self.name = name
        self._password = password
        self.hello: WattpilotHello | None = None  # of the last connection
        self.method: HashMethod | None = None  # of the last auth sent
        self.hp: str | None = None  # the password hash of the last login: the HMAC key
        self.logins = 0  # `auth` messages sent, refused ones included
        self.refused = False  # the last round ended in authError with both methods
        self._hashes: dict[tuple[str, HashMethod], str] = {}
        self._learned: dict[str, HashMethod] = {}  # serial -> the method that worked
        self._tried: list[HashMethod] = []
        self._forced: HashMethod | None = None
        self._hello_raw: Mapping[str, Any] = {}
        self._sent = False

    def new_round(self) -> None:
        """Before a connection attempt that is not the retry with the other method."""
        self._tried, self._forced = [], None

    def begin(self) -> None:
        """A new connection is open."""
        self._hello_raw, self._sent = {}, False

    async def receive(self, message: Mapping[str, Any]) -> tuple[LoginStep, dict[str, Any]]:
        """One message before the login; ("reply", auth) to send, or what it meant."""
        kind, hello = message.get("type"), self.hello
        if kind == "hello":
            self._hello_raw, self.hello = message, WattpilotHello.parse(message)
            return "wait", {}
        if hello is None or not self._hello_raw:
            return "unexpected", {}
        if kind == "authRequired":
            method = self._forced or self._learned.get(hello.serial) \
                or choose_method(self._hello_raw, message)
            hp = await self._password_hash(hello.serial, method)
            token3, response = auth_response(str(message.get("token1", "")),
                                             str(message.get("token2", "")), hp)
            self.method, self.hp, self._sent = method, hp, True
            self.logins += 1
            return "reply", {"type": "auth", "token3": token3, "hash": response}
        if kind == "authSuccess" and self._sent:
            self.refused = False
            if self.method is not None:
                self._learned[hello.serial] = self.method
            return "done", {}
        if kind == "authError" and self._sent:
            raise AuthError(str(message.get("message") or "no reason given")[:200])
        if kind in ("fullStatus", "deltaStatus") and not hello.secured and not self._sent:
            self.hp, self.method = "", None
            return "skipped", {}
        return "unexpected", {}

    def after_refusal(self, exc: AuthError) -> HashMethod:
        """The method to try once more after an authError; LoginRefused when there is
        none left (both refused, or the other needs bcrypt, which is not installed)."""
        if self.method is not None:
            self._tried.append(self.method)
        tried = self._tried
        fallback = other_method(tried[-1]) if tried else None
        if len(tried) == 1 and fallback is not None and _can_use(fallback):
            log.info("%s: login with %s refused (%s); trying %s once", self.name, tried[0],
                     exc.message, fallback)
            self._forced = fallback
            return fallback
        self.refused = True
        raise LoginRefused(
            f"login refused (authError: {exc.message}): check the password, the one set "
            f"in the Wattpilot app (tried {' and '.join(tried) or 'no method'})") from None

    async def _password_hash(self, serial: str, method: HashMethod) -> str:
        cached = self._hashes.get((serial, method))
        if cached is not None:
            return cached
        password = self._password.reveal()
        try:
            hp = await asyncio.to_thread(password_hash, password, serial, method)
        except (MissingBcrypt, ValueError) as exc:
            raise LoginRefused(f"cannot log in: {exc}") from None
        self._hashes[serial, method] = hp
        return hp


def _can_use(method: HashMethod) -> bool:
    return method != "bcrypt" or importlib.util.find_spec("bcrypt") is not None
