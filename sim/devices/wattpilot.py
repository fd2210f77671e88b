"""A simulated Fronius Wattpilot: the charger's websocket protocol on a real loopback server.

    async with WattpilotSim(password="secret", serial="91400617") as wp:
        ...  # connect to wp.url ("ws://127.0.0.1:<port>/ws"); wp.plug_in(soc=40)

It speaks docs/design/wattpilot-protocol.md: on connect `hello` then `authRequired`
(token1, token2 and `hash`, left out with `announce_hash=False` as early Flex units do;
the method is bcrypt for `devicetype="wattpilot_flex"`, else pbkdf2). A right `auth`
gets `authSuccess`, the status in `status_parts` `fullStatus` frames (`partial` true but
the last), then `deltaStatus` frames with the keys that changed, and every `interval_s`
the measurements (`nrg`, `eto`, `wh`) while charging, only the clock (`rbt`, `utc`)
every `idle_interval_s` otherwise (neither with `ticking=False`). A wrong one gets
`authError` "Wrong password" and the socket is closed. `securedMsg` is checked against
its hmac; its inner `setValue` (or a plain one, when `secured` is falsy) is answered
with `response` {requestId: the inner requestId as a string, success, status or
message}. `requestFullStatus` sends the full
status again; any other type gets `response` success false, `unknown message type`.

The charger and car are `sim.devices.wattpilot_state`; `state` is the live object.
Time passes with `advance(dt_s)`, with the steps of `model` when one is given (the
charger is then an `ExtraLoad` of the model, on the AC output), else with a real-time
ticker (times `time_scale`). `app_set(key, value)` changes a setting as the Fronius
app would: every client sees it as a deltaStatus. `force_model_status(n)` reports any
modelStatus (None: the charger's own again); `logins` counts the successful logins.

Faults: `drop()` (abort every connection, new ones are accepted), `silent()` (accept,
send and answer nothing, drop what arrives; websocket pings are still answered by the
library; what changed meanwhile is sent on `clear()`),
`refuse_writes()` (every setValue answered success false), `go_away()` / `come_back()`
(the port closes and opens again), `clear()`.
"""

from __future__ import annotations

import asyncio
import json
import time
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from sim.devices.wattpilot_hash import HashMethod, password_hash
from sim.devices.wattpilot_session import Session
from sim.devices.wattpilot_state import ChargerState
from sim.model import EnergyModel, Snapshot

__all__ = ["WattpilotSim"]

HOST = "127.0.0.1"
JsonObject = dict[str, Any]
_CLOCK = ("rbt", "utc")
_MEASURED = ("nrg", "eto", "wh")


