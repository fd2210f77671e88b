"""JSON text from outside (a device's reply, an MQTT payload) as sane message values.

Python's `json.loads` accepts more than a value of a flow can carry: `NaN` and
`Infinity` (not JSON, and no Venus OS value), numbers beyond 64-bit integers or
doubles (`1e400` is infinity), lone UTF-16 surrogates (which UTF-8, D-Bus and MQTT
cannot carry), and nesting until it raises RecursionError at about 1000 levels (a
document just below that breaks the nodes downstream instead). `load_json` refuses all
of these with `JsonTextError`, whose text says why; the caller turns it into its own
failure (a failed poll, an undecoded payload).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "JsonTextError", "JsonTooDeep", "load_json"]

MAX_DEPTH = 32  # a Shelly status nests 4 levels deep, an MQTT device's state a few more
_INT_LIMIT = 1 << 64
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # maybe a lone half, which UTF-8 cannot carry
_NUMBER = re.compile(rb"[ \t\n\r]*(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?[ \t\n\r]*")
"""a JSON text that is one number (most telemetry payloads): read without the parser"""
_NUMBER_TEXT = re.compile(_NUMBER.pattern.decode(), re.ASCII)  # the same, for str


class JsonTextError(ValueError):
    """Not JSON, or JSON that no message value can be."""


class JsonTooDeep(JsonTextError):
    """JSON whose lists and objects nest deeper than MAX_DEPTH."""


def load_json(text: bytes | str) -> Any:
    """The value of a JSON text; JsonTextError if it is not a sane one."""
    if len(text) < 64:
        if isinstance(text, str):
            number = _NUMBER_TEXT.fullmatch(text)
            if number is not None:
                return _number(*number.groups())
        else:
            found = _NUMBER.fullmatch(text)
            if found is not None:
                whole, fraction, exponent = found.groups()
                return _number(whole.decode(), None if fraction is None else fraction.decode(),
                               None if exponent is None else exponent.decode())
    try:
        document = _DECODER.decode(_as_text(text))
    except RecursionError:
        raise JsonTooDeep(f"nested deeper than {MAX_DEPTH}") from None
    except MemoryError:
        raise JsonTextError("too large to decode") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, our refusals
        raise JsonTextError(_reason(exc)) from None
    if _brackets(text) > MAX_DEPTH and _too_deep(document):
        raise JsonTooDeep(f"nested deeper than {MAX_DEPTH}")
    raw = text.encode(errors="surrogatepass") if isinstance(text, str) else text
    if _SURROGATE.search(raw) is not None:
        try:
            json.dumps(document, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise JsonTextError("a lone UTF-16 surrogate") from None
    return document


def _as_text(text: bytes | str) -> str:
    """The text `json.loads` would decode: bytes in the encoding it detects, a str with a
    byte order mark refused as it refuses it."""
    if isinstance(text, str):
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return text
    return text.decode(json.detect_encoding(text), "surrogatepass")


def _brackets(text: bytes | str) -> int:
    """How many `[` and `{` the text holds: no document nests deeper than that (one in a
    string, or a byte of a UTF-16 character, only makes the count larger)."""
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def _number(whole: str, fraction: str | None, exponent: str | None) -> int | float:
    """One JSON number from its parts, as json.loads with our limits reads it."""
    try:
        if fraction is None and exponent is None:
            return _bounded_int(whole)
        return _finite_float(whole + (fraction or "") + (exponent or ""))
    except _Refused as exc:
        raise JsonTextError(str(exc)[:80]) from None


class _Refused(ValueError):
    """A number JSON's grammar allows but a message value cannot hold."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refused(f"{text[:20]} is out of range")
    return number


def _bounded_int(text: str) -> int:
    if len(text) > 21:  # 2**64 has 20 digits; a longer one cannot be in range
        raise _Refused(f"an integer of {len(text)} digits")
    number = int(text)
    if not -_INT_LIMIT < number < _INT_LIMIT:
        raise _Refused(f"{text} is out of range")
    return number


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float,
                            parse_int=_bounded_int)
"""made once: `json.loads` with these hooks would make a decoder for every text"""


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at byte {exc.pos}"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    return str(exc)[:80]


def _too_deep(document: Any) -> bool:
    """True when lists and objects nest deeper than MAX_DEPTH (without recursion)."""
    level: list[Any] = [document]  # the containers at depth 1, 2, ...
    for _ in range(MAX_DEPTH):
        inner: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                inner.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                inner.extend(v for v in item if isinstance(v, dict | list))
        if not inner:
            return False
        level = inner
    return True


