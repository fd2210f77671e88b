"""Read YAML into plain data plus a map of where every value was written.

`read_yaml()` returns the data (dicts, lists, scalars; `!secret name` becomes a
`SecretRef`) and `Marks`: JSON-path tuple -> SourceMark. Mapping entries are marked
at their key, list items at the item. Duplicate keys are errors (PyYAML would keep
the last one silently).

A bad file cannot exhaust the GX: the file is read up to `MAX_FILE_BYTES`, and the
document is composed here, not by PyYAML, so that alias uses (`*name`, also in
`<<: *name`), the size of the document with every alias expanded and the nesting
depth are counted before anything is built. A file past a limit is refused at the
line of the alias or value that crosses it (a "billion laughs" file is a few hundred
bytes that expand to a billion values).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    Event,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode

from flowengine.errors import ConfigError, ConfigErrors, YamlSyntaxError, shorten, shown
from flowengine.model import SourceMark

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_VALUES",
    "Marks",
    "SecretRef",
    "read_yaml",
    "read_yaml_text",
]

# No flow or site file comes near these: the largest shipped flow is 4.7 kB with 247
# values, no aliases and 4 levels. A flow at MAX_VALUES (2,800 nodes) validates in 0.6 s
# and 16 MB on a PC; a file past a limit is refused in a millisecond.
MAX_FILE_BYTES = 2 * 1024 * 1024  # 400 times the largest shipped flow
MAX_VALUES = 20_000  # scalars, lists, mappings and keys; an alias counts its anchor's again
MAX_ALIASES = 1_000  # uses of `*name`; an anchor for each node's common options is ~100
MAX_DEPTH = 100  # nested lists and mappings, through aliases too; the builder, its merging,
#                  vars and schema checks recurse this deep, Python stops at 1000 frames

try:  # the C parser is several times faster; PyYAML without libyaml falls back
    _Base: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the platform's PyYAML
    _Base = yaml.SafeLoader
_BYTE_OFFSETS = _Base is not yaml.SafeLoader  # libyaml reports a bad character's byte offset


# YAML 1.2's core schema for plain scalars, not PyYAML's YAML 1.1: only true/false (in
# any of its three cases) are booleans, so `on`, `off`, `yes`, `no`, `y` and `n` stay
# text, as keys too (`map: {on: 1, off: 0}`); integers are 123, 0o17 or 0x1F (no
# sexagesimal 1:30, no 0b101, no octal 017, no 1_000); floats are 1.5, .5, 1e3, 1.5e+12,
# .inf and .nan. Null (~, null, empty), timestamps and `<<` merge keys are as before.
_CORE_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?[0-9]+[eE][-+]?[0-9]+"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class _Loader(_Base):  # type: ignore[misc]
    """Safe loader that resolves plain scalars by YAML 1.2's core schema (see above)."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE_TAGS]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()}


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789"))


class _Constructor(SafeConstructor):
    """PyYAML's safe constructor with YAML 1.2's booleans and integers, also for an
    explicit tag (`!!bool yes` and `!!int 0b101` are refused, not read as 1.1)."""

    bool_values = {"true": True, "false": False}

    def construct_yaml_int(self, node: Node) -> int:
        text = str(self.construct_scalar(node))  # type: ignore[arg-type]
        if not _INT.match(text):
            raise ValueError("an integer is written 123, 0o17 or 0x1F")
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text)


# the stubs expect a loader class as the first argument; a constructor is one here
_Constructor.add_constructor(
    "tag:yaml.org,2002:int", _Constructor.construct_yaml_int)  # type: ignore[type-var]

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
        self._children: dict[Path_, list[Path_]] = {}

    def add(self, path: Path_, mark: SourceMark) -> None:
        if path not in self._marks:
            self._children.setdefault(path[:-1], []).append(path)
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
        found: dict[Path_, SourceMark] = {}
        todo = list(reversed(self._children.get(prefix, ())))
        while todo:  # walks only the paths below prefix: a node's marks, not the file's
            path = todo.pop()
            found[path[n:]] = self._marks[path]
            todo.extend(reversed(self._children.get(path, ())))
        return found


