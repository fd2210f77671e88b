"""JSON Schema validation for the keywords the engine's own schemas use.

The schemas the engine builds (flowengine.schema, flowengine.formats) use a small part
of JSON Schema draft 2020-12. This module checks that part with jsonschema's semantics
and error texts, without its import cost (3 to 4 MB resident). A schema is
compiled once into plain checks: `is_valid` runs them, and only an instance that fails
is walked again by `iter_errors`, which explains it with `Violation`s carrying what
jsonschema's ValidationError carries (message, validator, validator_value, instance,
schema, paths, context), in jsonschema's order.

A keyword this module does not check raises ValueError when the schema is compiled, so
a schema change cannot skip a check silently; annotations (description, default,
examples, title, x-*, ...) are ignored. A `string` is a str or a `Secret` (a `!secret`
value); `pattern` and the length limits look at a Secret's text, where jsonschema would
raise TypeError. tests/unit/test_jsoncheck.py compares both validators error for error.
"""

from __future__ import annotations

import operator
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from numbers import Number
from typing import Any, NoReturn

from flowengine.model import Secret

__all__ = ["ANNOTATIONS", "KEYWORDS", "Validator", "Violation"]

Schema = Mapping[str, Any] | bool
Path = deque[str | int]
Check = Callable[[Any], bool]
Explain = Callable[[Any], Iterator["Violation"]]
How = Callable[[Any], Any]  # a keyword's one message (str), or all its errors (Violations)

ANNOTATIONS = frozenset({
    "$schema", "$comment", "title", "description", "default", "examples", "deprecated",
    "readOnly", "writeOnly", "markdownDescription", "$defs", "definitions"})
"""Keywords that check nothing (and every `x-*`); `$defs` members are compiled for their
keywords and reached through `$ref`."""


class Violation:
    """One way an instance breaks its schema, as jsonschema's ValidationError says it."""

    __slots__ = ("_bare", "context", "instance", "message", "parent", "relative_path",
                 "relative_schema_path", "schema", "validator", "validator_value")

    def __init__(self, message: str, context: Sequence[Violation] = ()) -> None:
        self.message = message
        self.validator: str | None = None
        self.validator_value: Any = None
        self.instance: Any = None
        self.schema: Schema = True
        self._bare = True  # validator..schema not set yet: the keyword's node sets them
        self.relative_path: Path = deque()
        self.relative_schema_path: Path = deque()
        self.parent: Violation | None = None
        self.context = list(context)
        for sub in self.context:
            sub.parent = self

    @property
    def absolute_path(self) -> Path:
        if self.parent is None:
            return self.relative_path
        return deque((*self.parent.absolute_path, *self.relative_path))

    def __repr__(self) -> str:
        return f"<Violation {self.validator!r} at {list(self.absolute_path)}: {self.message!r}>"


def _false_schema(instance: Any) -> Violation:
    error = Violation(f"False schema does not allow {instance!r}")
    error._bare = False
    error.instance, error.schema = instance, False
    return error


class _Node:
    """One compiled (sub)schema: checks for `valid`, keyword explainers for `explain`."""

    __slots__ = ("checks", "keywords", "schema")

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.checks: tuple[Check, ...] = ()
        self.keywords: tuple[tuple[str, Any, Check, How], ...] = ()

    def valid(self, instance: Any) -> bool:
        for check in self.checks:  # noqa: SIM110 (a loop: faster than all() on a generator)
            if not check(instance):
                return False
        return True

    def explain(self, instance: Any, path: str | int | None = None,
                schema_path: str | int | None = None) -> Iterator[Violation]:
        """jsonschema's `iter_errors` of this schema, or its `descend` into it from a
        parent: the errors placed at `path` of the parent's instance, `schema_path`."""
        if self.schema is False:  # jsonschema places this one nowhere
            yield _false_schema(instance)
            return
        for keyword, value, check, how in self.keywords:
            if keyword in _ONE_ERROR:
                if check(instance):
                    continue
                errors: Iterable[Violation] = (Violation(how(instance)),)
            else:
                errors = how(instance)
            for error in errors:
                if error._bare:
                    error._bare = False
                    error.validator, error.validator_value = keyword, value
                    error.instance, error.schema = instance, self.schema
                if keyword != "if" and keyword != "$ref":
                    error.relative_schema_path.appendleft(keyword)
                if path is not None:
                    error.relative_path.appendleft(path)
                if schema_path is not None:
                    error.relative_schema_path.appendleft(schema_path)
                yield error


# -- JSON's types and equality, as jsonschema's draft 2020-12 sees them -------------------

def _is_number(x: Any) -> bool:
    kind = type(x)
    return kind is int or kind is float or (kind is not bool and isinstance(x, Number))


