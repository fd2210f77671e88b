"""Flow and site files: vars, secrets, marks, instances — and the errors users read."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowengine.errors import ConfigErrors
from flowengine.loader import Secrets, load_flow, load_site
from flowengine.model import Secret
from flowengine.yamlsrc import read_yaml_text

FLOW = """
id: demo
description: a flow with vars
vars:
  capacity_wh: {type: number, description: usable battery capacity, example: 28000}
  every_ms: {type: integer, default: 1000}
  name: {type: string, default: house}
nodes:
  - id: src
    type: test.source
    every_ms: ${every_ms}
    topic: "${name}/soc of ${capacity_wh} Wh"
"""


def errors_of(exc: pytest.ExceptionInfo[ConfigErrors]) -> list[str]:
    return [str(e) for e in exc.value.errors]


def test_whole_value_var_keeps_its_type(write) -> None:
    spec = load_flow(write("f.yaml", FLOW), values={"capacity_wh": 28000})
    assert spec.nodes[0].config["every_ms"] == 1000
    assert spec.vars["capacity_wh"] == 28000.0


def test_var_inside_text_is_interpolated(write) -> None:
    spec = load_flow(write("f.yaml", FLOW), values={"capacity_wh": 5000, "name": "garage"})
    assert spec.nodes[0].config["topic"] == "garage/soc of 5000.0 Wh"


def test_double_dollar_writes_a_literal(write) -> None:
    path = write("f.yaml", """
        id: lit
        nodes:
          - {id: src, type: test.source, topic: "$${not_a_var}"}
    """)
    assert load_flow(path).nodes[0].config["topic"] == "${not_a_var}"


def test_unknown_var_reference_names_line_and_suggests(write) -> None:
    path = write("f.yaml", """
        id: typo
        vars:
          every_ms: {type: integer, default: 100}
        nodes:
          - id: src
            type: test.source
            every_ms: ${evry_ms}
    """)
    with pytest.raises(ConfigErrors) as exc:
        load_flow(path)
    assert errors_of(exc) == [
        f"{path}:3:3: flow 'typo': var 'every_ms' is declared but never used; "
        "use it as ${every_ms} or remove it",
        f"{path}:7:5: flow 'typo': unknown var '${{evry_ms}}'; did you mean 'every_ms'?",
    ]


def test_missing_var_value_is_reported_with_its_description(write) -> None:
    with pytest.raises(ConfigErrors) as exc:
        load_flow(write("f.yaml", FLOW))
    (text,) = errors_of(exc)
    assert "var 'capacity_wh' has no value" in text
    assert "usable battery capacity" in text


def test_example_stands_in_when_validating_a_flow_alone(write) -> None:
    spec = load_flow(write("f.yaml", FLOW), use_examples=True)
    assert spec.vars["capacity_wh"] == 28000


def test_var_of_wrong_type_is_rejected(write) -> None:
    with pytest.raises(ConfigErrors) as exc:
        load_flow(write("f.yaml", FLOW), values={"capacity_wh": "lots"})
    assert "var 'capacity_wh' must be of type number, got 'lots'" in errors_of(exc)[0]


def test_unknown_var_from_caller_is_rejected(write) -> None:
    with pytest.raises(ConfigErrors) as exc:
        load_flow(write("f.yaml", FLOW), values={"capacity_wh": 1, "capacity": 2})
    assert "unknown var 'capacity'; did you mean 'capacity_wh'?" in errors_of(exc)[0]


def test_duplicate_key_is_an_error_not_a_silent_overwrite(write) -> None:
    path = write("f.yaml", """
        id: dup
        nodes:
          - id: src
            type: test.source
            topic: a
            topic: b
    """)
    with pytest.raises(ConfigErrors) as exc:
        load_flow(path)
    assert errors_of(exc) == [f"{path}:6:5: duplicate key 'topic'; it is set already at line 5"]


def test_yaml_syntax_error_names_the_line(write) -> None:
    path = write("f.yaml", "id: bad\nnodes:\n  - id: a\n    type: [x\n")
    with pytest.raises(ConfigErrors) as exc:
        load_flow(path)
    assert errors_of(exc)[0].startswith(f"{path}:5:1: not valid YAML")


def test_secret_comes_from_environment_and_never_shows(write) -> None:
    path = write("f.yaml", """
        id: sec
        vars:
          password: {type: secret}
        nodes:
          - {id: src, type: test.source, topic: "${password}"}
    """)
    secrets = Secrets(None, {"ESESS_SECRET_MQTT_PW": "hunter2"})
    from flowengine.yamlsrc import read_yaml_text

    values, marks = read_yaml_text("password: !secret mqtt_pw\n", "site.yaml")
    spec = load_flow(path, values=values, value_marks=marks, secrets=secrets)
    secret = spec.vars["password"]
    assert isinstance(secret, Secret)
    assert secret.reveal() == "hunter2"
    assert "hunter2" not in repr(spec) and "hunter2" not in str(secret)


def test_secret_comes_from_the_secrets_file(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("mqtt_pw: s3cret\n")
    from flowengine.yamlsrc import SecretRef

    ref = SecretRef("mqtt_pw", None)  # type: ignore[arg-type]
    assert Secrets(tmp_path / "secrets.yaml", {}).resolve(ref).reveal() == "s3cret"


def test_missing_secret_says_where_to_put_it(write) -> None:
    path = write("f.yaml", """
        id: sec
        nodes:
          - {id: a, type: test.actuator, device: !secret dev_path}
    """)
    with pytest.raises(ConfigErrors) as exc:
        load_flow(path, secrets=Secrets(path.parent / "secrets.yaml", {}))
    (text,) = errors_of(exc)
    assert text.startswith(f"{path}:3:42: flow 'sec': secret 'dev_path' is not set; add")
    assert "ESESS_SECRET_DEV_PATH" in text


SITE = """
flows:
  - use: counter
    instance: garden
    vars: {every_ms: 250}
  - use: counter
    instance: garage
  - file: custom/mine.yaml
  - use: counter
    enabled: false
