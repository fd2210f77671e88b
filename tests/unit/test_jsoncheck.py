"""flowengine.jsoncheck, the engine's validator: each keyword against jsonschema, every
written flow, site and config against jsonschema, and what it refuses to compile."""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from jsoncheck_cases import CASES, Case, compare, corpus, outline

from flowengine.jsoncheck import Validator, Violation
from flowengine.model import Secret


def errors(schema: Any, instance: Any, resources: dict[str, Any] | None = None
           ) -> list[Violation]:
    """jsoncheck's errors, after checking they are jsonschema's, one for one."""
    case = Case("unit", schema, resources or {})
    assert compare(case, instance) is None
    return list(Validator(schema, resources=case.resources).iter_errors(instance))


def messages(schema: Any, instance: Any) -> list[str]:
    return [e.message for e in errors(schema, instance)]


# -- the keywords, each as jsonschema has it ---------------------------------------------

def test_integer_takes_whole_floats_but_not_booleans() -> None:
    assert messages({"type": "integer"}, 3) == []
    assert messages({"type": "integer"}, 3.0) == []
    assert messages({"type": "integer"}, 3.5) == ["3.5 is not of type 'integer'"]
    assert messages({"type": "integer"}, True) == ["True is not of type 'integer'"]


def test_a_boolean_is_no_number() -> None:
    assert messages({"type": "number"}, False) == ["False is not of type 'number'"]
    assert messages({"type": ["number", "null"]}, None) == []
    assert messages({"type": ["number", "null"]}, "1") == ["'1' is not of type 'number', 'null'"]


def test_a_secret_is_a_string() -> None:
    assert messages({"type": "string"}, Secret("pw", "hunter2")) == []
    assert messages({"type": "object"}, Secret("pw", "hunter2")) == [
        "'***' is not of type 'object'"]


def test_enum_and_const_compare_as_json_does() -> None:
    assert messages({"enum": [1, "a"]}, 1.0) == []
    assert messages({"enum": [1, "a"]}, True) == ["True is not one of [1, 'a']"]
    assert messages({"const": [1, {"a": 0}]}, [1.0, {"a": 0.0}]) == []
    assert messages({"const": [1, {"a": 0}]}, [True, {"a": False}]) == [
        "[1, {'a': 0}] was expected"]
    assert messages({"const": False}, 0) == ["False was expected"]


def test_pattern_searches_and_is_compiled_once() -> None:
    validator = Validator({"pattern": "b+"})
    assert validator.is_valid("abbc")
    assert [e.message for e in validator.iter_errors("ac")] == ["'ac' does not match 'b+'"]
    assert messages({"pattern": "^a"}, 5) == []  # only texts have patterns


def test_pattern_and_length_look_at_a_secrets_text_and_never_show_it() -> None:
    """jsonschema would raise TypeError here (re.search and len of a Secret)."""
    secret = Secret("pw", "hunter2")
    validator = Validator({"type": "string", "pattern": "^[0-9]+$", "minLength": 8})
    assert [e.message for e in validator.iter_errors(secret)] == [
        "'***' does not match '^[0-9]+$'", "'***' is too short"]
    assert Validator({"pattern": "^h", "maxLength": 7}).is_valid(secret)


def test_numbers_have_inclusive_and_exclusive_limits() -> None:
    schema = {"minimum": 1, "maximum": 10}
    assert messages(schema, 1) == messages(schema, 10.0) == messages(schema, "x") == []
    assert messages(schema, 0.5) == ["0.5 is less than the minimum of 1"]
    assert messages(schema, 11) == ["11 is greater than the maximum of 10"]
    schema = {"exclusiveMinimum": 0, "exclusiveMaximum": 1}
    assert messages(schema, 0) == ["0 is less than or equal to the minimum of 0"]
    assert messages(schema, 1) == ["1 is greater than or equal to the maximum of 1"]
    assert messages({"minimum": 1}, True) == []  # a boolean is no number


def test_lengths_and_sizes() -> None:
    assert messages({"minLength": 1}, "") == ["'' should be non-empty"]
    assert messages({"minLength": 3}, "ab") == ["'ab' is too short"]
    assert messages({"maxLength": 2}, "abc") == ["'abc' is too long"]
    assert messages({"maxLength": 0}, "a") == ["'a' is expected to be empty"]
    assert messages({"minItems": 1}, []) == ["[] should be non-empty"]
    assert messages({"minItems": 2}, [1]) == ["[1] is too short"]
    assert messages({"minProperties": 1}, {}) == ["{} should be non-empty"]
    assert messages({"minProperties": 2}, {"a": 1}) == [
        "{'a': 1} does not have enough properties"]


