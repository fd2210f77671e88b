"""Write the YAML of a site file by hand: comments, commented-out entries and `!secret`.

PyYAML's dumper can do none of the three, and the output is small and regular: mappings
with snake_case keys, lists, and scalars. A text is written plain only when YAML 1.2
(as the loader reads it) and YAML 1.1 both read it back as the same text; otherwise it
is double-quoted with JSON's escapes, which YAML reads the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Annotated", "SecretRef", "render"]

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@+*-]*( [A-Za-z0-9_./@+*()-]+)*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


@dataclass(frozen=True)
class SecretRef:
    """`!secret name`: the value lives in the secrets file."""

    name: str


@dataclass(frozen=True)
class Annotated:
    """A value with a comment written after it on its line."""

    value: Any
    comment: str


def scalar(value: Any) -> str:
    if isinstance(value, SecretRef):
        return f"!secret {value.name}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)


def render(value: Any, indent: int = 0) -> list[str]:
    """The lines of a mapping or list (no trailing newline)."""
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_item(f"{pad}{key}:", item, indent))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                inner = render(item, indent + 2)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out.extend(inner[1:])
            else:
                out.extend(_item(f"{pad}-", item, indent))
    else:
        out.append(pad + scalar(value))
    return out


def _item(head: str, item: Any, indent: int) -> list[str]:
    comment = ""
    if isinstance(item, Annotated):
        item, comment = item.value, f"  # {item.comment}"
    if isinstance(item, dict | list) and item:
        return [head + comment, *render(item, indent + 2)]
    if isinstance(item, dict):
        return [f"{head} {{}}{comment}"]
    if isinstance(item, list):
        return [f"{head} []{comment}"]
    return [f"{head} {scalar(item)}{comment}"]