"""


def _shipped(write) -> Path:
    write("shipped/counter.yaml", """
        id: counter
        vars:
          every_ms: {type: integer, default: 1000}
        nodes:
          - {id: src, type: test.source, every_ms: "${every_ms}"}
    """)
    write("custom/mine.yaml", """
        id: mine
        nodes:
          - {id: src, type: test.source}
    """)
    return Path(write("site.yaml", SITE)).parent / "shipped"


def test_site_instantiates_a_flow_several_times(write) -> None:
    shipped = _shipped(write)
    site = load_site(shipped.parent / "site.yaml", flows_dir=shipped)
    assert [f.id for f in site.flows] == ["counter@garden", "counter@garage", "mine"]
    assert site.flows[0].nodes[0].config["every_ms"] == 250
    assert site.flows[1].nodes[0].config["every_ms"] == 1000


def test_site_var_error_points_into_the_site_file(write) -> None:
    shipped = _shipped(write)
    site = write("site.yaml", "flows:\n  - use: counter\n    vars: {every_ms: soon}\n")
    with pytest.raises(ConfigErrors) as exc:
        load_site(site, flows_dir=shipped)
    assert errors_of(exc) == [
        f"{site}:3:12: flow 'counter': var 'every_ms' must be of type integer, got 'soon'"]


def test_unknown_shipped_flow_suggests_the_closest(write) -> None:
    shipped = _shipped(write)
    site = write("site.yaml", "flows:\n  - use: countr\n")
    with pytest.raises(ConfigErrors) as exc:
        load_site(site, flows_dir=shipped)
    assert errors_of(exc) == [f"{site}:2:5: no shipped flow 'countr'; did you mean 'counter'?"]


def test_same_flow_twice_without_instance_is_an_error(write) -> None:
    shipped = _shipped(write)
    site = write("site.yaml", "flows:\n  - use: counter\n  - use: counter\n")
    with pytest.raises(ConfigErrors) as exc:
        load_site(site, flows_dir=shipped)
    assert "flow 'counter' is enabled twice" in errors_of(exc)[0]


def test_site_schema_errors_are_all_reported(write) -> None:
    site = write("site.yaml", "flows:\n  - instance: x\nstat_dir: /tmp\n")
    with pytest.raises(ConfigErrors) as exc:
        load_site(site)
    texts = errors_of(exc)
    assert any("unknown option 'stat_dir'; did you mean 'state_dir'?" in t for t in texts)
    assert len(texts) == 2


def test_site_flow_entry_needs_use_or_file_not_both(write) -> None:
    site = write("site.yaml", "flows:\n  - instance: x\n  - {use: a, file: a.yaml}\n")
    with pytest.raises(ConfigErrors) as exc:
        load_site(site)
    assert errors_of(exc) == [f"{site}:2:5: option 'flows.0' needs `use:` or `file:`",
                              f"{site}:3:5: option 'flows.1' takes only one of `use:` and "
                              "`file:`"]


def test_exponent_numbers_read_as_numbers_not_text(write) -> None:
    path = write("f.yaml", """
        id: num
        nodes:
          - {id: src, type: test.source, every_ms: 1.5e3, topic: e5}
    """)
    config = load_flow(path).nodes[0].config
    assert config == {"every_ms": 1500.0, "topic": "e5"}


OPTIONAL = """
id: optional
vars:
  extra_topic: {type: string, default: null}