class WattpilotSim:
    """A simulated Wattpilot charger with a car; see the module docstring."""

    def __init__(self, *, password: str, serial: str = "91400617",
                 devicetype: str = "wattpilot", model: EnergyModel | None = None,
                 hash_method: HashMethod | None = None, announce_hash: bool = True,
                 secured: bool | int = True, friendly_name: str = "Wattpilot",
                 firmware: str = "42.5", variant: int = 11, voltage_v: float = 230.0,
                 phase_switch_s: float = 0.0, energy_total_wh: float = 0.0,
                 status_parts: int = 3, interval_s: float = 1.0, idle_interval_s: float = 10.0,
                 time_scale: float = 1.0, tokens: tuple[str, str] | None = None,
                 name: str = "wattpilot", port: int = 0, ticking: bool = True) -> None:
        if not serial.isdigit():
            raise ValueError(f"a Wattpilot serial is digits only, got {serial!r}")
        if status_parts < 1 or interval_s <= 0 or idle_interval_s <= 0 or time_scale <= 0:
            raise ValueError("status_parts >= 1 and positive intervals and time_scale, please")
        self.password, self.serial, self.devicetype = password, serial, devicetype
        self.hash_method: HashMethod = hash_method or (
            "bcrypt" if devicetype == "wattpilot_flex" else "pbkdf2")
        self.announce_hash, self.secured = announce_hash, secured
        self.friendly_name, self.firmware = friendly_name, firmware
        self.status_parts, self.interval_s, self.idle_interval_s = \
            status_parts, interval_s, idle_interval_s
        self.time_scale = time_scale
        self.ticking = ticking
        """False: nothing on its own (no measurements, no clock, no websocket pings), only
        answers and changes (a frozen site); without a model, time then passes only with
        `advance`"""
        self.tokens = tokens
        """(token1, token2) for every connection instead of random ones (test vectors)"""
        self.state = ChargerState(serial=serial, devicetype=devicetype,
                                  friendly_name=friendly_name, firmware=firmware,
                                  variant=variant, voltage_v=voltage_v,
                                  phase_switch_s=phase_switch_s, energy_total_wh=energy_total_wh)
        self.model = model
        self.load = None if model is None else model.add_load(name, 0.0, phases=(1, 2, 3))
        self.writes: list[tuple[str, Any, bool]] = []
        """every setValue seen: key, value, whether it was done"""
        self.refusing = False
        self.logins = 0
        """successful logins so far"""
        self.forced_model_status: int | None = None
        """reported instead of the charger's own modelStatus (`force_model_status`)"""
        self._hp: str | None = None
        self._port = port
        self._server: Server | None = None
        self._sessions: set[Session] = set()
        self.speaking = asyncio.Event()
        """clear while `silent()`"""
        self.speaking.set()
        self._last: JsonObject = self.status()
        self._ticker: asyncio.Task[None] | None = None
        self._model_time = None if model is None else model.snapshot.time_s
        self._unsubscribe = None if model is None else model.subscribe(self._stepped)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the Wattpilot simulator has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    @property
    def password_hash(self) -> str:
        """HP, the key of the login and of the hmacs (known once started)."""
        if self._hp is None:
            raise RuntimeError("the Wattpilot simulator has not been started yet")
        return self._hp

    @property
    def clients(self) -> int:
        """connections logged in now"""
        return sum(1 for s in self._sessions if s.authenticated)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        if self._hp is None:  # PBKDF2 with 100000 rounds blocks for a while
            self._hp = await asyncio.to_thread(password_hash, self.hash_method, self.password,
                                               self.serial)
        self._server = await serve(self._serve, HOST, self._port, process_request=self._only_ws,
                                   close_timeout=1.0, reuse_address=True,
                                   ping_interval=20.0 if self.ticking else None)
        if self._port == 0:
            self._port = int(self._server.sockets[0].getsockname()[1])
        if self._ticker is None and self.ticking:
            self._ticker = asyncio.create_task(self._tick(), name=f"wattpilot-sim:{self.serial}")

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self.speaking.set()
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        if self._unsubscribe is not None:
            self._unsubscribe()
        await self.close()
        if self.model is not None and self.load is not None:
            self.model.remove_load(self.load.name)

    # -- the car and the app -------------------------------------------------------------------
    def plug_in(self, *, capacity_wh: float = 60_000.0, soc: float = 50.0) -> None:
        self.state.plug_in(capacity_wh, soc)
        self.changed()

    def unplug(self) -> None:
        self.state.unplug()
        self.changed()

    def set_price(self, ct_per_kwh: float) -> None:
        """The market price the charger reports in `awcp` (ct/kWh)."""
        self.state.price_ct = ct_per_kwh
        self.changed()

    def app_set(self, key: str, value: Any) -> None:
        """Change a setting as the Fronius app (another client) does."""
        problem = self.state.write(key, value)
        if problem is not None:
            raise ValueError(f"{key}={value!r}: {problem}")
        self.changed()

    def advance(self, dt_s: float) -> None:
        """Let `dt_s` simulated seconds pass: the car charges, the counters count."""
        self.state.advance(dt_s)
        self.changed()

    def status(self) -> JsonObject:
        """The whole status as the charger reports it now."""
        status = self.state.status()
        if self.forced_model_status is not None:
            status["modelStatus"] = self.forced_model_status
        return status

    def force_model_status(self, value: int | None) -> None:
        """Report `value` as modelStatus (any number, for a status the model does not
        reach); None: the charger's own again."""
        self.forced_model_status = value
        self.changed()

    # -- faults --------------------------------------------------------------------------------
    def drop(self) -> None:
        """Abort every connection, as a charger that lost its WLAN or rebooted."""
        for session in list(self._sessions):
            session.ws.transport.abort()

    def silent(self) -> None:
        self.speaking.clear()

    def refuse_writes(self) -> None:
        self.refusing = True

    def clear(self) -> None:
        self.refusing = False
        if not self.speaking.is_set():
            self.speaking.set()
            self.changed()

    async def go_away(self) -> None:
        """Close the port (and every connection) until `come_back()`; ends `silent()`."""
        await self.close()

    async def come_back(self) -> None:
        await self.start()

    # -- the protocol --------------------------------------------------------------------------
    def _only_ws(self, ws: ServerConnection, request: Request) -> Response | None:
        if request.path == "/ws":
            return None
        return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")

    async def _serve(self, ws: ServerConnection) -> None:
        session = Session(self, ws)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)

    def _broadcast(self, status: JsonObject) -> None:
        if not self.speaking.is_set():
            return
        targets = [s.ws for s in self._sessions if s.authenticated]
        broadcast(targets, json.dumps({"type": "deltaStatus", "status": status}))

    # -- changes and time ----------------------------------------------------------------------
    def changed(self, *, in_step: bool = False, always: tuple[str, ...] = ()) -> None:
        """Send what changed since the last deltaStatus, and the keys in `always`; keep
        the model's load in step."""
        self._follow_load(refresh=not in_step)
        if not self.speaking.is_set():
            return  # a silent charger sends it all on clear()
        status = self.status()
        delta = {k: v for k, v in status.items()
                 if k in always or (k not in _CLOCK and self._last.get(k) != v)}
        self._last = status
        if delta:
            self._broadcast(delta)

    def _follow_load(self, *, refresh: bool) -> None:
        load, model = self.load, self.model
        if load is None or model is None:
            return
        power = self.state.power_w
        phases = (1,) if self.state.phases == 1 else (1, 2, 3)
        if (load.power_w, load.on, load.phases) != (power, power > 0, phases):
            load.power_w, load.on, load.phases = power, power > 0, phases
            if refresh:
                model.refresh()

    def _stepped(self, snapshot: Snapshot) -> None:
        if self._model_time is None:
            return
        dt = snapshot.time_s - self._model_time
        self._model_time = snapshot.time_s
        if dt > 0:
            self.state.advance(dt)
            self.changed(in_step=True)

    async def _tick(self) -> None:
        last = time.monotonic()
        quiet_s = 0.0
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            if self.model is None:
                self.state.advance((now - last) * self.time_scale)
            quiet_s += now - last
            last = now
            if self.state.charging:
                self.changed(always=(*_MEASURED, *_CLOCK))
                quiet_s = 0.0
            elif quiet_s >= self.idle_interval_s:
                self.changed(always=_CLOCK)
                quiet_s = 0.0
            else:
                self.changed()
