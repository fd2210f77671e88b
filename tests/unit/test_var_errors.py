"""A node option made from a var and refused by the node: the error points at the var's value.

The flow file's `paths: ${paths}` is not what the user wrote, so the error names the
line where the value was set (the site file, or the var's default) and still says
which flow, node and option took it, and where the flow uses the var.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowengine.errors import ConfigErrors
from flowengine.loader import load_flow, load_site
from flowengine.plan import plan_flow
from flowengine.registry import Registry

REGISTRY = Registry.default(plugins=False)

FLOW = """
id: export
vars:
  service: {type: string, default: com.victronenergy.system}
  paths: {type: any, example: [/Soc]}
  mode: {type: string, default: delay}
  delay_ms: {type: number, default: 1000}
nodes:
  - id: read
    type: dbus.source
    service: ${service}
    paths: ${paths}
    to: [wait]
  - id: wait
    type: delay
    delay_ms: ${delay_ms}
    mode: ${mode}
"""
# where FLOW uses each var (line 1 is `id: export`)
SERVICE_AT, PATHS_AT, DELAY_MS_AT, MODE_AT = "10:5", "11:5", "15:5", "16:5"


def problems(path: Path) -> list[str]:
    """Every error `validate` reports for a flow file or a site file."""
    found: list[str] = []
    try:
        flows = load_site(path).flows if path.name.startswith("site") else \
            [load_flow(path, use_examples=True)]
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    for flow in flows:
        try:
            plan_flow(flow, REGISTRY)
        except ConfigErrors as exc:
            found.extend(str(e) for e in exc.errors)
    return found


def site_with(write, vars_: str) -> tuple[Path, Path]:
    flow = write("flows/export.yaml", FLOW)
    site = write("site.yaml", f"flows:\n  - file: flows/export.yaml\n    vars: {vars_}\n")
    return flow, site


def test_site_value_refused_by_the_node_schema_points_at_the_site_file(write) -> None:
    flow, site = site_with(write, "{paths: 5}")
    assert problems(site) == [
        f"{site}:3:12: flow 'export', node 'read' (dbus.source): option 'paths' must be a "
        f"list of texts or a mapping of texts, got 5; set by var 'paths' ({flow}:{PATHS_AT}: "
        "paths: ${paths}); paths to follow: a list (the topics are the paths) or topic -> path"]


@pytest.mark.parametrize(("vars_", "problem"), [
    ("{paths: [/Soc], mode: fast}",
     "3:27: flow 'export', node 'wait' (delay): option 'mode' has the unknown value 'fast'; "
     f"set by var 'mode' (FLOW:{MODE_AT}: mode: ${{mode}}); one of: delay, rate"),
    ("{paths: [/Soc], delay_ms: -5}",
     "3:27: flow 'export', node 'wait' (delay): option 'delay_ms' must be at least 0, got "
     f"-5.0; set by var 'delay_ms' (FLOW:{DELAY_MS_AT}: delay_ms: ${{delay_ms}}); change the "
     "value of var 'delay_ms' here"),
])
def test_site_value_outside_a_node_enum_or_minimum_points_at_the_site_file(
        write, vars_: str, problem: str) -> None:
    flow, site = site_with(write, vars_)
    assert problems(site) == [f"{site}:" + problem.replace("FLOW", str(flow))]


def test_site_value_refused_by_the_node_itself_points_at_the_site_file(write) -> None:
    flow, site = site_with(write, "{paths: [Soc]}")
    assert problems(site) == [
        f"{site}:3:12: flow 'export', node 'read' (dbus.source): 'Soc' is not a D-Bus path; "
        f"set by var 'paths' ({flow}:{PATHS_AT}: paths: ${{paths}}); paths start with '/', "
        "e.g. /Dc/Battery/Soc"]


def test_default_value_refused_by_the_node_points_at_the_default(write) -> None:
    flow = write("flows/export.yaml", FLOW.replace("default: delay", "default: fast"))
    site = write("site.yaml", "flows:\n  - file: flows/export.yaml\n    vars: {paths: [/Soc]}\n")
    assert problems(site) == [
        f"{flow}:5:24: flow 'export', node 'wait' (delay): option 'mode' has the unknown value "
        f"'fast'; set by var 'mode' ({flow}:{MODE_AT}: mode: ${{mode}}); one of: delay, rate; "
        "set var 'mode' under vars: in the site file, or change it here"]


def test_value_made_with_a_var_inside_a_text_names_the_var(write) -> None:
    flow = write("flows/export.yaml", FLOW.replace(
        "service: ${service}", "service: com.victronenergy.${service}").replace(
        "default: com.victronenergy.system", "default: system"))
    site = write("site.yaml", "flows:\n  - file: flows/export.yaml\n"
                              "    vars: {paths: [/Soc], service: my grid}\n")
    (text,) = problems(site)
    assert text.startswith(
        f"{site}:3:27: flow 'export', node 'read' (dbus.source): option 'service' does not "
        "match the pattern")
    assert text.endswith(
        f"; made with var 'service' ({flow}:{SERVICE_AT}: service: "
        "com.victronenergy.${service}); change the value of var 'service' here")


def test_value_made_with_several_vars_stays_at_the_flow_line(write) -> None:
    flow = write("flows/export.yaml", FLOW.replace(
        "service: ${service}", "service: ${service}.${mode}"))
    site = write("site.yaml", "flows:\n  - file: flows/export.yaml\n"
                              "    vars: {paths: [/Soc], service: my grid}\n")
    (text,) = problems(site)
    assert text.startswith(f"{flow}:{SERVICE_AT}: flow 'export', node 'read' (dbus.source): "
                           "option 'service' does not match the pattern")
    assert text.endswith("; made with vars 'service', 'mode' (service: ${service}.${mode}); "
                         "change the value of var 'service' or 'mode'")


def test_value_given_without_a_file_keeps_the_flow_line_and_names_the_var(write) -> None:
    flow = write("flows/export.yaml", FLOW)
    with pytest.raises(ConfigErrors) as exc:
        plan_flow(load_flow(flow, values={"paths": 5}), REGISTRY)
    assert [str(e) for e in exc.value.errors] == [
        f"{flow}:{PATHS_AT}: flow 'export', node 'read' (dbus.source): option 'paths' must be "
        "a list of texts or a mapping of texts, got 5; set by var 'paths' (paths: ${paths}); "
        "paths to follow: a list (the topics are the paths) or topic -> path"]


def test_option_written_in_the_flow_file_is_reported_there_as_before(write) -> None:
    flow = write("flows/export.yaml", FLOW.replace("    to: [wait]", "    connection: 5\n"
                                                                     "    to: [wait]"))
    site = write("site.yaml", "flows:\n  - file: flows/export.yaml\n    vars: {paths: 5}\n")
    written, from_var = problems(site)
    assert written == f"{flow}:12:5: flow 'export', node 'read' (dbus.source): option " \
        "'connection' must be a text, got 5"
    assert from_var.startswith(f"{site}:3:12:")
