"""Flow vars: their declarations, their values, and `${name}` substitution.

A flow file declares typed `vars`; `${name}` in any string is replaced by the var's
value (a string that is exactly `${name}` takes the value with its type; `$${`
writes a literal `${`). A value comes from the site file, the var's `default`, or
(to validate a flow file on its own) its `example`; an error a node reports about
an option made from a var points at where that value was written (`blame_var`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowengine.errors import ConfigError, GraphError, SchemaError, shorten, shown
from flowengine.formats import VAR_TYPES
from flowengine.model import FlowSpec, JsonValue, NodeSpec, Secret, SourceMark, VarSpec
from flowengine.schema import did_you_mean, make_validator
from flowengine.yamlsrc import Marks, SecretRef

__all__ = ["Substitution", "blame_var", "substitute", "var_names", "var_specs", "var_values"]

_VAR_RE = re.compile(r"\$(\$?)\{([^}]*)\}")
_OF_TYPE = {t: make_validator({"type": t}) for t in VAR_TYPES.values() if t is not None}


def var_specs(raw: Mapping[str, Any], marks: Marks) -> dict[str, VarSpec]:
    """The `vars:` mapping of a flow file (already checked by the flow schema)."""
    out = {}
    for name, spec in raw.items():
        out[name] = VarSpec(name=name, type=spec["type"], description=spec.get("description", ""),
                            default=spec.get("default"), has_default="default" in spec,
                            example=spec.get("example"), mark=marks.nearest(("vars", name)),
                            limits={k: spec[k] for k in ("enum", "minimum", "maximum")
                                    if k in spec})
    return out


def var_values(specs: Mapping[str, VarSpec], values: Mapping[str, Any], *,
               value_marks: Marks | None, value_path: tuple[str | int, ...],
               flow_marks: Marks, resolve: Callable[[SecretRef], Secret],
               use_examples: bool, errors: list[ConfigError],
               origins: dict[str, SourceMark]) -> dict[str, JsonValue]:
    """The value of each declared var: given, default, or (`use_examples`) example.

    Problems go to `errors`, at the given value (`value_marks` at `value_path`) or
    else at the declaration. `origins` gets where each value was written (given
    values without `value_marks`, from the command line, have none).
    """
    out: dict[str, JsonValue] = {}

    def where(name: str) -> SourceMark | None:
        if value_marks is not None:
            return value_marks.nearest((*value_path, name))
        return specs[name].mark if name in specs else None

    for name in values:
        if name not in specs:
            hint = did_you_mean(name, specs) or (
                "this flow's vars: " + ", ".join(specs) if specs else "this flow has no vars")
            errors.append(GraphError(f"unknown var '{shorten(name)}'", where(name), hint=hint))
    for name, spec in specs.items():
        if name in values:
            value = values[name]
            if value_marks is not None:
                origins[name] = value_marks.nearest((*value_path, name))
        elif spec.has_default:
            value = spec.default
            origins[name] = flow_marks.nearest(("vars", name, "default"))
        elif use_examples and spec.example is not None:
            value = spec.example
            origins[name] = flow_marks.nearest(("vars", name, "example"))
        else:
            hint = f"set it under vars: in the site file ({spec.description})" \
                if spec.description else "set it under vars: in the site file"
            errors.append(GraphError(f"var '{name}' has no value", where(name) or spec.mark,
                                     hint=hint))
            continue
        if isinstance(value, SecretRef):
            try:
                value = resolve(value)
            except ConfigError as exc:
                errors.append(exc)
                continue
        problem = _check_var_type(spec, value)
        if problem:
            errors.append(SchemaError(f"var '{name}' {problem}", where(name) or spec.mark))
            continue
        out[name] = float(value) if spec.type == "number" and type(value) is int else value
    return out


def _check_var_type(spec: VarSpec, value: Any) -> str | None:
    if value is None:
        return None
    if spec.type == "secret":
        return None if isinstance(value, Secret | str) else "must be a !secret or a text"
    if isinstance(value, Secret):
        return "cannot be a !secret (declare the var with type: secret)"
    json_type = VAR_TYPES[spec.type]
    if json_type is None:
        return None
    if not _OF_TYPE[json_type].is_valid(value):
        return f"must be of type {spec.type}, got {shown(value)}"
    limits: Mapping[str, Any] = spec.limits
    if "enum" in limits and value not in limits["enum"]:
        return f"must be one of {', '.join(map(str, limits['enum']))}, got {shown(value)}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in limits and value < limits["minimum"]:
            return f"must be at least {limits['minimum']}, got {shown(value)}"
        if "maximum" in limits and value > limits["maximum"]:
            return f"must be at most {limits['maximum']}, got {shown(value)}"
    return None



@dataclass
class Substitution:
    """What `substitute` needs, and what it finds: vars used, errors."""

    values: Mapping[str, JsonValue]
    declared: frozenset[str]
    marks: Marks
    used: set[str]
    errors: list[ConfigError]
    uses: dict[tuple[str | int, ...], str] = field(default_factory=dict)  # path -> text


def substitute(value: Any, path: tuple[str | int, ...], sub: Substitution) -> Any:
    """`value` (from the flow file at `path`) with every `${name}` replaced."""
    if isinstance(value, str):
        return _substitute_text(value, path, sub)
    if isinstance(value, dict):
        return {k: substitute(v, (*path, k), sub) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, (*path, i), sub) for i, v in enumerate(value)]
    return value


def _substitute_text(text: str, path: tuple[str | int, ...], sub: Substitution) -> Any:
    if "${" not in text:
        return text
    if var_names(text):
        sub.uses[path] = text
    whole = _VAR_RE.fullmatch(text)
    if whole and not whole.group(1):
        name = whole.group(2).strip()
        if _known(name, path, sub):
            return sub.values.get(name)
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "${" + match.group(2) + "}"
        name = match.group(2).strip()
        if not _known(name, path, sub):
            return match.group(0)
        value = sub.values.get(name)
        if isinstance(value, Secret):
            sub.errors.append(SchemaError(
                f"the secret var '{name}' cannot be part of a longer text",
                sub.marks.nearest(path), hint=f"use it alone: ${{{name}}}"))
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return _VAR_RE.sub(replace, text)


def _known(name: str, path: tuple[str | int, ...], sub: Substitution) -> bool:
    if name in sub.declared:
        sub.used.add(name)
        return name in sub.values  # a declared var without value was reported already
    hint = did_you_mean(name, sub.declared) or "declare it under vars:"
    sub.errors.append(GraphError(f"unknown var '${{{shorten(name)}}}'", sub.marks.nearest(path),
                                 hint=hint))
    return False


def var_names(text: str) -> tuple[str, ...]:
    """The vars a text uses, in order, each once (`$${` is not a use)."""
    return tuple(dict.fromkeys(m.group(2).strip() for m in _VAR_RE.finditer(text)
                               if not m.group(1)))


# -- errors about values that came from vars -------------------------------------------

def blame_var(error: ConfigError, flow: FlowSpec, node: NodeSpec) -> ConfigError:
    """Point an error about an option made from a var at where the var's value was set.

    The flow file's `paths: ${paths}` is not what the user wrote: the error moves to
    the var's value (in the site file, or the var's default), keeps the node and the
    option in its text, and names the flow line that uses the var. An error about an
    option written out in the flow file is returned unchanged.
    """
    key = _option_at(error.mark, node)
    if key is None:
        return error
    text = node.var_uses[key]
    names = var_names(text)
    used_at = node.key_marks[key]
    option = ".".join(str(k) for k in key)
    if len(names) > 1:  # which one is wrong? the error stays at the flow line
        error.message += (f"; made with vars {', '.join(repr(n) for n in names)} "
                          f"({option}: {shorten(text, 60)})")
        error.hint = error.hint or \
            f"change the value of var {' or '.join(repr(n) for n in names)}"
        return error
    name = names[0]
    how = "set by" if _VAR_RE.fullmatch(text) else "made with"
    set_at = flow.var_marks.get(name)
    if set_at is None:  # a value from the command line
        error.message += f"; {how} var '{name}' ({option}: {shorten(text, 60)})"
        error.hint = error.hint or f"change the value of var '{name}'"
        return error
    error.mark = set_at
    error.message += f"; {how} var '{name}' ({used_at}: {option}: {shorten(text, 60)})"
    if set_at.file == flow.file:  # the var's default or example
        fix = f"set var '{name}' under vars: in the site file, or change it here"
        error.hint = f"{error.hint}; {fix}" if error.hint else fix
    else:
        error.hint = error.hint or f"change the value of var '{name}' here"
    return error


def _option_at(mark: SourceMark | None, node: NodeSpec) -> tuple[str | int, ...] | None:
    """The option made from vars that `mark` points at, if any.

    Node errors mark the option (`mark_of(key)`, schema errors the nearest key), and
    a value made from vars has no marks inside. The node's own mark is no option's:
    errors fall back to it.
    """
    if mark is None or mark == node.mark:
        return None
    for key in node.var_uses:
        if node.key_marks.get(key) == mark:
            return key
    return None
