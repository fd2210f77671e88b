"""Read an es-ESS config.ini as es-ESS read it, and remember where each key was written.

es-ESS used `configparser.ConfigParser()` with case-preserving keys and the default
`%` interpolation, so this does too: `=` or `:` between key and value, `#` and `;`
start a comment line (not an inline comment: `Host = x ; mine` has the value
`x ; mine`), an indented line continues the value above, `%%` is a literal `%`, and
`[DEFAULT]` keys are inherited by every section. configparser forgets line numbers, so
a small scanner that follows the same rules keeps them beside the parsed values.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["IniError", "IniFile", "IniSection", "IniValue", "read_ini"]

# configparser's own patterns (ConfigParser._SECT_TMPL and _OPT_TMPL)
_SECTION = re.compile(r"\[(?P<header>.+)\]")
_OPTION = re.compile(r"(?P<option>.*?)\s*(?P<vi>[=:])\s*(?P<value>.*)$")
_COMMENT = ("#", ";")


class IniError(Exception):
    """The file could not be read or parsed; `str()` is `file:line: what`."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line, self.message = file, line, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class IniValue:
    """One key as written: its value after interpolation (None if that failed) and line."""

    key: str
    value: str
    line: int
    interpolation_error: str | None = None


@dataclass
class IniSection:
    name: str
    line: int
    values: dict[str, IniValue] = field(default_factory=dict)  # own keys, as written

    def find(self, *names: str) -> IniValue | None:
        """The first of `names` present; exact spelling first, then any letter case."""
        for name in names:
            if name in self.values:
                return self.values[name]
        lowered = {k.lower(): v for k, v in self.values.items()}
        for name in names:
            if name.lower() in lowered:
                return lowered[name.lower()]
        return None


@dataclass
class IniFile:
    path: str
    sections: list[IniSection]
    defaults: IniSection | None

    def section(self, *names: str) -> IniSection | None:
        """The first section called one of `names` (exact; then any letter case)."""
        for name in names:
            for section in self.sections:
                if section.name == name:
                    return section
        for name in names:
            for section in self.sections:
                if section.name.lower() == name.lower():
                    return section
        return None


def read_ini(path: str | Path) -> IniFile:
    """Parse `path`; raises IniError with the line for anything es-ESS could not read."""
    file = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise IniError(file, None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        line = Path(path).read_bytes()[: exc.start].count(b"\n") + 1
        raise IniError(file, line, "not UTF-8 text; save the file as UTF-8") from exc
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # as es-ESS
    try:
        parser.read_string(text, source=file)
    except configparser.MissingSectionHeaderError as exc:
        raise IniError(file, exc.lineno, "a key before the first [Section]") from exc
    except configparser.ParsingError as exc:
        line = exc.errors[0][0]  # its text is not shown: it may hold a password
        raise IniError(file, line, "not a `key = value` line, a [Section] or a comment"
                       ) from exc
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as exc:
        what = (f"section [{exc.section}] appears twice"
                if isinstance(exc, configparser.DuplicateSectionError)
                else f"key {exc.option} appears twice in [{exc.section}]")
        raise IniError(file, exc.lineno, f"{what} (es-ESS refused to start)") from exc
    except configparser.Error as exc:
        raise IniError(file, None, str(exc).splitlines()[0]) from exc
    return _collect(file, text, parser)


def _collect(file: str, text: str, parser: configparser.ConfigParser) -> IniFile:
    lines = _key_lines(text)
    sections: list[IniSection] = []
    defaults: IniSection | None = None
    for name, (line, keys) in lines.items():
        section = IniSection(name, line)
        for key, key_line in keys.items():
            section.values[key] = _value(parser, name, key, key_line)
        if name == parser.default_section:
            defaults = section
        else:
            sections.append(section)
    return IniFile(file, sections, defaults)


def _value(parser: configparser.ConfigParser, section: str, key: str,
           line: int) -> IniValue:
    if section == parser.default_section:
        return IniValue(key, parser.defaults().get(key, ""), line)
    if not parser.has_option(section, key):  # the scanner and configparser disagree
        return IniValue(key, "", line, "could not be read")
    raw = parser.get(section, key, raw=True)
    try:
        value = parser.get(section, key)
    except configparser.InterpolationError as exc:
        return IniValue(key, raw, line, type(exc).__name__)  # its text quotes the value
    return IniValue(key, value, line)


def _key_lines(text: str) -> dict[str, tuple[int, dict[str, int]]]:
    """section -> (its line, key -> line), following configparser's reading rules."""
    found: dict[str, tuple[int, dict[str, int]]] = {}
    keys: dict[str, int] | None = None
    key_indent = -1
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(_COMMENT):
            continue
        indent = len(line) - len(line.lstrip())
        if keys is not None and key_indent >= 0 and indent > key_indent:
            continue  # a continuation line of the value above
        header = _SECTION.match(stripped)
        if header:
            keys = {}
            found[header.group("header")] = (number, keys)
            key_indent = -1
            continue
        option = _OPTION.match(stripped)
        if option and keys is not None:
            keys.setdefault(option.group("option").rstrip(), number)
            key_indent = indent
    return found
