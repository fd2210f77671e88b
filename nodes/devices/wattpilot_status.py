"""What the Wattpilot client knows about its charger, without I/O: `hello`, the status.

`WattpilotStatus` merges the status the way docs/design/wattpilot-protocol.md §2.1-§2.2
describes it: after each login the `fullStatus` parts are collected; the set is
complete at the first part with `partial: false` or, on firmware that sends no
`partial`, at the first `deltaStatus`. Only then is it `ready`, and it replaces the
status of the previous connection in place. Each `deltaStatus` (and the status in a
write's `response`) is merged as it comes. Listeners are told which keys changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowengine.model import JsonValue

__all__ = ["StatusListener", "WattpilotHello", "WattpilotStatus", "request_number"]

log = logging.getLogger(__name__)

StatusListener = Callable[[frozenset[str]], None]
"""Called with the status keys whose values changed."""


@dataclass(frozen=True, slots=True)
class WattpilotHello:
    """What the charger says about itself in `hello`."""

    serial: str
    devicetype: str
    version: str
    friendly_name: str
    secured: bool

    @classmethod
    def parse(cls, message: Mapping[str, Any]) -> WattpilotHello:
        return cls(serial=str(message.get("serial", "")),
                   devicetype=str(message.get("devicetype", "")),
                   version=str(message.get("version", "")),
                   friendly_name=str(message.get("friendly_name", "")),
                   secured=_truthy(message.get("secured")))


def _truthy(value: object) -> bool:
    """`secured` is a bool on some firmware and a number on others (sheet §1.2);
    missing means not secured."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    return False


def request_number(value: object) -> int | None:
    """A response's requestId as our number: N, "N" and "Nsm" all match N (sheet §2.3:
    which one a charger echoes for a securedMsg is not settled)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.removesuffix("sm")
        if text.isascii() and text.isdigit():
            return int(text)
    return None


class WattpilotStatus:
    """The charger's status keys, merged from fullStatus parts and deltas."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, JsonValue] = {}
        self.ready = False  # the full status of this connection is complete
        self._partial: dict[str, JsonValue] | None = None  # full status being collected
        self._parts = 0  # fullStatus parts collected since the login
        self._listeners: list[StatusListener] = []

    def on_change(self, listener: StatusListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) \
            if listener in self._listeners else None

    def expect_full(self) -> None:
        """A new login: collect its full status before being ready again."""
        self._partial, self.ready, self._parts = {}, False, 0

    def lost(self) -> None:
        self._partial, self.ready = None, False

    def full(self, status: Mapping[str, Any], *, partial: object) -> bool:
        """Merge one fullStatus part; True when this completed the full status."""
        self._parts += 1
        return self._collect(status, complete=partial is False)

    def delta(self, status: Mapping[str, Any]) -> bool:
        """Merge a deltaStatus; True when it completed a full status sent without
        `partial` (MAD and RUA treat the first delta after it so). A delta before any
        fullStatus part is collected with the parts that follow."""
        return self._collect(status, complete=self._parts > 0)

    def apply(self, status: Mapping[str, Any]) -> None:
        """Merge changed keys (a delta, a write's response, a later full status)."""
        current = self.values
        changed = frozenset(k for k, v in status.items()
                            if k not in current or current[k] != v)
        current.update(status)
        if changed:
            self._notify(changed)

    def _collect(self, status: Mapping[str, Any], *, complete: bool) -> bool:
        if self._partial is None:  # ready already: merged as it comes
            self.apply(status)
            return False
        self._partial.update(status)
        if not complete:
            return False
        full, self._partial = self._partial, None
        current = self.values
        changed = {k for k in full if k not in current or current[k] != full[k]}
        changed |= set(current) - set(full)
        current.clear()  # in place: a reader holding `values` sees the new status
        current.update(full)
        self.ready = True
        self._notify(frozenset(changed))
        return True

    def _notify(self, changed: frozenset[str]) -> None:
        for listener in list(self._listeners):
            call_listener(listener, changed, self.name)


def call_listener(listener: Callable[[Any], None], argument: object, name: str) -> None:
    """Run one listener; a failure is logged with its traceback, and the client lives."""
    try:
        listener(argument)
    except Exception:
        log.exception("%s: a listener failed", name)
