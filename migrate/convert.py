"""Reading one es-ESS section into flow vars: what each value meant there, checked here.

es-ESS read values with `int()`, `float()` and `.lower() == "true"`, so a `yes` was
false and `35.0` was not a whole number. These helpers read the same way and say in
the report when the result differs from what the text seems to mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from migrate.ini import IniFile, IniSection, IniValue
from migrate.report import Report
from migrate.yamlout import SecretRef

__all__ = ["Context", "Reader", "bus_element", "instance_name", "put", "whole"]

_TRUTHY = {"yes", "on", "1", "y", "enabled", "enable"}


def instance_name(key: str) -> str:
    """A site-file instance name (`^[A-Za-z0-9][A-Za-z0-9_-]*$`) made from a section key."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", key.strip()).strip("-_")
    return name or "unnamed"


def bus_element(key: str) -> str:
    """A D-Bus name element (letters, digits, _) made from a section key."""
    return re.sub(r"[^A-Za-z0-9_]", "_", key.strip()) or "unnamed"


@dataclass
class Context:
    ini: IniFile
    report: Report
    secrets: dict[str, str] = field(default_factory=dict)
    exported: dict[tuple[str, str], str] = field(default_factory=dict)  # (service, path)
    missing_flags: set[str] = field(default_factory=set)

    def secret(self, name: str, value: str) -> SecretRef:
        """Keep `value` for the secrets file under a unique `name`."""
        base, number = name, 2
        while name in self.secrets and self.secrets[name] != value:
            name, number = f"{base}_{number}", number + 1
        self.secrets[name] = value
        return SecretRef(name)


class Reader:
    """One section: take keys (marking them as read), convert, and report the rest."""

    def __init__(self, ctx: Context, section: IniSection) -> None:
        self.ctx, self.section = ctx, section
        self.used: set[str] = set()

    # -- where -------------------------------------------------------------------------

    def note(self, value: IniValue | None, text: str, *, attention: bool = False) -> None:
        line = value.line if value else self.section.line
        self.ctx.report.add(line, self.section.name, value.key if value else None, text,
                            attention=attention)

    # -- taking keys -------------------------------------------------------------------

    def take(self, key: str, *aliases: str, spelling_note: str | None = None
             ) -> IniValue | None:
        """The value of `key` (as es-ESS read it) or of one of its `aliases`."""
        found = self.section.find(key, *aliases)
        if found is None:
            return None
        self.used.add(found.key)
        if found.key != key:
            if found.key in aliases and spelling_note:
                self.note(found, spelling_note)
            elif found.key.lower() == key.lower():
                self.note(found, f"es-ESS reads `{key}` exactly (keys are case-sensitive "
                                 f"there), so it did not see this key; imported")
            elif spelling_note:
                self.note(found, spelling_note)
        if found.interpolation_error:
            # configparser's message quotes the value: never repeat it (it may be a password)
            self.note(found, "es-ESS could not read this value (a `%` must be written "
                             "`%%` there, or start a `%(key)s` reference); imported as "
                             "written", attention=True)
        return found

    def drop(self, key: str, reason: str, *, attention: bool = False,
             when: str | None = None) -> IniValue | None:
        """`key` has no counterpart: report it (only if present; `when`: only if its value
        is this, case-insensitive)."""
        found = self.section.find(key)
        if found is None:
            return None
        self.used.add(found.key)
        if when is None or found.value.strip().lower() == when:
            self.note(found, f"not imported: {reason}", attention=attention)
        return found

    def leftovers(self) -> None:
        for key, value in self.section.values.items():
            if key not in self.used:
                self.note(value, "not imported: es-ESS documents no such key in this "
                                 "section (a typo?)", attention=True)

    # -- converting --------------------------------------------------------------------

    def text(self, key: str, *aliases: str, spelling_note: str | None = None
             ) -> str | None:
        found = self.take(key, *aliases, spelling_note=spelling_note)
        if found is None or not found.value.strip():
            return None
        return found.value.strip()

    def integer(self, key: str, *aliases: str) -> int | None:
        found = self.take(key, *aliases)
        if found is None or not found.value.strip():
            return None
        text = found.value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            self.note(found, f"not imported: `{text[:40]}` is not a whole number",
                      attention=True)
            return None
        if number.is_integer():
            self.note(found, f"es-ESS refused `{text}` (int() needs a whole number "
                             f"written without a point); imported as {int(number)}")
            return int(number)
        self.note(found, f"not imported: `{text}` is not a whole number", attention=True)
        return None

    def number(self, key: str, *aliases: str) -> float | None:
        found = self.take(key, *aliases)
        if found is None or not found.value.strip():
            return None
        try:
            return float(found.value.strip())
        except ValueError:
            self.note(found, f"not imported: `{found.value.strip()[:40]}` is not a number",
                      attention=True)
            return None

    def boolean(self, key: str, *aliases: str) -> bool | None:
        found = self.take(key, *aliases)
        if found is None or not found.value.strip():
            return None
        return self.flag(found)

    def flag(self, found: IniValue) -> bool:
        """es-ESS's rule: true only when the text is `true` in any letter case."""
        text = found.value.strip().lower()
        if text == "true":
            return True
        if text in _TRUTHY:
            self.note(found, f"es-ESS read `{found.value.strip()}` as false (only `true` is "
                             "true there); imported as false: write true if you meant it",
                      attention=True)
        elif text != "false":
            self.note(found, f"`{found.value.strip()[:40]}` is not true or false; es-ESS "
                             "read it as false, and so does the import", attention=True)
        return False

    def password(self, key: str, secret_name: str) -> SecretRef | None:
        """A password goes to the secrets file; site.yaml gets `!secret name`."""
        found = self.take(key)
        if found is None or not found.value:
            return None
        return self.ctx.secret(secret_name, found.value)


def put(target: dict[str, Any], name: str, value: Any) -> None:
    """Set a var only when the ini gave a value (the flow's default applies otherwise)."""
    if value is not None:
        target[name] = value


def whole(value: float | None) -> float | int | None:
    """60.0 -> 60 (a number var reads better without `.0`)."""
    if value is not None and float(value).is_integer():
        return int(value)
    return value
