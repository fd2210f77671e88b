"""The Wattpilot's login as messages in and messages out; the client sends and receives.

Per connection (docs/design/wattpilot-protocol.md §1.2-§1.6): `hello`, then
`authRequired` is answered with `auth`, hashed with the method of
`wattpilot_auth.choose_method` (or the one that worked for this serial before); then
`authSuccess` or `authError`. A charger whose `hello` is not `secured` may send its
status without a login (wattpilot4j): that ends the login too.

Across connections: the password hash is computed in a thread of its own that ends with
it (PBKDF2 takes about a second on a GX) and cached per serial and method. After an
`authError` the other method is tried once (IOB's safety net; the charger's rule may be
wrong for early firmware); when that is refused too, `LoginRefused` says to check the
password.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

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

__all__ = ["AuthError", "LoginRefused", "LoginStep", "WattpilotLogin", "in_own_thread"]

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
            hp = await in_own_thread(password_hash, password, serial, method)
        except (MissingBcrypt, ValueError) as exc:
            raise LoginRefused(f"cannot log in: {exc}") from None
        self._hashes[serial, method] = hp
        return hp


T = TypeVar("T")


async def in_own_thread(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in a thread of its own that ends when it returns, so the loop goes
    on meanwhile. `asyncio.to_thread` would use the loop's executor, whose idle thread
    (and its stack) then stays for the rest of the runtime's life, for a hash made once
    per charger. Cancelling the wait leaves the thread to finish; its result is dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def give(result: T) -> None:
        if not future.done():
            future.set_result(result)

    def fail(exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)

    def work() -> None:
        try:
            result = func(*args)
        except BaseException as exc:  # handed to the waiter, raised there
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(fail, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(give, result)

    threading.Thread(target=work, name="wattpilot-password-hash", daemon=True).start()
    return await future


def _can_use(method: HashMethod) -> bool:
    return method != "bcrypt" or importlib.util.find_spec("bcrypt") is not None
