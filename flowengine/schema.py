"""JSON Schema from config declarations, and validation errors users can act on.

One declaration (a frozen dataclass made with `option()`) gives the JSON Schema
(draft 2020-12) that `validate` checks, the defaults a node gets, and the text of
`list-nodes` and the docs. Validation errors become `SchemaError`s with the
file:line:column of the offending value and a hint how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

from flowengine.errors import ConfigError, SchemaError, shorten, shown
from flowengine.jsoncheck import Validator, Violation
from flowengine.model import JsonValue, Secret, SourceMark
from flowengine.node import CONNECTION_META

__all__ = [
    "DIALECT",
    "build_config",
    "config_schema",
    "did_you_mean",
    "make_validator",
    "schema_errors",
]

DIALECT = "https://json-schema.org/draft/2020-12/schema"

Path = tuple[str | int, ...]
MarkLookup = Callable[[Path], SourceMark | None]


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """'did you mean 'x'?' for the closest choice, or None. Case and '-'/'_' do not count."""
    def fold(text: str) -> str:
        return text.casefold().replace("-", "_")

    by_fold: dict[str, str] = {}
    for choice in choices:
        by_fold.setdefault(fold(choice), choice)
    close = difflib.get_close_matches(fold(word), list(by_fold), n=1, cutoff=0.6)
    return f"did you mean '{by_fold[close[0]]}'?" if close else None


# -- declaration -> schema ---------------------------------------------------------------

def _type_schema(hint: Any) -> dict[str, Any]:
    origin = get_origin(hint)
    args = get_args(hint)
    if hint is Any or hint is JsonValue:
        return {}
    if hint is Secret:
        return {"type": "string", "x-secret": True}
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is type(None):
        return {"type": "null"}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        nullable = len(members) != len(args)
        if len(members) == 1:
            inner = _type_schema(members[0])
            if not nullable:
                return inner
            if "type" in inner and isinstance(inner["type"], str) and len(inner) <= 2:
                return {**inner, "type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        options = [_type_schema(a) for a in members]
        if nullable:
            options.append({"type": "null"})
        return {"anyOf": options}
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        item = args[0] if args else Any
        return {"type": "array", "items": _type_schema(item)}
    if origin in (dict, Mapping) or hint is dict:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": _type_schema(value)}
    if dataclasses.is_dataclass(hint):
        return _object_schema(typing.cast(type, hint))
    raise TypeError(f"config option type {hint!r} has no JSON Schema mapping")


def _object_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        meta.pop(CONNECTION_META, None)  # for the site file check, not for the schema
        prop = _type_schema(hints[f.name])
        extra = meta.pop("schema", None)
        if extra:
            prop.update(extra)
        if "example" in meta:
            meta["examples"] = [meta.pop("example")]
        prop.update(meta)
        props[f.name] = prop
        if "default" not in meta:
            required.append(f.name)
    schema: dict[str, Any] = {"type": "object", "properties": props,
                              "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


_SCHEMAS: dict[type, dict[str, Any]] = {}


def config_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of a config dataclass (without the common node keys); cached."""
    found = _SCHEMAS.get(cls)
    if found is None:
        found = _SCHEMAS[cls] = _object_schema(cls)
    return found


# -- validation ---------------------------------------------------------------------------

def make_validator(schema: Mapping[str, Any]) -> Validator:
    """A draft 2020-12 validator that also accepts `!secret` values as strings
    (flowengine.jsoncheck: the keywords these schemas use, with jsonschema's messages)."""
    return Validator(schema)


_TYPE_WORDS = {"integer": "a whole number", "number": "a number", "string": "a text",
               "boolean": "true or false", "array": "a list", "object": "a mapping",
               "null": "empty"}


_PLURAL_WORDS = {"integer": "whole numbers", "number": "numbers", "string": "texts",
                 "boolean": "true/false values", "array": "lists", "object": "mappings"}


