"""The distributor's request protocol: what consumers publish, parsed (pure, no I/O).

A consumer `<key>` publishes one value per topic, `<ROOT>/Requests/<key>/<Name>`, with
es-ESS's names (IsAutomatic, Request, StepSize, ...). `split_topic` finds key and name,
`parse_value` turns one payload into a typed value or a `RequestError` whose text says
which field, what arrived and what was expected, and `Consumer` keeps what one key has
published so far and turns it into the `ConsumerRequest` the allocation takes.

Where the original guessed, this reports: `IsAutomatic: 'yes'` is an error, not false;
`Priority: '35.0'` is 35 (the original refused it), `'35.5'` is an error. A malformed
field is ignored until it is fixed (its previous good value is dropped too, so a consumer
never runs on a value it has since contradicted), and `Consumer.malformed` says why. An
empty payload (MQTT's way to clear a retained value) clears the field back to its default.

`bus_name_part` makes any key usable in a D-Bus name (the original aborted every cycle on
a key with a space or an umlaut).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from flowengine.errors import shorten, shown
from flowengine.model import JsonValue
from nodes.energy.allocation import MAX_W, ConsumerRequest

__all__ = [
    "MAX_PAYLOAD",
    "PUBLISHED",
    "ROOT",
    "Consumer",
    "RequestError",
    "UnknownName",
    "bus_name_part",
    "parse_value",
    "split_topic",
]

ROOT = "es-ESS/SolarOverheadDistributor"
PUBLISHED = frozenset({"Allowance", "Explanation"})
"""Names the distributor itself publishes under `Requests/<key>/`: ignored on input."""
MAX_PAYLOAD = 1000
"""Characters of one payload; a longer one is an error, whatever the field."""
CUSTOM_NAME_CHARS = 100
"""A longer CustomName is cut to this."""
MAX_PRIORITY = 1_000_000
MAX_UNKNOWN = 16
"""Unknown names kept per consumer (reported in `errors`); more are dropped unreported."""
DEFAULT_NAME = "Solar Overhead Consumer"


class RequestError(ValueError):
    """A payload that is not a valid value for its field; one line, field first."""


class UnknownName(RequestError):
    """A name that is not in the protocol."""


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NOT_FINITE = frozenset({"nan", "inf", "infinity"})


def _fail(name: str, text: str, expected: str) -> RequestError:
    return RequestError(f"{name}: {shown(text)} {expected}")


def _number(name: str, text: str) -> float:
    """A finite decimal number (no '1_000', no 'nan', no digits other than 0-9)."""
    if not _NUMBER.fullmatch(text):
        if text.lower().lstrip("+-") in _NOT_FINITE:
            raise _fail(name, text, "is not a finite number")
        raise _fail(name, text, "is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise _fail(name, text, "is not a finite number")
    return value


def _boolean(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _fail(name, text, "is not true or false (nor 1 or 0)")


def _watts(name: str, text: str) -> float:
    value = _number(name, text)
    if value < 0:
        raise _fail(name, text, "must be ≥ 0")
    if value > MAX_W:
        raise _fail(name, text, f"must be ≤ {MAX_W:.0f} W")
    return value + 0.0  # -0.0 -> 0.0


def _non_negative(name: str, text: str) -> float:
    value = _number(name, text)
    if value < 0:
        raise _fail(name, text, "must be ≥ 0")
    return value + 0.0


def _whole(name: str, text: str, low: int, high: int) -> int:
    if not _NUMBER.fullmatch(text):
        raise _fail(name, text, "is not a whole number")
    value = float(text)
    if not math.isfinite(value) or not value.is_integer():
        raise _fail(name, text, "is not a whole number")
    if not low <= value <= high:
        raise _fail(name, text, f"must be between {low} and {high}")
    return int(value)


def _priority(name: str, text: str) -> int:
    return _whole(name, text, 0, MAX_PRIORITY)


def _instance(name: str, text: str) -> int:
    return _whole(name, text, 0, 65535)


def _custom_name(name: str, text: str) -> str:
    """Control characters out (line breaks and tabs become one space), cut to 100."""
    kept: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace():
            if kept and kept[-1] != " ":
                kept.append(" ")
        elif category not in ("Cc", "Cs"):
            kept.append(char)
    return "".join(kept).strip()[:CUSTOM_NAME_CHARS].rstrip()


def _text(name: str, text: str) -> str:
    return text


_BOOLEANS = ("IsAutomatic", "IgnoreBatReservation", "IsScriptedConsumer", "IsHttpConsumer",
             "IsMqttConsumer")
_NPC_TEXTS = ("OnUrl", "OffUrl", "StatusUrl", "PowerUrl", "OnTopic", "OnValue", "OffTopic",
              "OffValue", "StatusTopic", "PowerTopic", "OnKeywordRegex", "IsOnKeywordRegex",
              "PowerExtractRegex")

FIELDS: dict[str, Callable[[str, str], JsonValue]] = {
    "IsAutomatic": _boolean,
    "Consumption": _watts,
    "Request": _watts,
    "StepSize": _watts,
    "Minimum": _watts,
    "Priority": _priority,
    "PriorityShift": _non_negative,
    "IgnoreBatReservation": _boolean,
    "CustomName": _custom_name,
    "VRMInstanceID": _instance,
    **{name: _boolean for name in _BOOLEANS[2:]},
    **{name: _text for name in _NPC_TEXTS},
}
"""Every name of the protocol, in the order errors are reported, with its parser."""


def split_topic(topic: str, root: str = ROOT) -> tuple[str, str] | None:
    """(key, name) for `<root>/Requests/<key>/<Name>` (exactly that depth); None otherwise.

    An empty key or name is None, and so is one with an MQTT wildcard or NUL (no broker
    delivers those; a key the distributor could not publish to is no consumer).
    """
    prefix = f"{root}/Requests/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    if any(char in part for part in parts for char in "+#\0"):
        return None
    return parts[0], parts[1]


def parse_value(name: str, payload: str) -> JsonValue:
    """The typed value of one field, or RequestError (UnknownName for a name not in it)."""
    parse = FIELDS.get(name)
    if parse is None:
        raise _unknown(name, payload)
    if len(payload) > MAX_PAYLOAD:
        raise _fail(name, payload, f"is longer than {MAX_PAYLOAD} characters")
    return parse(name, payload.strip())


def _unknown(name: str, payload: str) -> UnknownName:
    if name in PUBLISHED:
        return UnknownName(f"{name}: {shown(payload)} is published by the distributor, "
                           "not read from consumers")
    close = difflib.get_close_matches(name, FIELDS, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "not an es-ESS request name"
    return UnknownName(f"{shorten(name)}: {shown(payload)} under an unknown name; {hint}")


@dataclass
class Consumer:
    """What one consumer key has published so far (mutable; one per key)."""

    key: str
    first_seen: float  # monotonic
    last_seen: float
    values: dict[str, JsonValue] = field(default_factory=dict)  # es-ESS name -> value
    errors: dict[str, str] = field(default_factory=dict)  # name -> RequestError text

    def update(self, name: str, payload: str, now: float) -> bool:
        """Parse and store one field; True when what is stored changed.

        Refreshes `last_seen`, except for the distributor's own names (PUBLISHED), which
        are ignored entirely. A malformed value drops the field's previous good value (it
        is ignored until fixed) and records the error; a good value clears it. An unknown
        name is recorded in `errors` too (at most MAX_UNKNOWN of them), so it is
        reported, but it does not make the consumer `malformed`. An empty (or blank)
        payload clears the field: its default applies again.
        """
        if name in PUBLISHED:
            return False
        self.last_seen = now
        if not payload.strip():
            had = name in self.values or name in self.errors
            self.values.pop(name, None)
            self.errors.pop(name, None)
            return had
        try:
            value = parse_value(name, payload)
        except UnknownName as exc:
            if name not in self.errors and self._unknown_count() >= MAX_UNKNOWN:
                return False
            return self._error(name, str(exc))
        except RequestError as exc:
            return self._error(name, str(exc))
        changed = name in self.errors or name not in self.values or self.values[name] != value
        self.errors.pop(name, None)
        self.values[name] = value
        return changed

    def _error(self, name: str, text: str) -> bool:
        changed = name in self.values or self.errors.get(name) != text
        self.values.pop(name, None)
        self.errors[name] = text
        return changed

    def _unknown_count(self) -> int:
        return sum(1 for name in self.errors if name not in FIELDS)

    @property
    def kind(self) -> str:
        """"http", "mqtt" or "scripted" (IsScriptedConsumer true, or neither of the others)."""
        if self.values.get("IsScriptedConsumer") is True:
            return "scripted"
        if self.values.get("IsHttpConsumer") is True:
            return "http"
        if self.values.get("IsMqttConsumer") is True:
            return "mqtt"
        return "scripted"

    @property
    def malformed(self) -> str | None:
        """The errors of protocol fields as one line, in protocol order; None when none."""
        texts = [self.errors[name] for name in FIELDS if name in self.errors]
        return "; ".join(texts) if texts else None

    @property
    def custom_name(self) -> str:
        name = self.values.get("CustomName")
        return name if isinstance(name, str) and name else DEFAULT_NAME

    @property
    def vrm_instance(self) -> int | None:
        value = self.values.get("VRMInstanceID")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def request(self) -> ConsumerRequest:
        """The allocation's view: defaults where nothing (good) has arrived."""
        return ConsumerRequest(
            key=self.key,
            is_automatic=self._flag("IsAutomatic"),
            consumption=self._float("Consumption", 0.0),
            request=self._float("Request", 0.0),
            step_size=self._float("StepSize", 0.0),
            minimum=self._float("Minimum", 0.0),
            priority=self._float("Priority", 100.0),
            priority_shift=self._float("PriorityShift", 0.0),
            ignore_bat_reservation=self._flag("IgnoreBatReservation"),
        )

    def bms_name(self) -> str:
        """The fake BMS's custom name: 'Pool heater ☼ @ 750W' (automatic), 'Pool heater ◌'."""
        if not self._flag("IsAutomatic"):
            return f"{self.custom_name} ◌"
        return f"{self.custom_name} ☼ @ {_shown_watts(self._float('Request', 0.0))}W"

    def bms_soc(self) -> float:
        """Consumption as % of the request, 0..100; 0 when the request is 0."""
        request = self._float("Request", 0.0)
        if request <= 0:
            return 0.0
        return min(100.0, max(0.0, self._float("Consumption", 0.0) / request * 100))

    def _flag(self, name: str) -> bool:
        return self.values.get(name) is True

    def _float(self, name: str, default: float) -> float:
        value = self.values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return default
        return float(value)


