"""Bad files cannot exhaust the GX: aliases, size, nesting, encoding, and long values in errors."""

from __future__ import annotations

import itertools
import string
import time
import tracemalloc
from pathlib import Path

import pytest

from flowengine.cli import main
from flowengine.errors import ConfigError, ConfigErrors
from flowengine.loader import load_flow
from flowengine.plan import plan_flow
from flowengine.schema import make_validator, schema_errors
from flowengine.yamlsrc import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    read_yaml,
    read_yaml_text,
)

LONG = "x" * 100_000


def laughs(levels: int) -> str:
    """The classic "billion laughs" file: each line is nine aliases of the line before."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for before, name in itertools.pairwise(string.ascii_lowercase[:levels]):
        lines.append(f"{name}: &{name} [{','.join([f'*{before}'] * 9)}]")
    return "\n".join(lines) + "\n"


def errors_of(exc: pytest.ExceptionInfo[ConfigErrors]) -> list[str]:
    return [str(e) for e in exc.value.errors]


@pytest.mark.parametrize("levels", [9, 7])
def test_billion_laughs_is_refused_at_the_alias_quickly(write, levels: int) -> None:
    path = write("laughs.yaml", laughs(levels))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigErrors) as exc:
            load_flow(path)
        took = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # line 5 is `e: &e [*d,*d,...]`: the second *d passes 20,000 values
    assert errors_of(exc) == [
        f"{path}:5:11: the alias *d makes the file expand to more than {MAX_VALUES} values; "
        "each use of an alias counts every value of its anchor again; a flow or site file "
        "needs far fewer"]
    assert took < 1.0
    assert peak < 20_000_000


def test_laughs_made_of_merge_keys_are_refused_like_aliases() -> None:
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: lol" for i in range(9)) + "}"]
    for level in range(1, 9):  # a<n>: {k0: {<<: *a<n-1>}, ... k8: {<<: *a<n-1>}}
        merges = ", ".join(f"k{i}: {{<<: *a{level - 1}}}" for i in range(9))
        lines.append(f"a{level}: &a{level} {{{merges}}}")
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("\n".join(lines) + "\n", "f.yaml")
    assert errors_of(exc)[0].startswith(
        f"f.yaml:5:19: the alias *a3 makes the file expand to more than {MAX_VALUES} values")


def test_file_at_the_value_limit_loads_and_one_value_more_is_refused() -> None:
    items = MAX_VALUES - 1  # the list itself is a value
    data, _ = read_yaml_text("[" + "0, " * items + "]", "f.yaml")
    assert len(data) == items
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("[" + "0, " * (items + 1) + "]", "f.yaml")
    assert errors_of(exc) == [f"f.yaml:1:{2 + 3 * items}: the file holds more than "
                              f"{MAX_VALUES} values; a flow or site file needs far fewer"]


def test_anchors_and_merge_keys_for_repeated_node_options_still_work(write, registry) -> None:
    path = write("f.yaml", """
        id: shared
        nodes:
          - &source {id: a, type: test.source, every_ms: 20, topic: &topic soc, to: [sink]}
          - {<<: *source, id: b}
          - id: c
            <<: [*source, {topic: ignored, comment: merged}]
            every_ms: 50
          - {id: sink, type: test.actuator, device: /dev/null, comment: *topic}
    """)
    plan = plan_flow(load_flow(path), registry)
    nodes = {n.id: n for n in plan.spec.nodes}
    assert nodes["b"].config == {"every_ms": 20, "topic": "soc"}
    assert nodes["c"].config == {"every_ms": 50, "topic": "soc"}
    assert [w.target for w in nodes["c"].wires] == ["sink"]
    assert nodes["c"].key_marks[("every_ms",)].line == 7  # written beside the merge key
    assert nodes["c"].key_marks[("topic",)].line == 3  # merged: where the anchor wrote it


def test_more_aliases_than_the_limit_are_refused_at_the_first_one_too_many() -> None:
    text = "a: &a 1\nb: [" + "*a, " * MAX_ALIASES + "]\n"
    assert len(read_yaml_text(text, "f.yaml")[0]["b"]) == MAX_ALIASES
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("a: &a 1\nb: [" + "*a, " * (MAX_ALIASES + 1) + "]\n", "f.yaml")
    assert errors_of(exc) == [f"f.yaml:2:{5 + 4 * MAX_ALIASES}: more than {MAX_ALIASES} "
                              "aliases (*name) in one file; a flow or site file needs far fewer"]


def test_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("id: loop\nx: &a [1, *a]\n", "f.yaml")
    assert errors_of(exc) == ["f.yaml:2:11: the alias *a is inside its own anchor &a; "
                              "the value would contain itself without end"]


def test_unknown_alias_names_its_line() -> None:
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("a: &one 1\nb: *two\n", "f.yaml")
    assert errors_of(exc) == ["f.yaml:2:4: unknown alias *two; an alias needs its anchor "
                              "&two written before it"]


def test_deep_nesting_is_an_error_with_its_line_not_a_traceback(
        write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("deep.yaml", "id: deep\nnodes: []\nx: " + "[" * 100_000 + "\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:3:") and "nest" in err  # libyaml's words or ours
    assert err.endswith("1 error(s)\n")


def test_nesting_past_the_limit_through_an_alias_is_refused() -> None:
    deep = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    read_yaml_text(f"a: &a {deep}\n", "f.yaml")  # with the root mapping: MAX_DEPTH levels
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text(f"a: &a {deep}\nb: [*a]\n", "f.yaml")
    assert errors_of(exc) == [f"f.yaml:2:5: the alias *a nests lists and mappings deeper "
                              f"than {MAX_DEPTH} levels; a flow or site file needs far fewer"]


def test_value_nested_to_the_limit_validates(write, capsys: pytest.CaptureFixture[str]) -> None:
    levels = MAX_DEPTH - 3  # root mapping, nodes list, node mapping
    path = write("f.yaml", "id: deep\nnodes:\n  - {id: tick, type: timer, interval_ms: 1000, "
                           f"value: {'[' * levels}1{']' * levels}}}\n")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("id: big\n# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ConfigErrors) as exc:
        read_yaml(path)
    assert errors_of(exc) == [f"{path}: the file is larger than 2 MiB; a flow or site file "
                              "needs far less"]


def test_invalid_utf8_is_reported_at_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    # an editor saved "ä" as Latin-1 on a line that has "ü" and "ß" in UTF-8 before it
    path.write_bytes("id: bad\nnodes:\n  - {id: grüße, type: ".encode() + b"\xe4}\n")
    with pytest.raises(ConfigErrors) as exc:
        read_yaml(path)
    assert errors_of(exc) == [f"{path}:3:23: the file is not valid UTF-8 (byte 0xe4 at "
                              "offset 39); save it as UTF-8"]


def test_utf16_file_is_refused_with_how_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("id: wide\nnodes: []\n", encoding="utf-16")
    with pytest.raises(ConfigErrors) as exc:
        read_yaml(path)
    assert errors_of(exc) == [f"{path}:1:1: the file is UTF-16, not UTF-8; save it as UTF-8 "
                              "(without a byte order mark)"]


def test_utf8_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("id: bom\nnodes: []\n", encoding="utf-8-sig")
    data, marks = read_yaml(path)
    assert data == {"id": "bom", "nodes": []}
    assert str(marks.get(("id",))) == f"{path}:1:1"


def test_second_document_is_refused_at_its_start() -> None:
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("id: one\n---\nid: two\n", "f.yaml")
    assert errors_of(exc) == ["f.yaml:2:1: the file holds more than one YAML document; a flow "
                              "or site file is one document; remove the `---` line"]


def test_value_yaml_cannot_construct_is_an_error_at_its_line() -> None:
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("id: date\nsince: 2024-02-30\n", "f.yaml")
    assert errors_of(exc) == ["f.yaml:2:8: '2024-02-30' is not a valid timestamp (day is out "
                              "of range for month); to keep it as text, write it in quotes "
                              "(without a !! tag)"]


def test_explicit_tag_the_value_does_not_fit_is_an_error_at_its_line() -> None:
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("id: tag\nsince: !!timestamp soon\n", "f.yaml")
    assert errors_of(exc) == ["f.yaml:2:8: 'soon' is not a valid timestamp; to keep it as "
                              "text, write it in quotes (without a !! tag)"]


def test_control_character_is_reported_at_its_line_and_column() -> None:
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("id: ctl\nname: grüße\x1a\n", "f.yaml")
    assert errors_of(exc) == ["f.yaml:2:12: the file holds the control character #x001a, which "
                              "YAML does not allow; remove it; a text in double quotes can hold "
                              'it as an escape ("\\x1a")']


# -- a rejected value of 100,000 characters ------------------------------------------------

def test_long_rejected_value_is_shortened_in_validate(
        write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("f.yaml", "id: long\nnodes:\n"
                           f"  - {{id: tick, type: timer, interval_ms: {LONG}}}\n")
    assert main(["validate", str(path)]) == 1
    line, count = capsys.readouterr().err.splitlines()
    assert line == (f"{path}:3:29: flow 'long', node 'tick' (timer): option 'interval_ms' must "
                    f"be a number or empty, got '{'x' * 80}'… (100000 characters)")
    assert count == "1 error(s)"


def test_long_var_value_is_shortened(write) -> None:
    path = write("f.yaml", """
        id: var
        vars:
          every_ms: {type: integer, default: 100}
        nodes:
          - {id: src, type: test.source, every_ms: "${every_ms}"}
    """)
    with pytest.raises(ConfigErrors) as exc:
        load_flow(path, values={"every_ms": LONG})
    assert errors_of(exc) == [f"{path}:3:3: flow 'var': var 'every_ms' must be of type "
                              f"integer, got '{'x' * 80}'… (100000 characters)"]


def test_jsonschema_message_quotes_a_long_value_shortened() -> None:
    validator = make_validator({"properties": {"name": {"type": "string", "maxLength": 8}}})
    (error,) = schema_errors(validator, {"name": LONG}, lambda p: None, fallback=None)
    assert str(error) == f"option 'name': '{'x' * 80}'… (100000 characters) is too long"


def test_long_unknown_option_name_is_shortened() -> None:
    validator = make_validator({"properties": {"name": {}}, "additionalProperties": False})
    (error,) = schema_errors(validator, {LONG: 1}, lambda p: None, fallback=None)
    assert str(error) == f"unknown option '{'x' * 80}… (100000 characters)'; known options: name"


def test_long_message_built_elsewhere_is_cut_in_the_middle() -> None:
    error = ConfigError(f"'{LONG}' is not a valid MQTT topic filter", hint="no + or # inside")
    text = str(error)
    assert len(text) < 600
    assert text.startswith("'xxx") and "characters left out" in text
    assert text.endswith("' is not a valid MQTT topic filter; no + or # inside")
    assert error.to_json()["message"] in text
