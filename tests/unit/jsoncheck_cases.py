"""What the differential tests of flowengine.jsoncheck compare: every schema the engine
builds, a corpus of instances (every flow, site and node config written in flows/,
examples/, docs/ and the tests), and jsonschema's Draft202012Validator as the reference,
with the `!secret`-is-a-string type checker the engine used with it."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import referencing
from conftest import ROOT, test_registry
from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

from flowengine.errors import ConfigErrors
from flowengine.formats import (
    COMMON_NODE_KEYS,
    FLOW_SCHEMA,
    SITE_SCHEMA,
    VAR_TYPES,
    flow_schema,
    node_file_schema,
    site_schema,
)
from flowengine.jsoncheck import Validator
from flowengine.loader import load_flow
from flowengine.model import Secret
from flowengine.registry import Registry
from flowengine.schema import config_schema
from flowengine.yamlsrc import SecretRef, read_yaml_text

REGISTRY = Registry.default()
TEST_REGISTRY = test_registry()  # the test node types the snippets in tests/ use
NODE_TYPES = {**TEST_REGISTRY.node_types, **REGISTRY.node_types}
NODE_FILES = {f"nodes/{name}.json": node_file_schema(cls) for name, cls in NODE_TYPES.items()}
# what flow.schema.json's `$ref`s reach, without their `$schema`: jsonschema would switch to
# its draft-07 validator there, without the engine's type checker (jsoncheck keeps one
# dialect; no other keyword in these schemas means something else in draft-07)
REFERENCED = {uri: {k: v for k, v in doc.items() if k != "$schema"}
              for uri, doc in NODE_FILES.items()}

_STRING = Draft202012Validator.TYPE_CHECKER.redefine(
    "string", lambda checker, instance: isinstance(instance, str | Secret))
Reference = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, type_checker=_STRING)


@dataclass(frozen=True)
class Case:
    """A schema under test, and the documents its `$ref`s name."""

    name: str
    schema: Any
    resources: Mapping[str, Any]


def schema_cases() -> list[Case]:
    """Every schema the engine builds and validates with (or writes for editors)."""
    cases = [Case("flow", FLOW_SCHEMA, {}), Case("site", SITE_SCHEMA, {}),
             Case("flow-file", flow_schema(REGISTRY), REFERENCED),
             Case("site-file", site_schema(REGISTRY), {})]
    for name, cls in sorted(NODE_TYPES.items()):
        cases.append(Case(f"config:{name}", config_schema(cls.config_class), {}))
        cases.append(Case(f"node-file:{name}", NODE_FILES[f"nodes/{name}.json"], {}))
    for kind, spec in sorted(REGISTRY.connection_kinds.items()):
        cases.append(Case(f"connection:{kind}", config_schema(spec.config_class), {}))
    for var_type, json_type in VAR_TYPES.items():
        if json_type is not None:
            cases.append(Case(f"var:{var_type}", {"type": json_type}, {}))
    return cases


CASES = {case.name: case for case in schema_cases()}


# -- the comparison ----------------------------------------------------------------------

_VALIDATORS: dict[int, tuple[Any, Validator]] = {}


def _pair(case: Case) -> tuple[Any, Validator]:
    found = _VALIDATORS.get(id(case.schema))
    if found is None:
        registry: referencing.Registry[Any] = referencing.Registry().with_resources(
            (uri, referencing.Resource.from_contents(doc, default_specification=DRAFT202012))
            for uri, doc in case.resources.items())
        found = _VALIDATORS[id(case.schema)] = (
            Reference(case.schema, registry=registry),
            Validator(case.schema, resources=case.resources))
    return found


def outline(errors: Iterable[Any]) -> list[tuple[Any, ...]]:
    """Everything an error says that the engine may read, its context included."""
    return [(tuple(e.absolute_path), e.validator, e.message, tuple(e.relative_schema_path),
             repr(e.validator_value), repr(e.instance), id(e.schema), outline(e.context))
            for e in errors]


def has_secret(value: Any) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, dict):
        return any(has_secret(v) for v in value.values())
    return isinstance(value, list) and any(has_secret(v) for v in value)


def compare(case: Case, instance: Any) -> str | None:
    """None if both validators say the same of `instance`; else what differs.

    jsonschema raises TypeError for a `!secret` under `pattern` or a length limit (it
    hands the Secret to `re.search` and `len`); those instances are not compared here
    (test_jsoncheck tests what jsoncheck does with them)."""
    reference, mine = _pair(case)
    try:
        expected = outline(reference.iter_errors(instance))
        expected_valid = reference.is_valid(instance)
    except TypeError:
        if has_secret(instance):
            return None
        raise
    got = outline(mine.iter_errors(instance))
    got_valid = mine.is_valid(instance)
    if got == expected and got_valid == expected_valid and got_valid == (not got):
        return None
    return (f"{case.name}: {instance!r}\n  jsonschema: valid={expected_valid} {expected}\n"
            f"  jsoncheck:  valid={got_valid} {got}")


# -- the corpus --------------------------------------------------------------------------

def _documents() -> Iterator[tuple[str, str]]:
    """(where, YAML text) of every flow, site and config written down in the repository."""
    for folder in ("flows", "examples", "tests", "docs"):
        for path in sorted((ROOT / folder).rglob("*.y*ml")):
            yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for doc in sorted((ROOT / "docs").rglob("*.md")):
        for i, block in enumerate(doc.read_text(encoding="utf-8").split("```yaml\n")[1:]):
            yield f"{doc.relative_to(ROOT)}#{i}", block.split("```")[0]
    for source in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    any(k in node.value for k in ("nodes:", "flows:", "connections:")):
                yield f"{source.relative_to(ROOT)}:{node.lineno}", \
                    textwrap.dedent(node.value).lstrip("\n")


def _with_secrets(value: Any) -> Any:
    """The document as the engine holds it once `!secret` is resolved."""
    if isinstance(value, SecretRef):
        return Secret(value.name, "s3cret")
    if isinstance(value, dict):
        return {k: _with_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_secrets(v) for v in value]
    return value


def corpus(tmp: Path) -> Iterator[tuple[str, str, Any]]:
    """(where, case name, instance): each document against the file schemas, each node
    written in it against its type's schemas (as written, `${var}`s and all, and as
    loaded, vars substituted), each connection against its kind's schema."""
    for where, text in _documents():
        try:
            raw, _ = read_yaml_text(text, where)
        except ConfigErrors:
            continue
        if not isinstance(raw, dict):
            continue
        resolved = _with_secrets(raw)
        for name in ("flow", "site", "flow-file", "site-file"):
            yield where, name, raw
            yield where, name, resolved
        nodes = resolved.get("nodes")
        for node in nodes if isinstance(nodes, list) else ():
            if isinstance(node, dict) and isinstance(node.get("type"), str) \
                    and node["type"] in NODE_TYPES:
                yield where, f"node-file:{node['type']}", node
                yield where, f"config:{node['type']}", \
                    {k: v for k, v in node.items() if k not in COMMON_NODE_KEYS}
        connections = resolved.get("connections")
        for kind, named in connections.items() if isinstance(connections, dict) else ():
            if f"connection:{kind}" in CASES and isinstance(named, dict):
                for conf in named.values():
                    yield where, f"connection:{kind}", conf
        if isinstance(nodes, list):
            yield from _loaded(where, text, tmp)


def _loaded(where: str, text: str, tmp: Path) -> Iterator[tuple[str, str, Any]]:
    """The node configs of a flow as plan.py validates them: vars substituted."""
    path = tmp / "flow.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        flow = load_flow(path, use_examples=True)
    except ConfigErrors:
        return
    for node in flow.nodes:
        if node.type in NODE_TYPES:
            yield f"{where} (loaded)", f"config:{node.type}", dict(node.config)