def _shown_watts(value: float) -> str:
    """Whole watts as an integer ('750'), others with up to two decimals ('750.5')."""
    rounded = round(value, 2)
    return str(int(rounded)) if rounded.is_integer() else str(rounded)


_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
BUS_NAME_CHARS = 100
"""A longer bus-name part is cut to 80 characters plus '_' and 8 hex digits of a hash."""


def bus_name_part(key: str) -> str:
    """A D-Bus bus-name part made from the key, matching ^[A-Za-z0-9_]+$; deterministic.

    Letters and digits are kept, '_' becomes '__', every other character _XX per UTF-8
    byte (upper-case hex): 'Pool heater' -> 'Pool_20heater', 'Küche' -> 'K_C3_BCche',
    'my_pool' -> 'my__pool'. Doubling '_' keeps the encoding one-to-one (otherwise ' '
    and '_20' would both give '_20'). A result longer than 100 characters becomes its
    first 80, '_' and the first 8 hex digits of the key's SHA-1. The empty key is '_'.
    The part may begin with a digit: it is meant to follow a prefix
    (`esESS_SolarOverheadConsumer_<part>`), not to be a bus-name element on its own.
    """
    out: list[str] = []
    for char in key:
        if char in _KEPT:
            out.append(char)
        elif char == "_":
            out.append("__")
        else:
            out.extend(f"_{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    part = "".join(out) or "_"
    if len(part) > BUS_NAME_CHARS:
        digest = hashlib.sha1(key.encode("utf-8", "surrogatepass"),
                              usedforsecurity=False).hexdigest()[:8]
        part = f"{part[:80]}_{digest}"
    return part