def test_unknown_properties_are_named_sorted() -> None:
    schema = {"properties": {"a": {}}, "additionalProperties": False}
    assert messages(schema, {"a": 1, "z": 2, "b": 3}) == [
        "Additional properties are not allowed ('b', 'z' were unexpected)"]
    assert messages(schema, {"c": 1}) == [
        "Additional properties are not allowed ('c' was unexpected)"]


def test_additional_properties_schema_checks_each_other_value_at_its_path() -> None:
    schema = {"properties": {"a": {}}, "additionalProperties": {"type": "string"}}
    (error,) = errors(schema, {"a": 1, "b": "x", "c": 2})
    assert (list(error.absolute_path), error.validator, error.message) == \
        (["c"], "type", "2 is not of type 'string'")
    assert list(error.relative_schema_path) == ["additionalProperties", "type"]


def test_required_and_property_names() -> None:
    assert messages({"required": ["a", "b"]}, {"b": 1}) == ["'a' is a required property"]
    assert messages({"required": ["a"]}, [1]) == []
    (error,) = errors({"propertyNames": {"pattern": "^[a-z]+$"}}, {"ok": 1, "Not": 2})
    assert (list(error.absolute_path), error.instance) == ([], "Not")


def test_items_have_their_index_in_the_path() -> None:
    (error,) = errors({"items": {"type": "integer"}}, [1, "two", 3])
    assert (list(error.absolute_path), error.message) == ([1], "'two' is not of type 'integer'")


def test_any_of_keeps_the_errors_of_each_branch_as_context() -> None:
    schema = {"anyOf": [{"type": "object", "required": ["user"]}, {"type": "null"}]}
    (error,) = errors({"properties": {"auth": schema}}, {"auth": {}})
    assert (error.validator, list(error.absolute_path)) == ("anyOf", ["auth"])
    assert error.message == "{} is not valid under any of the given schemas"
    assert [(list(e.relative_schema_path), list(e.absolute_path), e.message)
            for e in error.context] == [
        ([0, "required"], ["auth"], "'user' is a required property"),
        ([1, "type"], ["auth"], "{} is not of type 'null'")]
    assert all(e.parent is error for e in error.context)


def test_one_of_refuses_none_and_both() -> None:
    schema = {"oneOf": [{"required": ["use"]}, {"required": ["file"]}]}
    (none,) = errors(schema, {})
    assert none.message == "{} is not valid under any of the given schemas"
    assert len(none.context) == 2
    (both,) = errors(schema, {"use": 1, "file": 2})
    assert both.message == ("{'use': 1, 'file': 2} is valid under each of "
                            "{'required': ['file']}, {'required': ['use']}")
    assert both.context == []


def test_all_of_reports_each_branch() -> None:
    schema = {"allOf": [{"type": "string"}, {"minLength": 2}]}
    assert [list(e.relative_schema_path) for e in errors(schema, "a")] == [[
        "allOf", 1, "minLength"]]


def test_if_then_else_errors_are_placed_under_then_or_else() -> None:
    schema = {"if": {"properties": {"listen": {"const": "tcp"}}, "required": ["listen"]},
              "then": {"required": ["port"]}, "else": {"required": ["path"]}}
    (error,) = errors(schema, {"listen": "tcp"})
    assert (error.validator, list(error.relative_schema_path)) == \
        ("required", ["then", "required"])
    (error,) = errors(schema, {"listen": "unix"})
    assert list(error.relative_schema_path) == ["else", "required"]
    assert messages(schema, {"listen": "unix", "path": "/run/x"}) == []


def test_else_without_then_and_then_without_if() -> None:
    assert messages({"if": {"type": "string"}, "else": {"minimum": 5}}, 3) == [
        "3 is less than the minimum of 5"]
    assert messages({"then": {"type": "string"}}, 3) == []


def test_ref_reaches_defs_and_named_documents() -> None:
    schema = {"$defs": {"port": {"type": "integer", "maximum": 65535}},
              "properties": {"port": {"$ref": "#/$defs/port"}, "node": {"$ref": "nodes/x.json"}}}
    found = errors(schema, {"port": 70000, "node": {"id": 1}},
                   {"nodes/x.json": {"properties": {"id": {"type": "string"}}}})
    assert [(list(e.absolute_path), list(e.relative_schema_path)) for e in found] == [
        (["port"], ["properties", "port", "maximum"]),
        (["node", "id"], ["properties", "node", "properties", "id", "type"])]