nodes:
  - {id: src, type: test.source, to: [main, extra]}
  - {id: main, type: test.sink}
  - {id: extra, type: test.sink, when: "${extra_topic}", topic: "${extra_topic}"}
"""


def test_node_with_unset_when_is_left_out_with_its_wires(write) -> None:
    spec = load_flow(write("f.yaml", OPTIONAL))
    assert [n.id for n in spec.nodes] == ["src", "main"]
    assert [w.target for w in spec.nodes[0].wires] == ["main"]


def test_node_with_set_when_is_kept_and_when_is_not_config(write) -> None:
    spec = load_flow(write("f.yaml", OPTIONAL), values={"extra_topic": "a/b"})
    extra = spec.nodes[2]
    assert extra.id == "extra" and extra.config == {"topic": "a/b"}
    assert [w.target for w in spec.nodes[0].wires] == ["main", "extra"]


LIMITED = """
id: limited
vars:
  qos: {type: integer, enum: [0, 1, 2], default: 0}
  phase: {type: integer, minimum: 1, maximum: 3, default: 1}
nodes:
  - {id: src, type: test.source, topic: "q${qos} p${phase}"}
"""


@pytest.mark.parametrize(("values", "problem"), [
    ({"qos": 3}, "var 'qos' must be one of 0, 1, 2, got 3"),
    ({"phase": 0}, "var 'phase' must be at least 1, got 0"),
    ({"phase": 4}, "var 'phase' must be at most 3, got 4"),
])
def test_var_enum_and_range_are_enforced(write, values: dict[str, int], problem: str) -> None:
    with pytest.raises(ConfigErrors) as exc:
        load_flow(write("f.yaml", LIMITED), values=values)
    assert any(problem in text for text in errors_of(exc)), errors_of(exc)


def test_var_within_its_limits_is_taken(write) -> None:
    spec = load_flow(write("f.yaml", LIMITED), values={"qos": 2, "phase": 3})
    assert spec.nodes[0].config["topic"] == "q2 p3"


def test_yaml_1_1_booleans_stay_text_as_keys_and_values(write) -> None:
    path = write("f.yaml", """
        id: words
        nodes:
          - {id: src, type: test.source, map: {on: 1, off: 0, yes: y, no: n}}
    """)
    config = load_flow(path).nodes[0].config
    assert config == {"map": {"on": 1, "off": 0, "yes": "y", "no": "n"}}


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("FALSE", False),
    ("On", "On"), ("Y", "Y"), ("NO", "NO"), ("tRuE", "tRuE"),
])
def test_only_true_and_false_are_booleans(text: str, value: object) -> None:
    assert read_yaml_text(f"v: {text}\n", "f.yaml")[0] == {"v": value}


@pytest.mark.parametrize(("text", "value"), [
    ("017", 17), ("0o17", 15), ("0x1F", 31), ("-5", -5), ("1e3", 1000.0), (".5", 0.5),
    ("1:30", "1:30"), ("1_000", "1_000"), ("0b101", "0b101"), ("-.inf", float("-inf")),
])
def test_numbers_are_read_as_yaml_1_2_core_writes_them(text: str, value: object) -> None:
    assert read_yaml_text(f"v: {text}\n", "f.yaml")[0] == {"v": value}


def test_an_explicit_bool_tag_on_a_yaml_1_1_word_is_refused() -> None:
    with pytest.raises(ConfigErrors) as exc:
        read_yaml_text("v: !!bool yes\n", "f.yaml")
    assert errors_of(exc) == ["f.yaml:1:4: 'yes' is not a valid bool; to keep it as text, "
                              "write it in quotes (without a !! tag)"]
