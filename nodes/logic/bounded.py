"""The operators and functions of the formula expression language, bounded.

Each one checks, before it computes, the size of what it would make, and raises
EvaluationError with a message a user understands when that is too large; the limits
are below and described in `nodes.logic.expression`. Python's own `round(1, -10**8)`,
`'%099999999d' % 1` or `x * 10**9` would block the event loop for seconds or minutes.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "ARITY",
    "BEYOND",
    "BIG",
    "BINARY",
    "COMPARE",
    "CONSTANT_ARGS",
    "FUNCTIONS",
    "MAX_EXPONENT",
    "MAX_FIELDS",
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_NDIGITS",
    "MAX_TEXT",
    "MAX_WIDTH",
    "EvaluationError",
    "check_lists",
    "check_ndigits",
    "format_text",
    "kind",
    "shorten",
    "show",
]

MAX_INT_BITS = 1024  # integers that operators take and make stay below 2**1024 in size
MAX_EXPONENT = 10_000  # the largest exponent of `**` (asteval's limit)
MAX_TEXT = 4096  # characters of a text that an operator makes
MAX_ITEMS = 1000  # items of a list that an operator makes or searches, or min/max go through
MAX_FIELDS = 20  # %-fields in one format text, %% included
MAX_WIDTH = 100  # width and precision of one %-field
MAX_NDIGITS = 30  # round(x, ndigits) with |ndigits| at most this

BIG = 1 << MAX_INT_BITS
BEYOND = f"beyond ±2**{MAX_INT_BITS} (about 1.8e308)"


class EvaluationError(ArithmeticError):
    """Evaluating failed (division by zero, a result too large, a wrong type...)."""


def show(value: object) -> str:
    """`value` for a message, short even when the value is huge."""
    if isinstance(value, int) and not -10**15 <= value <= 10**15:
        bits = value.bit_length()
        return f"{value:.3g}" if bits <= 1000 else f"an integer of {bits} bits"
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:30]!r}... ({len(value)} characters)"
    return repr(value)


def kind(value: object) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    for types, name in ((int | float, "a number"), (str, "a text"), (list, "a list"),
                        (dict, "a mapping")):
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"


# -- the functions -------------------------------------------------------------------------

def clamp(x: float, lo: float, hi: float) -> float:
    """x limited to the range lo..hi."""
    return lo if x < lo else hi if x > hi else x


def check_ndigits(ndigits: object) -> None:
    if isinstance(ndigits, int) and not -MAX_NDIGITS <= ndigits <= MAX_NDIGITS:
        raise EvaluationError(f"round: ndigits must be between -{MAX_NDIGITS} and "
                              f"{MAX_NDIGITS}, got {show(ndigits)}")


def _round(x: Any, ndigits: Any = None) -> Any:
    """round, with ndigits bounded: round(1, -10**8) would compute 10**10**8."""
    if ndigits is None:
        return round(x)
    check_ndigits(ndigits)
    if isinstance(x, int) and not -BIG < x < BIG:
        raise EvaluationError(f"round: the number is {BEYOND}")
    return round(x, ndigits)


def _through(name: str, args: tuple[Any, ...]) -> None:
    """min or max of one list (text, mapping), or comparing lists, at most MAX_ITEMS."""
    kinds = (list | str | dict) if len(args) == 1 else list
    for arg in args:
        if isinstance(arg, kinds) and len(arg) > MAX_ITEMS:
            raise EvaluationError(f"{name} goes through at most {MAX_ITEMS} items, got "
                                  f"{kind(arg)} of {len(arg)}")


def _min(*args: Any) -> Any:
    _through("min", args)
    return min(*args)


def _max(*args: Any) -> Any:
    _through("max", args)
    return max(*args)


def _clamp(x: Any, lo: Any, hi: Any) -> Any:
    _through("clamp", (x, lo, hi))
    return clamp(x, lo, hi)


def _sqrt(x: Any) -> float:
    if isinstance(x, int | float) and x < 0:
        raise EvaluationError(f"sqrt: the number is negative ({show(x)})")
    return math.sqrt(x)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": _min, "max": _max, "abs": abs, "round": _round, "clamp": _clamp,
    "floor": math.floor, "ceil": math.ceil, "sqrt": _sqrt}
ARITY = {"min": (1, None), "max": (1, None), "abs": (1, 1), "round": (1, 2),
         "clamp": (3, 3), "floor": (1, 1), "ceil": (1, 1), "sqrt": (1, 1)}
CONSTANT_ARGS = {("round", 1): check_ndigits}  # checked at compile time when constant

# -- the operators, bounded ----------------------------------------------------------------

def _ints(symbol: str, a: int, b: int) -> None:
    if not (-BIG < a < BIG and -BIG < b < BIG):
        raise EvaluationError(f"'{symbol}': an integer {BEYOND} is not allowed")


def _int(symbol: str, result: int) -> int:
    if -BIG < result < BIG:
        return result
    raise EvaluationError(f"'{symbol}': the result would be {BEYOND}")


def _sized(symbol: str, sequence: object, size: int) -> None:
    text = isinstance(sequence, str)
    if size > (MAX_TEXT if text else MAX_ITEMS):
        unit, limit = ("characters", MAX_TEXT) if text else ("items", MAX_ITEMS)
        raise EvaluationError(f"'{symbol}': the result would be {show(size)} {unit} long, "
                              f"more than {limit}")


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        _ints("+", a, b)
        return _int("+", a + b)
    if isinstance(a, str | list) and type(a) is type(b):
        _sized("+", a, len(a) + len(b))
    return a + b


def _sub(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        _ints("-", a, b)
        return _int("-", a - b)
    return a - b


def _mul(a: Any, b: Any) -> Any:
    if isinstance(a, int):
        if isinstance(b, int):
            _ints("*", a, b)
            return _int("*", a * b)
        if isinstance(b, str | list):
            _sized("*", b, len(b) * a)
    elif isinstance(a, str | list) and isinstance(b, int):
        _sized("*", a, len(a) * b)
    return a * b


def _truediv(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        _ints("/", a, b)
    return a / b


def _floordiv(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        _ints("//", a, b)
    return a // b


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str):
        return format_text(a, b)
    if isinstance(a, int) and isinstance(b, int):
        _ints("%", a, b)
    return a % b


def _pow(a: Any, b: Any) -> Any:
    if isinstance(b, int | float) and b > MAX_EXPONENT:
        raise EvaluationError(f"'**': the exponent {show(b)} is more than {MAX_EXPONENT}")
    if isinstance(a, int) and isinstance(b, int):
        _ints("**", a, b)
        if b <= 0:
            return a ** b
        if (a.bit_length() - 1) * b >= MAX_INT_BITS:  # the result has more bits than that
            raise EvaluationError(f"'**': the result would be {BEYOND}")
        return _int("**", a ** b)
    try:
        result = a ** b
    except OverflowError:
        raise EvaluationError("'**': the result is too large for a float") from None
    if isinstance(result, complex):
        raise EvaluationError("'**': a negative number to a fractional power is not a "
                              "real number")
    return result


BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: _add, ast.Sub: _sub, ast.Mult: _mul, ast.Div: _truediv,
    ast.FloorDiv: _floordiv, ast.Mod: _mod, ast.Pow: _pow}

_COMPARE_SYMBOLS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
                    ast.GtE: ">=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in",
                    ast.NotIn: "not in"}
COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_,
    ast.IsNot: operator.is_not, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b}


def check_lists(op: type[ast.cmpop], a: object, b: object) -> None:
    """A comparison of lists or mappings, or `in` a list, goes through at most MAX_ITEMS."""
    if op is ast.In or op is ast.NotIn:
        size = len(b) if isinstance(b, list) else 0
    elif isinstance(a, list | dict) and type(a) is type(b):
        size = min(len(a), len(b))
    else:
        return
    if size > MAX_ITEMS:
        raise EvaluationError(f"'{_COMPARE_SYMBOLS[op]}' goes through at most {MAX_ITEMS} "
                              f"items of {kind(b)}, got {size}")


# -- text % value ------------------------------------------------------------------------------

# One %-field, read as Python reads it (possessive, so no other reading is tried): a key
# without parentheses, flags, width, precision, one ignored h/l/L, the conversion. A
# field this does not cover ('*', a key with parentheses, a bad conversion) matches as a
# lone '%' and is refused.
_FIELD = re.compile(r"%(?:%|(?:\((?P<key>[^()]*)\))?(?P<flags>[-+ #0]*+)(?P<width>[0-9]*+)"
                    r"(?:\.(?P<precision>[0-9]*+))?[hlL]?(?P<conversion>[diouxXeEfFgGcrsa]))?")


def format_text(text: str, value: object) -> str:
    """`text % value`, refused before it runs when the result could be large."""
    if len(text) > MAX_TEXT:
        raise EvaluationError(f"'%': the format text is longer than {MAX_TEXT} characters")
    if text.count("%") > 2 * MAX_FIELDS:
        raise EvaluationError(f"'%': the format text has more than {MAX_FIELDS} fields")
    mapping = value if isinstance(value, dict) else None
    size, fields, positional = len(text), 0, False
    for field in _FIELD.finditer(text):
        fields += 1
        if fields > MAX_FIELDS:
            raise EvaluationError(f"'%': the format text has more than {MAX_FIELDS} fields")
        spec = field.group()
        conversion = field["conversion"]
        if spec == "%%":
            continue
        if conversion is None:
            raise EvaluationError(f"'%': the field at {show(text[field.start():][:8])} is "
                                  "not supported (write %d, %5.1f, %(key)s ..., no '*')")
        width = _spec_number(field["width"], "width")
        precision = _spec_number(field["precision"], "precision")
        key = field["key"]
        if key is not None:
            if mapping is None:
                raise EvaluationError(f"'%': the field {show(spec)} needs a mapping, not "
                                      f"{kind(value)}")
            if key not in mapping:
                raise EvaluationError(f"'%': the mapping has no key {show(key)}")
            item = mapping[key]
        elif mapping is not None:
            raise EvaluationError(f"'%': with a mapping, write fields with a key, like "
                                  f"%(soc)s, not {show(spec)}")
        elif positional:
            raise EvaluationError("'%': the format text has more fields than values "
                                  "(it formats one value)")
        else:
            positional, item = True, value
        size += max(width or 0, _field_size(item, conversion, precision))
    if size > MAX_TEXT:
        raise EvaluationError(f"'%': the text could be {size} characters long, more than "
                              f"{MAX_TEXT}")
    return text % value


def _spec_number(digits: str | None, what: str) -> int | None:
    if not digits:
        return None if digits is None else 0
    if len(digits) > 3 or int(digits) > MAX_WIDTH:
        raise EvaluationError(f"'%': the {what} {shorten(digits, 20)} is more than "
                              f"{MAX_WIDTH}")
    return int(digits)


def _field_size(item: object, conversion: str, precision: int | None) -> int:
    """At most the length of `item` formatted by one field (its width aside)."""
    if isinstance(item, str):
        if len(item) > MAX_TEXT:
            raise EvaluationError(f"'%': a text of {len(item)} characters is more than "
                                  f"{MAX_TEXT}")
        size = 10 * len(item) + 2 if conversion in "ra" else len(item)
        return size if precision is None else min(size, precision)
    if isinstance(item, int):
        if not -BIG < item < BIG:
            raise EvaluationError(f"'%': an integer {BEYOND} is not allowed")
        bits = item.bit_length()
    elif isinstance(item, float):
        bits = max(math.frexp(item)[1], 0)
    elif item is None:
        return 4
    else:
        raise EvaluationError(f"'%' formats numbers, texts, True, False and None, "
                              f"not {kind(item)}")
    return bits // 3 + 12 + (6 if precision is None else precision)  # octal digits, sign...


def shorten(text: str, limit: int = 60) -> str:
    """`text`, cut to `limit` characters with '...'."""
    return text if len(text) <= limit else text[:limit - 3] + "..."
