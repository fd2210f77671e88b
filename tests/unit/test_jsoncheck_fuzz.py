"""flowengine.jsoncheck against jsonschema on generated instances: for every schema the
engine builds, values shaped by the schema and then spoiled (wrong types, missing and
unknown keys, numbers just out of range, texts that miss a pattern, `${var}`s, secrets),
and the written configs of the corpus with one part changed. The verdict and every
error (path, keyword, message, schema path, context) must be jsonschema's."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsoncheck_cases import CASES, Case, compare, corpus

from flowengine.model import Secret

EXAMPLES = 80
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100_000), st.sampled_from([0, 1, -1, 1.0, 0.5]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
    st.sampled_from(["", "${name}", "${a}-${b}", "$${x}", "on", "http://x", "/Soc"]),
    st.just(Secret("s", "s3cret")))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
NAMES = st.sampled_from(["", "x", "bogus", "Type", "id", "to", "1"]) | st.text(max_size=5)


def _resolve(case: Case, ref: str) -> Any:
    base, _, pointer = ref.partition("#")
    target: Any = case.resources[base] if base else case.schema
    for part in pointer.split("/")[1:]:
        target = target[part]
    return target


def _numbers(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    limits = [schema[k] for k in ("minimum", "maximum", "exclusiveMinimum",
                                  "exclusiveMaximum") if k in schema]
    near = [m + d for m in limits for d in (-1, -0.5, 0, 0.5, 1)] + [float(int(m)) for m in limits]
    out = st.integers(-1000, 10**7) | st.sampled_from([0, 1, 2.0, -3, 7.5, 10**20])
    if not integer:
        out |= st.floats(allow_nan=False, allow_infinity=False)
    return out | st.sampled_from(near) if near else out


def _texts(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    out: st.SearchStrategy[Any] = st.text(max_size=8) | st.sampled_from(
        ["", "a", "${name}", "x y", "/a/b"])
    if "pattern" in schema:
        out |= st.from_regex(re.compile(schema["pattern"]))
    else:  # jsonschema cannot check a Secret's pattern or length (it raises TypeError)
        out |= st.just(Secret("s", "s3cret"))
    return out


def _objects(case: Case, schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    props: dict[str, Any] = schema.get("properties", {})
    required: list[str] = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    given_ = st.fixed_dictionaries(
        {k: shaped(case, props.get(k, True), depth + 1) for k in required},
        optional={k: shaped(case, v, depth + 1) for k, v in props.items() if k not in required})
    extras = st.dictionaries(NAMES, shaped(case, extra, depth + 1) if isinstance(extra, dict)
                             else JSON, max_size=1 if extra is False else 3)

    def build(parts: tuple[dict[str, Any], dict[str, Any], str | None]) -> dict[str, Any]:
        value, more, drop = parts
        value = {**value, **more}
        value.pop(drop or "", None)
        return value
    drop = st.none() | st.sampled_from(required) if required else st.none()
    return st.tuples(given_, extras, drop).map(build)


def shaped(case: Case, schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by `schema`, and at every level now and then any JSON at all."""
    if not isinstance(schema, dict) or depth > 6:
        return JSON
    if "$ref" in schema:
        return shaped(case, _resolve(case, schema["$ref"]), depth)
    options: list[st.SearchStrategy[Any]] = [JSON]
    if "const" in schema:
        options.append(st.just(schema["const"]))
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]) | st.sampled_from([1, 1.0, True, "X"]))
    for key in ("anyOf", "oneOf"):
        options += [shaped(case, branch, depth) for branch in schema.get(key, [])]
    thens = [b["then"] for b in schema.get("allOf", []) if "then" in b]
    options += [shaped(case, then, depth) for then in thens]
    kinds = schema.get("type", [])
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind in ("integer", "number"):
            options.append(_numbers(schema, kind == "integer"))
        elif kind == "string":
            options.append(_texts(schema))
        elif kind == "array":
            options.append(st.lists(shaped(case, schema.get("items", True), depth + 1),
                                    max_size=3))
        elif kind == "object":
            options.append(_objects(case, schema, depth))
    return st.one_of(*options)


@pytest.mark.parametrize("name", sorted(CASES))
@FUZZ
@given(data=st.data())
def test_generated_instances_get_jsonschemas_verdict_and_errors(name: str, data: Any) -> None:
    case = CASES[name]
    instance = data.draw(shaped(case, case.schema), label="instance")
    assert compare(case, instance) is None


with tempfile.TemporaryDirectory() as _tmp:
    CORPUS = list(corpus(Path(_tmp)))


def _spoiled(value: Any, data: Any, depth: int = 0) -> Any:
    """`value` with one part replaced, dropped or added somewhere inside."""
    if isinstance(value, dict) and value and data.draw(st.integers(0, 3)) and depth < 6:
        key = data.draw(st.sampled_from(sorted(value, key=str)))
        return {**value, key: _spoiled(value[key], data, depth + 1)}
    if isinstance(value, list) and value and data.draw(st.integers(0, 3)) and depth < 6:
        index = data.draw(st.integers(0, len(value) - 1))
        return [*value[:index], _spoiled(value[index], data, depth + 1), *value[index + 1:]]
    how = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if how == "drop" and isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value, key=str)))
        return {k: v for k, v in value.items() if k != key}
    if how == "add" and isinstance(value, dict):
        return {**value, data.draw(NAMES): data.draw(JSON)}
    return data.draw(JSON)


@FUZZ
@given(data=st.data())
def test_written_configs_with_one_part_spoiled_get_jsonschemas_errors(data: Any) -> None:
    _, name, instance = data.draw(st.sampled_from(CORPUS), label="written")
    assert compare(CASES[name], _spoiled(instance, data)) is None


@settings(max_examples=EXAMPLES * 4, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_spoiled_node_configs_get_jsonschemas_errors(data: Any) -> None:
    configs = [(n, i) for _, n, i in CORPUS if n.startswith(("config:", "connection:"))]
    name, instance = data.draw(st.sampled_from(configs), label="config")
    assert compare(CASES[name], _spoiled(instance, data)) is None
