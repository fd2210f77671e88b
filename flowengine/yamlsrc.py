"""Read YAML into plain data plus a map of where every value was written.

`read_yaml()` returns the data (dicts, lists, scalars; `!secret name` becomes a
`SecretRef`) and `Marks`: JSON-path tuple -> SourceMark. Mapping entries are marked
at their key, list items at the item. Duplicate keys are errors (PyYAML would keep
the last one silently).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from flowengine.errors import ConfigError, ConfigErrors, YamlSyntaxError
from flowengine.model import SourceMark

__all__ = ["Marks", "SecretRef", "read_yaml", "read_yaml_text"]

try:  # the C loader is several times faster; PyYAML without libyaml falls back
    _Base: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the platform's PyYAML
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc]
    """Safe loader that also reads 1e3 and 1.5e12 as numbers (YAML 1.1 wants 1.5e+12)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*[eE][-+]?[0-9]+$|^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789."))

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SecretRef:
    """`!secret name` as written; resolved against the secrets file or environment."""

    name: str
    mark: SourceMark

    def __repr__(self) -> str:
        return f"!secret {self.name}"


class Marks:
    """Where each value of a loaded document was written."""

    def __init__(self, file: str, root: SourceMark) -> None:
        self.file = file
        self.root = root
        self._marks: dict[Path_, SourceMark] = {(): root}

    def add(self, path: Path_, mark: SourceMark) -> None:
        self._marks[path] = mark

    def get(self, path: Path_) -> SourceMark | None:
        return self._marks.get(path)

    def nearest(self, path: Path_) -> SourceMark:
        """The mark of `path`, or of its closest marked parent."""
        key = tuple(path)
        while key:
            found = self._marks.get(key)
            if found is not None:
                return found
            key = key[:-1]
        return self.root

    def under(self, prefix: Path_) -> dict[Path_, SourceMark]:
        """Marks below `prefix`, with paths relative to it."""
        n = len(prefix)
        return {p[n:]: m for p, m in self._marks.items() if p[:n] == prefix and len(p) > n}


def _mark(file: str, node: Node) -> SourceMark:
    return SourceMark(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = SafeConstructor()
        self.errors: list[ConfigError] = []

    def build(self, node: Node, path: Path_, marks: Marks) -> Any:
        if node.tag == "!secret":
            if not isinstance(node, ScalarNode) or not str(node.value).strip():
                self.errors.append(YamlSyntaxError("!secret needs a name", _mark(self.file, node),
                                                   hint="write `password: !secret mqtt_password`"))
                return None
            return SecretRef(str(node.value).strip(), _mark(self.file, node))
        if isinstance(node, MappingNode):
            self.constructor.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)  # `on:`/`1:` style keys: keep them addressable
                key_mark = _mark(self.file, key_node)
                if key in out:
                    first = marks.get((*path, key))
                    self.errors.append(YamlSyntaxError(
                        f"duplicate key '{key}'", key_mark,
                        hint=f"it is set already at line {first.line}" if first else None))
                    continue
                marks.add((*path, key), key_mark)
                out[key] = self.build(value_node, (*path, key), marks)
            return out
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                marks.add((*path, i), _mark(self.file, item))
                items.append(self.build(item, (*path, i), marks))
            return items
        if node.tag.startswith("!") and not node.tag.startswith("!!"):
            self.errors.append(YamlSyntaxError(f"unknown tag '{node.tag}'", _mark(self.file, node),
                                               hint="the only tag here is !secret"))
            return None
        return self.constructor.construct_object(node, deep=True)


def read_yaml_text(text: str, file: str) -> tuple[Any, Marks]:
    """Parse one YAML document. Raises ConfigErrors (YamlSyntaxError, duplicate keys)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = SourceMark(file, mark.line + 1, mark.column + 1) if mark else \
            SourceMark(file, 1, 1)
        raise ConfigErrors([YamlSyntaxError(
            f"not valid YAML: {exc.problem or exc}", where,
            hint="check indentation and quoting on this line")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigErrors([YamlSyntaxError(f"not valid YAML: {exc}",
                                            SourceMark(file, 1, 1))]) from exc
    finally:
        loader.dispose()
    if root is None:
        raise ConfigErrors([YamlSyntaxError("the file is empty", SourceMark(file, 1, 1))])
    marks = Marks(file, _mark(file, root))
    builder = _Builder(file)
    try:
        data = builder.build(root, (), marks)
    except yaml.YAMLError as exc:
        raise ConfigErrors([YamlSyntaxError(f"not valid YAML: {exc}", marks.root)]) from exc
    if builder.errors:
        raise ConfigErrors(builder.errors)
    return data, marks


def read_yaml(path: str | Path) -> tuple[Any, Marks]:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigErrors([ConfigError("file not found", SourceMark(file, 0, 0))]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([ConfigError(f"cannot read the file: {exc}",
                                        SourceMark(file, 0, 0))]) from exc
    return read_yaml_text(text, file)
