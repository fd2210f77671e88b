"""What `validate` tells a user about a broken flow: every error, where, and the fix."""

from __future__ import annotations

import pytest

from flowengine.errors import ConfigErrors
from flowengine.loader import load_flow
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.schema import make_validator, schema_errors


def problems(path, registry: Registry) -> list[str]:
    with pytest.raises(ConfigErrors) as exc:
        plan_flow(load_flow(path), registry)
    return [str(e) for e in exc.value.errors]


def test_unknown_node_type_suggests_the_closest(write, registry) -> None:
    path = write("f.yaml", """
        id: typo
        nodes:
          - id: src
            type: test.sourc
    """)
    assert problems(path, registry) == [
        f"{path}:4:5: flow 'typo', node 'src' (test.sourc): unknown node type 'test.sourc'; "
        "did you mean 'test.source'?"]


def test_unknown_option_suggests_the_closest(write, registry) -> None:
    path = write("f.yaml", """
        id: opt
        nodes:
          - id: src
            type: test.source
            evry_ms: 5
    """)
    assert problems(path, registry) == [
        f"{path}:5:5: flow 'opt', node 'src' (test.source): unknown option 'evry_ms'; "
        "did you mean 'every_ms'?"]


def test_missing_required_option_says_what_to_add(write, registry) -> None:
    path = write("f.yaml", """
        id: req
        nodes:
          - {id: act, type: test.actuator}
    """)
    assert problems(path, registry) == [
        f"{path}:3:5: flow 'req', node 'act' (test.actuator): missing required option "
        "'device'; add `device:` (file standing for the device)"]


def test_wrong_type_shows_the_value(write, registry) -> None:
    path = write("f.yaml", """
        id: typ
        nodes:
          - {id: src, type: test.source, every_ms: often}
    """)
    assert problems(path, registry) == [
        f"{path}:3:34: flow 'typ', node 'src' (test.source): option 'every_ms' must be a "
        "number, got 'often'"]


def test_dangling_target_suggests_a_node(write, registry) -> None:
    path = write("f.yaml", """
        id: wires
        nodes:
          - id: src
            type: test.source
            to: [actuator]
          - {id: act, type: test.actuator, device: /dev/null}
    """)
    assert problems(path, registry) == [
        f"{path}:5:10: flow 'wires', node 'src' (test.source): 'to:' names the unknown node "
        "'actuator'; known nodes: src, act"]


def test_unknown_output_port(write, registry) -> None:
    path = write("f.yaml", """
        id: ports
        nodes:
          - id: src
            type: test.source
            to: {outt: [act]}
          - {id: act, type: test.actuator, device: /dev/null}
    """)
    assert problems(path, registry) == [
        f"{path}:5:17: flow 'ports', node 'src' (test.source): unknown output port 'outt'; "
        "did you mean 'out'?"]


def test_unknown_input_port(write, registry) -> None:
    path = write("f.yaml", """
        id: ports
        nodes:
          - {id: src, type: test.source, to: ["act:setpoint"]}
          - {id: act, type: test.actuator, device: /dev/null}
    """)
    assert problems(path, registry) == [
        f"{path}:3:39: flow 'ports', node 'src' (test.source): node 'act' has no input port "
        "'setpoint'; test.actuator takes: in"]


def test_duplicate_node_ids(write, registry) -> None:
    path = write("f.yaml", """
        id: dup
        nodes:
          - {id: src, type: test.source}
          - {id: src, type: test.source}
    """)
    assert problems(path, registry) == [
        f"{path}:4:5: flow 'dup': duplicate node id 'src'; first used at line 3; ids must be "
        "unique"]


def test_cycle_without_pacing_node_is_refused(write, registry) -> None:
    path = write("f.yaml", """
        id: loop
        nodes:
          - {id: a, type: test.crash, to: [b]}
          - {id: b, type: test.crash, to: [a]}
    """)
    assert problems(path, registry) == [
        f"{path}:3:5: flow 'loop', node 'a': the wiring loops: a -> b -> a; a loop would pass "
        "messages around without pause; put a `delay` node in it or remove a wire"]


def test_cycle_through_a_pacing_node_is_allowed(write, registry) -> None:
    path = write("f.yaml", """
        id: loop
        nodes:
          - {id: a, type: test.crash, to: [p]}
          - {id: p, type: test.pace, to: [a]}
    """)
    plan = plan_flow(load_flow(path), registry)
    assert set(plan.nodes) == {"a", "p"}


def test_every_error_is_reported_at_once_sorted_by_line(write, registry) -> None:
    path = write("f.yaml", """
        id: many
        nodes:
          - {id: a, type: nope}
          - {id: b, type: test.source, colour: red}
          - {id: c, type: test.actuator}
    """)
    found = problems(path, registry)
    assert [t.split(": flow")[0] for t in found] == [f"{path}:3:13", f"{path}:4:32",
                                                     f"{path}:5:5"]


def test_flow_structure_errors_name_the_key(write, registry) -> None:
    path = write("f.yaml", """
        id: Bad_Id
        nodes:
          - {type: test.source}
    """)
    with pytest.raises(ConfigErrors) as exc:
        load_flow(path)
    texts = [str(e) for e in exc.value.errors]
    assert f"{path}:1:1: flow 'Bad_Id': option 'id' does not match the pattern " \
           "'^[a-z0-9][a-z0-9-]*$'" in texts
    assert f"{path}:3:5: flow 'Bad_Id': missing required option 'id'; add `id:` " \
           "(node id, unique in the flow (short lower-case word))" in texts


def test_validation_starts_nothing(write, registry, tmp_path) -> None:
    device = tmp_path / "device"
    path = write("f.yaml", f"""
        id: quiet
        nodes:
          - {{id: act, type: test.actuator, device: {device}}}
    """)
    plan_flow(load_flow(path), registry)
    assert not device.exists()


def test_did_you_mean_ignores_case_and_dashes() -> None:
    from flowengine.schema import did_you_mean

    assert did_you_mean("Formula", ["formula", "filter"]) == "did you mean 'formula'?"
    assert did_you_mean("interval-ms", ["interval_ms", "topic"]) == "did you mean 'interval_ms'?"
    assert did_you_mean("zzz", ["formula"]) is None


def test_any_of_option_says_what_it_takes(write) -> None:
    path = write("f.yaml", """
        id: one
        nodes:
          - {id: read, type: dbus.source, service: com.victronenergy.system, paths: /Soc}
    """)
    assert problems(path, Registry.default(plugins=False)) == [
        f"{path}:3:70: flow 'one', node 'read' (dbus.source): option 'paths' must be a list of "
        "texts or a mapping of texts, got '/Soc'; paths to follow: a list (the topics are the "
        "paths) or topic -> path"]


def test_any_of_reports_the_one_branch_the_value_fits() -> None:
    schema = {"properties": {"auth": {"anyOf": [
        {"type": "object", "properties": {"user": {"type": "string"}}, "required": ["user"]},
        {"type": "null"}]}}}
    (error,) = schema_errors(make_validator(schema), {"auth": {}}, lambda p: None,
                             fallback=None)
    assert str(error) == "missing required option 'user'; add `user:`"
