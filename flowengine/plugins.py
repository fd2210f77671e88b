"""Installed entry points of one group, read without `importlib.metadata`.

`importlib.metadata` imports `email`, `zipfile` and `csv` to parse every installed
distribution's metadata (about 1 MB resident, for the life of the runtime); finding
the node plugins needs only each distribution's `entry_points.txt`. This reads those
files the way `importlib.metadata.entry_points(group=...)` finds them: every
`*.dist-info` and `*.egg-info` directory in the `sys.path` entries, in path order; of
two installs of the same distribution (name normalised as PEP 503 says), the first on
the path wins. A test checks the two agree on this machine's installed packages.

Only directories on the path are read: an egg or wheel zip on `sys.path` has no
plugins for us (pip installs unpacked).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["EntryPoint", "entry_points"]

_INFO_SUFFIXES = (".dist-info", ".egg-info")
_SECTION = re.compile(r"\[\s*(?P<name>[^\]]+?)\s*\]")
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(?::\s*(?P<attr>[\w.]+)\s*)?(?:\[.*\])?\s*$")


@dataclass(frozen=True, slots=True)
class EntryPoint:
    """One `name = module[:attr]` line of a distribution's entry_points.txt."""

    name: str
    value: str
    group: str
    dist: str

    def load(self) -> Any:
        """The module, or the attribute of it the entry point names."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"'{self.value}' is not 'module' or 'module:attribute'")
        loaded: Any = importlib.import_module(match["module"])
        for part in (match["attr"] or "").split(".") if match["attr"] else ():
            loaded = getattr(loaded, part)
        return loaded


def entry_points(group: str, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """Every entry point of `group` installed on `path` (default: `sys.path`)."""
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for info in _distributions(sys.path if path is None else path):
        dist = _normalised(info)
        if dist in seen:
            continue
        seen.add(dist)
        try:
            with open(os.path.join(info, "entry_points.txt"), encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError):
            continue
        found.extend(EntryPoint(name, value, group, dist)
                     for name, value in _section(text, group))
    return found


def _distributions(path: Iterable[str]) -> Iterator[str]:
    for entry in path:
        directory = entry or "."
        try:
            names = sorted(os.listdir(directory))
        except OSError:  # missing, a file, a zip: nothing installed there for us
            continue
        for name in names:
            if name.lower().endswith(_INFO_SUFFIXES):
                yield os.path.join(directory, name)


def _normalised(info: str) -> str:
    """The distribution name of a `name-version.dist-info` folder, as PEP 503 compares."""
    stem = os.path.basename(info).rsplit(".", 1)[0].split("-", 1)[0]
    return re.sub(r"[-_.]+", "-", stem).lower()


def _section(text: str, group: str) -> Iterator[tuple[str, str]]:
    """(name, value) lines of one `[group]` of an INI-style entry_points.txt."""
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _SECTION.fullmatch(line)
        if header is not None:
            current = header["name"]
        elif current == group and "=" in line:
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()