def _describe_type(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(_TYPE_WORDS.get(str(n), str(n)) for n in names)


def _describe(schema: Any) -> str | None:
    """What a schema accepts, in words ('a list of texts or a mapping of texts'), if simple."""
    if not isinstance(schema, dict):
        return None
    if "anyOf" in schema:
        words = [_describe(b) for b in schema["anyOf"]]
        return None if None in words else " or ".join(str(w) for w in words)
    if "enum" in schema:
        return "one of " + ", ".join(str(c) for c in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type")
    if not kind:
        return None
    inner = {"array": schema.get("items"), "object": schema.get("additionalProperties")}
    member = inner.get(str(kind))
    if isinstance(member, dict) and str(member.get("type")) in _PLURAL_WORDS \
            and "properties" not in schema:
        return f"{_TYPE_WORDS[str(kind)]} of {_PLURAL_WORDS[str(member['type'])]}"
    return _describe_type(kind)


def _friendly(error: Violation) -> tuple[Path, str, str | None]:
    """(path, message, hint) for one schema violation."""
    path: Path = tuple(error.absolute_path)
    where = f"option '{shorten('.'.join(str(p) for p in path))}'" if path else "this mapping"
    validator: Any = error.validator
    value: Any = error.validator_value
    instance: Any = error.instance
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    if validator == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        extras = [k for k in instance if k not in schema.get("properties", {})]
        name = extras[0] if extras else "?"
        hint = did_you_mean(str(name), allowed)
        if hint is None and allowed:
            hint = "known options: " + ", ".join(allowed)
        return (*path, name), f"unknown option '{shorten(str(name))}'", hint
    if validator == "required":
        missing = _missing(error)
        prop = schema.get("properties", {}).get(missing, {})
        example = prop.get("examples", [None])[0]
        desc = prop.get("description")
        hint = f"add `{missing}: {_yaml_inline(example)}`" if example is not None else \
            f"add `{missing}:`"
        if desc:
            hint += f" ({desc})"
        return path, f"missing required option '{missing}'", hint
    if validator == "type":
        return path, (f"{where} must be {_describe_type(value)}, "
                      f"got {shown(instance)}"), None
    if validator == "enum":
        choices = [str(c) for c in value]
        hint = schema.get("x-hint") or did_you_mean(str(instance), choices) or \
            ("one of: " + ", ".join(choices))
        return path, f"{where} has the unknown value {shown(instance)}", hint
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": "at least", "maximum": "at most",
                 "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}
        return path, (f"{where} must be {words[str(validator)]} {value}, "
                      f"got {shown(instance)}"), None
    if validator == "pattern":
        return path, f"{where} does not match the pattern {value!r}", None
    if validator == "minItems":
        return path, f"{where} needs at least {value} item(s)", None
    if validator == "minLength":
        return path, f"{where} must not be empty", None
    if validator == "const":
        return path, f"{where} must be {value!r}", None
    keys = [b["required"][0] for b in value if list(b) == ["required"] and
            len(b["required"]) == 1] if validator == "oneOf" else []
    if keys and len(keys) == len(value):  # oneOf: [{required: [use]}, {required: [file]}]
        if error.context:  # no branch matched
            return path, f"{where} needs " + " or ".join(f"`{k}:`" for k in keys), None
        return path, f"{where} takes only one of " + " and ".join(f"`{k}:`" for k in keys), None
    accepts = _describe(schema) if validator == "anyOf" else None
    if accepts:
        return path, f"{where} must be {accepts}, got {shown(instance)}", \
            schema.get("description")
    # jsonschema's own text quotes the value in full ("'...' is too long")
    return path, f"{where}: {error.message.replace(repr(instance), shown(instance))}", None


def _missing(error: Violation) -> str:
    message = error.message
    if message.startswith("'"):
        return message.split("'")[1]
    return message


def _yaml_inline(value: Any) -> str:
    if isinstance(value, str):
        return value if value and value.strip() == value and ":" not in value else repr(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    return json.dumps(value)


def _deepest(errors: Iterable[Violation]) -> list[Violation]:
    """Flatten anyOf/oneOf contexts to the most specific errors."""
    out: list[Violation] = []
    for error in errors:
        if error.context and error.validator in ("anyOf", "oneOf"):
            # report the branch that got furthest
            best = max(error.context, key=lambda e: len(e.absolute_path))
            if len(best.absolute_path) > len(error.absolute_path):
                out.extend(_deepest([best]))
                continue
            fitting = _fitting_branch(error)
            if fitting:
                out.extend(_deepest(fitting))
                continue
        out.append(error)
    return out


def _fitting_branch(error: Violation) -> list[Violation]:
    """The errors of the one anyOf/oneOf branch the value's type fits, if just one does.

    `dict | None` given a mapping without a required key says what key is missing,
    not that the value fits no branch.
    """
    by_branch: dict[Any, list[Violation]] = {}
    for sub in error.context or ():
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [errs for errs in by_branch.values()
               if not any(e.validator in ("type", "enum", "const")
                          and len(e.absolute_path) == len(error.absolute_path) for e in errs)]
    return fitting[0] if len(fitting) == 1 else []


def schema_errors(
    validator: Validator,
    instance: Any,
    marks: MarkLookup,
    *,
    fallback: SourceMark | None,
    error_class: type[ConfigError] = SchemaError,
) -> list[ConfigError]:
    """Every schema violation of `instance`, as ConfigErrors with marks."""
    found: list[ConfigError] = []
    for error in _deepest(validator.iter_errors(instance)):
        path, message, hint = _friendly(error)
        mark = _mark_for(path, marks) or fallback
        found.append(error_class(message, mark=mark, hint=hint))
    return found


def _mark_for(path: Path, marks: MarkLookup) -> SourceMark | None:
    key = path
    while True:
        mark = marks(key)
        if mark is not None:
            return mark
        if not key:
            return None
        key = key[:-1]


# -- validated dict -> config instance ---------------------------------------------------

def build_config(cls: type, data: Mapping[str, Any]) -> Any:
    """Make the config dataclass from a dict that passed its schema."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], f.name)
    return cls(**values)


def _convert(hint: Any, value: Any, name: str) -> Any:
    if isinstance(value, Secret) and not _accepts_secret(hint):
        raise SchemaError(f"option '{name}' cannot take a !secret",
                          hint="use !secret only for passwords and tokens")
    if value is None:
        return None
    origin = get_origin(hint)
    args = get_args(hint)
    if _accepts_secret(hint) and isinstance(value, str):
        return Secret("inline", value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (Union, types.UnionType):
        for member in args:
            if member is not type(None) and dataclasses.is_dataclass(member) \
                    and isinstance(value, Mapping):
                return build_config(typing.cast(type, member), value)
            if member is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(_convert(args[0], v, name) for v in value) if args else tuple(value)
    if origin is list and isinstance(value, list):
        return [_convert(args[0], v, name) for v in value]
    if origin is dict and isinstance(value, Mapping) and len(args) == 2:
        return {k: _convert(args[1], v, name) for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return build_config(typing.cast(type, hint), value)
    return value


def _accepts_secret(hint: Any) -> bool:
    if hint is Secret:
        return True
    if get_origin(hint) in (Union, types.UnionType):
        return Secret in get_args(hint)
    return False