def _is_integer(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or \
        (isinstance(x, float) and x.is_integer())


def _text(x: Any) -> str | None:
    """The text of a `string` (a Secret's own text), None for other values."""
    return x if isinstance(x, str) else x.reveal() if isinstance(x, Secret) else None


_TYPES: dict[str, Check] = {
    "array": lambda x: isinstance(x, list),
    "boolean": lambda x: isinstance(x, bool),
    "integer": _is_integer,
    "null": lambda x: x is None,
    "number": _is_number,
    "object": lambda x: isinstance(x, dict),
    "string": lambda x: isinstance(x, (str, Secret)),
}


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's equality: 1 == 1.0, but True != 1, also inside lists and mappings."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and \
            all(k in two and _equal(v, two[k]) for k, v in one.items())
    # True and False equal only themselves (`one is two`, above)
    return not isinstance(one, bool) and not isinstance(two, bool) and bool(one == two)


# -- compiling ---------------------------------------------------------------------------

class _At:
    """A place in a schema being compiled: the schema there, the document it is in, and
    what every place shares: the nodes compiled so far, the documents `$ref` may name."""

    __slots__ = ("nodes", "resources", "root", "schema", "where")

    def __init__(self, nodes: dict[tuple[int, int], _Node], resources: Mapping[str, Any],
                 root: Any, schema: Any, where: str) -> None:
        self.nodes, self.resources, self.root = nodes, resources, root
        self.schema, self.where = schema, where

    def need(self, ok: bool, problem: str) -> None:
        if not ok:
            self.refuse(problem)

    def refuse(self, problem: str) -> NoReturn:
        raise ValueError(f"schema {self.where}: {problem}")

    def node(self, schema: Any, *steps: str | int, root: Any = None) -> _Node:
        """`schema`, found at `steps` from here (in the document `root`), compiled once."""
        root = self.root if root is None else root
        key = (id(schema), id(root))
        found = self.nodes.get(key)
        if found is not None:
            return found
        node = self.nodes[key] = _Node(schema)
        here = _At(self.nodes, self.resources, root, schema,
                   "/".join((self.where, *map(str, steps))))
        if schema is False:
            node.checks = (lambda x: False,)
        if isinstance(schema, bool):
            return node
        here.need(isinstance(schema, Mapping), "a schema must be a mapping or a boolean")
        checks: list[Check] = []
        keywords: list[tuple[str, Any, Check, How]] = []
        for keyword, value in schema.items():
            at = _At(self.nodes, self.resources, root, schema, f"{here.where}/{keyword}")
            if keyword in ("$defs", "definitions"):
                at.need(isinstance(value, Mapping), "must be a mapping of schemas")
                for name, sub in value.items():
                    at.node(sub, name)
            elif keyword in ("then", "else"):
                at.node(value)  # checked by `if`, if there is one
            elif keyword not in ANNOTATIONS and not keyword.startswith("x-"):
                make = KEYWORDS.get(keyword) or at.refuse(
                    f"flowengine.jsoncheck does not check {keyword!r}: add it there, with a "
                    "test against jsonschema, or leave it out")
                shared = _shared(keyword, value)
                compiled = _SHARED.get(shared) if shared else None
                if compiled is None:
                    compiled = make(value, at)
                    if shared:
                        _SHARED[shared] = compiled
                checks.append(compiled[0])
                keywords.append((keyword, value, *compiled))
        node.checks, node.keywords = tuple(checks), tuple(keywords)
        return node

    def resolve(self, ref: str) -> tuple[Any, Any]:
        """(target schema, its document) of a `$ref`: `#/json/pointer` in this document,
        or `name` / `name#/pointer` of a document given to the Validator."""
        base, _, fragment = ref.partition("#")
        self.need(not base or base in self.resources, f"$ref {ref!r}: no document {base!r}")
        root = self.resources[base] if base else self.root
        self.need(fragment == "" or (fragment.startswith("/") and "%" not in fragment),
                  f"$ref {ref!r}: only JSON pointers are supported")
        target = root
        for part in fragment.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                target = target[part] if isinstance(target, Mapping) else target[int(part)]
            except (KeyError, IndexError, ValueError, TypeError):
                self.refuse(f"$ref {ref!r} points at nothing")
        return target, root


def _shared(keyword: str, value: Any) -> tuple[Any, ...] | None:
    """How a one-error keyword with a scalar value, or a list of them, is found compiled
    (`type: string` is written hundreds of times); True, 1 and 1.0 are three values."""
    values = value if isinstance(value, list) else [value]
    if keyword not in _ONE_ERROR or not all(v is None or isinstance(v, str | int | float)
                                            for v in values):
        return None
    return (keyword, type(value), *((type(v), v) for v in values))


Compiled = tuple[Check, How]
"""A keyword's check, and either its one error's message (the `_ONE_ERROR` keywords) or
what explains its errors."""


def _type(value: Any, at: _At) -> Compiled:
    names = [value] if isinstance(value, str) else value
    at.need(isinstance(names, list) and bool(names) and all(n in _TYPES for n in names),
            f"unknown type {value!r}")
    tests = tuple(_TYPES[n] for n in names)
    reprs = ", ".join(repr(n) for n in names)
    check = tests[0] if len(tests) == 1 else lambda x: any(test(x) for test in tests)
    return check, lambda x: f"{x!r} is not of type {reprs}"


def _enum(value: Any, at: _At) -> Compiled:
    at.need(isinstance(value, list), "must be a list")
    return (lambda x: any(_equal(each, x) for each in value),
            lambda x: f"{x!r} is not one of {value!r}")


def _const(value: Any, at: _At) -> Compiled:
    return lambda x: _equal(x, value), lambda x: f"{value!r} was expected"


def _pattern(value: Any, at: _At) -> Compiled:
    at.need(isinstance(value, str), "must be a regular expression")
    search = re.compile(value).search

    def check(x: Any) -> bool:
        text = _text(x)
        return text is None or search(text) is not None
    return check, lambda x: f"{x!r} does not match {value!r}"


def _bound(fails: Callable[[Any, Any], bool], words: str) -> Keyword:
    """minimum, maximum, exclusiveMinimum, exclusiveMaximum."""
    def make(value: Any, at: _At) -> Compiled:
        at.need(_is_number(value), "must be a number")
        return (lambda x: not _is_number(x) or not fails(x, value),
                lambda x: f"{x!r} {words} {value!r}")
    return make


def _size(kind: Check, size: Callable[[Any], int], fails: Callable[[int, int], bool],
          words: Callable[[int], str]) -> Keyword:
    """minItems, maxLength, minProperties, ...: a limit on the size of one kind of value."""
    def make(value: Any, at: _At) -> Compiled:
        at.need(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                "must be a whole number, 0 or more")
        return (lambda x: not kind(x) or not fails(size(x), value),
                lambda x: f"{x!r} {words(value)}")
    return make


def _required(value: Any, at: _At) -> Compiled:
    at.need(isinstance(value, list) and all(isinstance(n, str) for n in value),
            "must be a list of names")
    names = tuple(value)

    def explain(x: Any) -> Iterator[Violation]:
        if isinstance(x, dict):
            for name in names:
                if name not in x:
                    yield Violation(f"{name!r} is a required property")
    return lambda x: not isinstance(x, dict) or all(n in x for n in names), explain


Parts = Callable[[Any], Iterable[tuple[Any, _Node, str | int | None, str | int | None]]]


def _parts(parts: Parts) -> Compiled:
    """A keyword that applies subschemas to parts of the instance (or to all of it):
    `parts(x)` gives each part, its schema, and where its errors go (path, schema path)."""
    def explain(x: Any) -> Iterator[Violation]:
        for part, node, path, schema_path in parts(x):
            yield from node.explain(part, path, schema_path)
    return lambda x: all(node.valid(part) for part, node, _, _ in parts(x)), explain


def _properties(value: Any, at: _At) -> Compiled:
    at.need(isinstance(value, Mapping), "must be a mapping of schemas")
    subs = tuple((name, at.node(sub, name)) for name, sub in value.items())
    return _parts(lambda x: [(x[name], sub, name, name) for name, sub in subs if name in x]
                  if isinstance(x, dict) else ())


def _additional_properties(value: Any, at: _At) -> Compiled:
    at.need(isinstance(value, bool | dict), "must be a schema")
    known = frozenset(at.schema.get("properties", ()))
    if value is True:
        return (lambda x: True), lambda x: iter(())
    if value is False:
        def closed(x: Any) -> bool:
            return not isinstance(x, dict) or all(k in known for k in x)

        def extras(x: Any) -> Iterator[Violation]:
            if not closed(x):
                names = sorted((k for k in x if k not in known), key=str)
                verb = "was" if len(names) == 1 else "were"
                yield Violation(f"Additional properties are not allowed "
                                f"({', '.join(repr(n) for n in names)} {verb} unexpected)")
        return closed, extras
    sub = at.node(value)
    return _parts(lambda x: [(x[k], sub, k, None) for k in set(k for k in x if k not in known)]
                  if isinstance(x, dict) else ())  # in the order of a set, as jsonschema's


def _property_names(value: Any, at: _At) -> Compiled:
    sub = at.node(value)
    return _parts(lambda x: [(k, sub, None, None) for k in x] if isinstance(x, dict) else ())


def _items(value: Any, at: _At) -> Compiled:
    at.need(isinstance(value, Mapping) or value is True, "must be a schema (false is not "
            "supported)")
    sub = at.node(value)
    return _parts(lambda x: [(item, sub, i, None) for i, item in enumerate(x)]
                  if isinstance(x, list) else ())


def _branches(value: Any, at: _At) -> tuple[_Node, ...]:
    at.need(isinstance(value, list), "must be a list of schemas")
    return tuple(at.node(sub, i) for i, sub in enumerate(value))


def _all_of(value: Any, at: _At) -> Compiled:
    subs = _branches(value, at)
    return _parts(lambda x: [(x, sub, None, i) for i, sub in enumerate(subs)])


def _first_valid(subs: tuple[_Node, ...], x: Any) -> tuple[int | None, list[Violation]]:
    """The index of the first branch `x` is valid under, and the errors of those before."""
    found: list[Violation] = []
    for index, sub in enumerate(subs):
        errors = list(sub.explain(x, None, index))
        if not errors:
            return index, found
        found.extend(errors)
    return None, found


def _any_of(value: Any, at: _At) -> Compiled:
    subs = _branches(value, at)

    def explain(x: Any) -> Iterator[Violation]:
        first, found = _first_valid(subs, x)
        if first is None:
            yield Violation(f"{x!r} is not valid under any of the given schemas", found)
    return lambda x: any(sub.valid(x) for sub in subs), explain


def _one_of(value: Any, at: _At) -> Compiled:
    subs = _branches(value, at)

    def explain(x: Any) -> Iterator[Violation]:
        first, found = _first_valid(subs, x)
        if first is None:
            yield Violation(f"{x!r} is not valid under any of the given schemas", found)
            return
        more = [sub.schema for sub in subs[first + 1:] if sub.valid(x)]
        if more:
            reprs = ", ".join(repr(schema) for schema in (*more, subs[first].schema))
            yield Violation(f"{x!r} is valid under each of {reprs}")
    return lambda x: sum(1 for sub in subs if sub.valid(x)) == 1, explain


def _if(value: Any, at: _At) -> Compiled:
    test = at.node(value)
    then, other = ((at.node(at.schema[k], "..", k), k) if k in at.schema else None
                   for k in ("then", "else"))
    return _parts(lambda x: [(x, branch[0], None, branch[1])]
                  if (branch := then if test.valid(x) else other) else ())


def _ref(value: Any, at: _At) -> Compiled:
    at.need(isinstance(value, str), "must be a reference")
    target, root = at.resolve(value)
    target = at.node(target, root=root)
    return target.valid, lambda x: target.explain(x)


Keyword = Callable[[Any, _At], Compiled]
_SHARED: dict[Any, Compiled] = {}  # the one-error keywords with a scalar value, compiled
_ONE_ERROR = frozenset({"type", "enum", "const", "pattern", "minProperties", "minItems",
                        "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
                        "exclusiveMaximum"})

KEYWORDS: dict[str, Keyword] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "properties": _properties,
    "additionalProperties": _additional_properties,
    "required": _required,
    "propertyNames": _property_names,
    "minProperties": _size(_TYPES["object"], len, operator.lt, lambda n: (
        "should be non-empty" if n == 1 else "does not have enough properties")),
    "items": _items,
    "minItems": _size(_TYPES["array"], len, operator.lt, lambda n: (
        "should be non-empty" if n == 1 else "is too short")),
    "pattern": _pattern,
    "minLength": _size(_TYPES["string"], lambda x: len(_text(x) or ""), operator.lt, lambda n: (
        "should be non-empty" if n == 1 else "is too short")),
    "maxLength": _size(_TYPES["string"], lambda x: len(_text(x) or ""), operator.gt, lambda n: (
        "is expected to be empty" if n == 0 else "is too long")),
    "minimum": _bound(operator.lt, "is less than the minimum of"),
    "maximum": _bound(operator.gt, "is greater than the maximum of"),
    "exclusiveMinimum": _bound(operator.le, "is less than or equal to the minimum of"),
    "exclusiveMaximum": _bound(operator.ge, "is greater than or equal to the maximum of"),
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "if": _if,
    "$ref": _ref,
}
"""The keywords checked, each with draft 2020-12's meaning and jsonschema's message."""


class Validator:
    """A schema compiled once; `is_valid` and `iter_errors` as jsonschema's
    Draft202012Validator gives them (with `!secret` values as strings).

    `resources`: documents a `$ref` may name (`nodes/timer.json`, `other#/$defs/x`), by
    the name as written; there is no `$id` and no base URI.
    """

    __slots__ = ("_root", "schema")

    def __init__(self, schema: Schema, *, resources: Mapping[str, Schema] | None = None
                 ) -> None:
        self.schema = schema
        self._root = _At({}, resources or {}, schema, schema, "#").node(schema)

    def is_valid(self, instance: Any) -> bool:
        return self._root.valid(instance)

    def iter_errors(self, instance: Any) -> Iterator[Violation]:
        """Every violation, in jsonschema's order (the schema's keyword order)."""
        if self._root.valid(instance):
            return iter(())
        return self._root.explain(instance)