def test_a_recursive_ref_compiles() -> None:
    tree = {"type": "object", "additionalProperties": {"$ref": "#"}}
    assert messages(tree, {"a": {"b": {}}}) == []
    assert messages(tree, {"a": {"b": 1}}) == ["1 is not of type 'object'"]


def test_a_false_schema_allows_nothing() -> None:
    (error,) = errors({"properties": {"a": False}}, {"a": 1})
    assert (error.message, error.validator, error.schema) == (
        "False schema does not allow 1", None, False)
    assert list(error.absolute_path) == []  # as jsonschema places it
    assert Validator(True).is_valid(object())


def test_errors_come_in_the_schemas_keyword_order() -> None:
    schema = {"required": ["x"], "minProperties": 3, "properties": {"a": {"type": "string"}}}
    assert [e.validator for e in errors(schema, {"a": 1})] == [
        "required", "minProperties", "type"]


def test_a_valid_instance_has_no_errors() -> None:
    validator = Validator(CASES["site"].schema)
    assert validator.is_valid({"flows": [{"use": "time-to-go"}]})
    assert list(validator.iter_errors({"flows": [{"use": "time-to-go"}]})) == []


# -- what it refuses to compile ----------------------------------------------------------

@pytest.mark.parametrize("schema", [
    {"uniqueItems": True}, {"format": "uri"}, {"patternProperties": {"^x": {}}},
    {"$id": "https://example.com/s"}, {"properties": {"a": {"not": {}}}},
    {"anyOf": [{"contains": {}}]}, {"$defs": {"x": {"multipleOf": 2}}},
    {"items": [{"type": "string"}]}, {"items": False}])
def test_a_keyword_it_does_not_check_is_refused_when_compiled(schema: Any) -> None:
    with pytest.raises(ValueError, match="schema #"):
        Validator(schema)


@pytest.mark.parametrize("schema", [
    {"minimum": "5"}, {"type": "text"}, {"required": "a"}, {"minLength": -1},
    {"anyOf": {"type": "string"}}, {"$ref": "#/$defs/missing"}, {"$ref": "other.json"},
    {"$ref": "#anchor"}, {"properties": []}, {"pattern": 5}, {"additionalProperties": 1}])
def test_a_malformed_schema_is_refused_when_compiled(schema: Any) -> None:
    with pytest.raises(ValueError, match="schema #"):
        Validator(schema)


def test_annotations_are_ignored() -> None:
    schema = {"$schema": "x", "title": "t", "description": "d", "default": 1, "examples": [1],
              "x-secret": True, "x-hint": "h", "markdownDescription": "m", "deprecated": True,
              "$comment": "c", "type": "integer"}
    assert Validator(schema).is_valid(1)


def test_every_schema_the_engine_builds_compiles() -> None:
    for case in CASES.values():
        Validator(case.schema, resources=case.resources)


# -- every written flow, site and config, against jsonschema ------------------------------

def test_every_written_document_and_config_gets_jsonschemas_verdict_and_errors() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cases = list(corpus(Path(tmp)))
    differ = [d for d in (compare(CASES[name], instance) for _, name, instance in cases) if d]
    assert differ == []
    invalid = [1 for _, name, instance in cases
               if outline(Validator(CASES[name].schema,
                                    resources=CASES[name].resources).iter_errors(instance))]
    assert len(cases) > 2000 and len(invalid) > 1000  # the corpus is still there


# -- jsonschema stays out of the runtime ---------------------------------------------------

def test_no_engine_module_imports_jsonschema() -> None:
    importers = []
    for folder in ("flowengine", "nodes", "migrate", "sim"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n.split(".")[0] in ("jsonschema", "referencing") for n in names):
                    importers.append(str(path.relative_to(ROOT)))
    assert importers == []


def test_validating_the_shipped_flows_does_not_load_jsonschema() -> None:
    flows = [str(p) for p in sorted((ROOT / "flows").glob("*.yaml"))]
    code = ("import sys; from flowengine.cli import main; import flowengine.runtime; "
            "from flowengine.registry import Registry; Registry.default(); "
            f"rc = main(['validate', *{flows!r}]); print(rc, 'jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, cwd=ROOT)
    assert out.stdout.splitlines()[-1] == "0 False"