def _mark(file: str, node: Node) -> SourceMark:
    return SourceMark(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = _Constructor()
        self.errors: list[ConfigError] = []

    def build(self, node: Node, path: Path_, marks: Marks) -> Any:
        if node.tag == "!secret":
            if not isinstance(node, ScalarNode) or not str(node.value).strip():
                self.errors.append(YamlSyntaxError("!secret needs a name", _mark(self.file, node),
                                                   hint="write `password: !secret mqtt_password`"))
                return None
            return SecretRef(str(node.value).strip(), _mark(self.file, node))
        if isinstance(node, MappingNode):
            chosen: dict[str, tuple[Node, Node]] = {}
            written: dict[str, SourceMark] = {}
            for key_node, value_node, merged in self._pairs(node):
                key = self._construct(key_node)
                if not isinstance(key, str):
                    key = str(key)  # `1:`/`true:` style keys: keep them addressable
                if merged:  # of several mappings merged, the first listed gives the key
                    chosen.setdefault(key, (key_node, value_node))
                    continue
                key_mark = _mark(self.file, key_node)
                if key in written:
                    self.errors.append(YamlSyntaxError(
                        f"duplicate key '{shorten(key)}'", key_mark,
                        hint=f"it is set already at line {written[key].line}"))
                    continue
                written[key] = key_mark
                chosen[key] = (key_node, value_node)  # a key written out beats a merged one
            out: dict[str, Any] = {}
            for key, (key_node, value_node) in chosen.items():
                marks.add((*path, key), _mark(self.file, key_node))
                out[key] = self.build(value_node, (*path, key), marks)
            return out
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                marks.add((*path, i), _mark(self.file, item))
                items.append(self.build(item, (*path, i), marks))
            return items
        if node.tag.startswith("!") and not node.tag.startswith("!!"):
            self.errors.append(YamlSyntaxError(f"unknown tag '{shorten(node.tag)}'",
                                               _mark(self.file, node),
                                               hint="the only tag here is !secret"))
            return None
        return self._construct(node)

    def _construct(self, node: Node) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        # what PyYAML's constructors raise for a value its tag does not fit: 2024-02-30,
        # an int of 5,000 digits, `!!int x`, `!!bool x`, `!!timestamp x`
        except (ValueError, OverflowError, KeyError, AttributeError) as exc:
            kind = str(node.tag).rpartition(":")[2]
            why = f" ({exc})" if isinstance(exc, ValueError | OverflowError) else ""
            raise ConfigErrors([*self.errors, YamlSyntaxError(
                f"{shown(node.value)} is not a valid {kind}{why}", _mark(self.file, node),
                hint="to keep it as text, write it in quotes (without a !! tag)")]) from exc

    def _pairs(self, node: MappingNode) -> list[tuple[Node, Node, bool]]:
        """A mapping's (key, value, merged) with `<<: *name` expanded: merged pairs first,
        in the order they take precedence, then the pairs written out."""
        merged: list[tuple[Node, Node, bool]] = []
        written: list[tuple[Node, Node, bool]] = []
        for key_node, value_node in node.value:
            if key_node.tag != "tag:yaml.org,2002:merge":
                written.append((key_node, value_node, False))
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.errors.append(YamlSyntaxError(
                        "`<<:` merges a mapping or a list of mappings", _mark(self.file, source),
                        hint="write `<<: *name` where `&name` is on a mapping"))
                    continue
                own = self._pairs(source)  # its written pairs beat what it merges itself
                merged += [(k, v, True) for k, v, by_merge in own if not by_merge]
                merged += [(k, v, True) for k, v, by_merge in own if by_merge]
        return merged + written


@dataclass(slots=True)
class _Open:
    """A list or mapping being composed."""

    node: CollectionNode
    anchor: str | None
    values_before: int  # values composed before this one
    height: int = 0  # levels of nesting inside it
    key: Node | None = None  # a mapping's key waiting for its value


@dataclass(frozen=True, slots=True)
class _Anchored:
    node: Node
    values: int  # what one use expands to
    height: int  # levels of nesting: 0 for a scalar


class _Composer:
    """Parser events -> one document's nodes, refused early if it would grow too large.

    PyYAML's composer turns an alias into the anchored node itself; building the data
    copies that node's values once per use. Here every use counts its anchor's values,
    so a document's built size is known, alias by alias, before anything is built.
    """

    def __init__(self, loader: Any, file: str) -> None:
        self.loader = loader
        self.file = file
        self.stack: list[_Open] = []
        self.anchors: dict[str, _Anchored | None] = {}  # None: its list or mapping is open
        self.anchor_marks: dict[str, SourceMark] = {}
        self.values = 0
        self.aliases = 0

    def compose(self) -> Node | None:
        """The single document of the stream, or None for an empty file."""
        self.loader.get_event()  # StreamStartEvent
        if self.loader.check_event(StreamEndEvent):
            return None
        self.loader.get_event()  # DocumentStartEvent
        root = self._document()
        self.loader.get_event()  # DocumentEndEvent
        if not self.loader.check_event(StreamEndEvent):
            raise self._error("the file holds more than one YAML document",
                              self.loader.peek_event().start_mark,
                              hint="a flow or site file is one document; remove the `---` line")
        return root

    def _document(self) -> Node:
        while True:
            event = self.loader.get_event()
            if isinstance(event, AliasEvent):
                node, height = self._alias(event)
            elif isinstance(event, ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = self.loader.resolve(ScalarNode, event.value, event.implicit)
                start: Any = event.start_mark  # the C parser's marks, not yaml.Mark
                end: Any = event.end_mark
                node = ScalarNode(tag, event.value, start, end, style=event.style)
                height = 0
                self._define(event.anchor, event)
                self._count(1, event)
                if event.anchor is not None:
                    self.anchors[event.anchor] = _Anchored(node, 1, 0)
            elif isinstance(event, CollectionStartEvent):
                self._open(event)
                continue
            else:  # SequenceEndEvent, MappingEndEvent
                done = self.stack.pop()
                node = done.node
                node.end_mark = event.end_mark
                height = done.height + 1
                if done.anchor is not None:
                    self.anchors[done.anchor] = _Anchored(
                        node, self.values - done.values_before, height)
            if not self.stack:
                return node
            self._add(node, height)

    def _open(self, event: CollectionStartEvent) -> None:
        kind = SequenceNode if isinstance(event, SequenceStartEvent) else MappingNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(kind, None, event.implicit)
        if len(self.stack) >= MAX_DEPTH:
            raise self._error(f"the file nests lists and mappings deeper than {MAX_DEPTH} "
                              "levels", event.start_mark,
                              hint="a flow or site file needs far fewer")
        self._define(event.anchor, event)
        start: Any = event.start_mark
        self.stack.append(_Open(kind(tag, [], start, None, flow_style=event.flow_style),
                                event.anchor, self.values))
        self._count(1, event)

    def _add(self, node: Node, height: int) -> None:
        parent = self.stack[-1]
        parent.height = max(parent.height, height)
        if isinstance(parent.node, SequenceNode):
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = node
        else:
            parent.node.value.append((parent.key, node))
            parent.key = None

    def _define(self, anchor: str | None, event: Event) -> None:
        if anchor is None:
            return
        first = self.anchor_marks.get(anchor)
        if first is not None:
            raise self._error(f"the anchor &{shorten(anchor)} is defined twice",
                              event.start_mark, hint=f"first at line {first.line}; "
                                                     "give each anchor its own name")
        self.anchor_marks[anchor] = _where(self.file, event.start_mark)
        self.anchors[anchor] = None

    def _alias(self, event: AliasEvent) -> tuple[Node, int]:
        anchor = str(event.anchor)
        name = shorten(anchor)
        if anchor not in self.anchors:
            raise self._error(f"unknown alias *{name}", event.start_mark,
                              hint=f"an alias needs its anchor &{name} written before it")
        anchored = self.anchors[anchor]
        if anchored is None:
            raise self._error(f"the alias *{name} is inside its own anchor &{name}",
                              event.start_mark,
                              hint="the value would contain itself without end")
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise self._error(f"more than {MAX_ALIASES} aliases (*name) in one file",
                              event.start_mark, hint="a flow or site file needs far fewer")
        if len(self.stack) + anchored.height > MAX_DEPTH:
            raise self._error(f"the alias *{name} nests lists and mappings deeper than "
                              f"{MAX_DEPTH} levels", event.start_mark,
                              hint="a flow or site file needs far fewer")
        self._count(anchored.values, event, alias=name)
        return anchored.node, anchored.height

    def _count(self, values: int, event: Event, *, alias: str | None = None) -> None:
        self.values += values
        if self.values <= MAX_VALUES:
            return
        if alias is None:
            raise self._error(f"the file holds more than {MAX_VALUES} values",
                              event.start_mark, hint="a flow or site file needs far fewer")
        raise self._error(f"the alias *{alias} makes the file expand to more than "
                          f"{MAX_VALUES} values", event.start_mark,
                          hint="each use of an alias counts every value of its anchor "
                               "again; a flow or site file needs far fewer")

    def _error(self, message: str, mark: Any, *, hint: str) -> ConfigErrors:
        return ConfigErrors([YamlSyntaxError(message, _where(self.file, mark), hint=hint)])


def _where(file: str, mark: Any) -> SourceMark:
    return SourceMark(file, mark.line + 1, mark.column + 1) if mark else SourceMark(file, 1, 1)


def _syntax_error(exc: yaml.YAMLError, file: str, fallback: SourceMark) -> ConfigErrors:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return ConfigErrors([YamlSyntaxError(
            f"not valid YAML: {' '.join(str(exc.problem or exc).split())}",
            _where(file, mark) if mark else fallback,
            hint="check indentation and quoting on this line")])
    return ConfigErrors([YamlSyntaxError(f"not valid YAML: {' '.join(str(exc).split())}",
                                         fallback)])  # PyYAML puts marks on lines of their own


def _compose(text: str, file: str) -> Node | None:
    loader = _Loader(text)  # PyYAML's own reader checks the characters here
    try:
        return _Composer(loader, file).compose()
    finally:
        loader.dispose()


def read_yaml_text(text: str, file: str) -> tuple[Any, Marks]:
    """Parse one YAML document. Raises ConfigErrors (YamlSyntaxError, duplicate keys)."""
    try:
        root = _compose(text, file)
    except yaml.reader.ReaderError as exc:  # a control character
        raise ConfigErrors([YamlSyntaxError(
            f"the file holds the control character #x{exc.character:04x}, which YAML does "
            "not allow", _offset_mark(text, exc.position, file),
            hint='remove it; a text in double quotes can hold it as an escape ("\\x1a")')]) \
            from exc
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, file, SourceMark(file, 1, 1)) from exc
    if root is None:
        raise ConfigErrors([YamlSyntaxError("the file is empty", SourceMark(file, 1, 1))])
    marks = Marks(file, _mark(file, root))
    builder = _Builder(file)
    try:
        data = builder.build(root, (), marks)
    except yaml.YAMLError as exc:  # a scalar PyYAML cannot construct
        raise _syntax_error(exc, file, marks.root) from exc
    if builder.errors:
        raise ConfigErrors(builder.errors)
    return data, marks


def _offset_mark(text: str, offset: int, file: str) -> SourceMark:
    before = text.encode()[:offset].decode(errors="replace") if _BYTE_OFFSETS else text[:offset]
    return SourceMark(file, before.count("\n") + 1, len(before) - before.rfind("\n"))


_OTHER_ENCODINGS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _decode(raw: bytes, file: str) -> str:
    """The text of a UTF-8 file (a leading byte order mark is dropped)."""
    for bom, encoding in _OTHER_ENCODINGS:
        if raw.startswith(bom):
            raise ConfigErrors([YamlSyntaxError(
                f"the file is {encoding}, not UTF-8", SourceMark(file, 1, 1),
                hint="save it as UTF-8 (without a byte order mark)")])
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = start + exc.start
        newline = raw.rfind(b"\n", start, bad)
        line_start = start if newline < 0 else newline + 1
        column = len(raw[line_start:bad].decode("utf-8")) + 1
        where = SourceMark(file, raw.count(b"\n", start, bad) + 1, column)
        raise ConfigErrors([YamlSyntaxError(
            f"the file is not valid UTF-8 (byte 0x{raw[bad]:02x} at offset {bad})", where,
            hint="save it as UTF-8")]) from exc


def read_yaml(path: str | Path) -> tuple[Any, Marks]:
    """Read and parse one YAML file (at most MAX_FILE_BYTES, UTF-8)."""
    file = str(path)
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigErrors([ConfigError("file not found", SourceMark(file, 0, 0))]) from exc
    except OSError as exc:
        raise ConfigErrors([ConfigError(f"cannot read the file: {exc}",
                                        SourceMark(file, 0, 0))]) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigErrors([YamlSyntaxError(
            f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB",
            SourceMark(file, 0, 0), hint="a flow or site file needs far less")])
    return read_yaml_text(_decode(raw, file), file)
