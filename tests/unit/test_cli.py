"""esess-flowctl as a user runs it: validate, run with SIGTERM, schemas, list-nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from flowengine.cli import main

GOOD = """
id: good
nodes:
  - {id: src, type: test.source, every_ms: 20, to: [act]}
  - {id: act, type: test.actuator, device: "DEVICE", safe_value: -1}
"""


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """An environment where the test node types are installed as an entry point plugin."""
    site = tmp_path / "site-packages"
    info = site / "esess_testnodes-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: esess-testnodes\n"
                                   "Version: 0.0\n")
    (info / "entry_points.txt").write_text("[esess.nodes]\ntestnodes = testnodes\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT / "tests" / "plugins"), str(ROOT)])
    return env


def flowctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "esess-flowctl"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_validate_exits_0_for_a_good_flow(write, plugin_env) -> None:
    path = write("good.yaml", GOOD.replace("DEVICE", "/dev/null"))
    result = flowctl("validate", str(path), env=plugin_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ok: flow 'good' (2 nodes) in {path}\n"


def test_validate_exits_1_with_every_error(write, plugin_env) -> None:
    path = write("bad.yaml", """
        id: bad
        nodes:
          - {id: src, type: test.sourc, to: [nowhere]}
          - {id: act, type: test.actuator, device: /dev/null, colour: red}
    """)
    result = flowctl("validate", str(path), env=plugin_env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:3:15: flow 'bad', node 'src' (test.sourc): unknown node type 'test.sourc'; "
        "did you mean 'test.source'?",
        f"{path}:3:38: flow 'bad', node 'src' (test.sourc): 'to:' names the unknown node "
        "'nowhere'; known nodes: src, act",
        f"{path}:4:55: flow 'bad', node 'act' (test.actuator): unknown option 'colour'; "
        "known options: device, safe_value, fail_on",
        "3 error(s)",
    ]


def test_validate_json_output_is_machine_readable(write, plugin_env) -> None:
    path = write("bad.yaml", "id: bad\nnodes:\n  - {id: src, type: nope}\n")
    result = flowctl("validate", "--json", str(path), env=plugin_env)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    (error,) = report["errors"]
    assert (error["file"], error["line"], error["column"]) == (str(path), 3, 15)
    assert (error["flow"], error["node"], error["kind"]) == ("bad", "src", "UnknownNodeType")


def test_secret_value_never_appears_in_validate_output(write, plugin_env) -> None:
    path = write("sec.yaml", """
        id: sec
        vars:
          pw: {type: secret}
        nodes:
          - {id: src, type: test.source, every_ms: "${pw}"}
    """)
    env = dict(plugin_env, ESESS_SECRET_PW="hunter2-secret")
    result = flowctl("validate", "--var", "pw=x", str(path), env=env)
    assert "hunter2" not in result.stdout + result.stderr
    write("site.yaml", f"flows:\n  - file: {path.name}\n    vars: {{pw: !secret pw}}\n")
    result = flowctl("validate", str(path.parent / "site.yaml"), env=env)
    assert result.returncode == 1
    assert "hunter2" not in result.stdout + result.stderr
    assert "option 'every_ms' must be a number, got '***'" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_applies_safe_state_on_signal_and_exits_0(write, plugin_env, tmp_path, sig) -> None:
    device = tmp_path / "device"
    path = write("good.yaml", GOOD.replace("DEVICE", str(device)))
    with subprocess.Popen([sys.executable, str(ROOT / "esess-flowctl"), "run", str(path)],
                          env=plugin_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        try:
            deadline = time.monotonic() + 20
            while not (device.exists() and device.read_text().strip() not in ("", "-1")):
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "the flow never drove the device"
                time.sleep(0.02)
            sent = time.monotonic()
            proc.send_signal(sig)
            output = proc.communicate(timeout=10)[0]
            took = time.monotonic() - sent
            code = proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, output
    assert device.read_text() == "-1\n"
    assert "safe state applied (shutdown)" in output
    assert took < 2.0


def test_run_refuses_to_start_an_invalid_flow(write, plugin_env, tmp_path) -> None:
    device = tmp_path / "device"
    path = write("bad.yaml", GOOD.replace("DEVICE", str(device)).replace("every_ms: 20",
                                                                          "every_ms: -"))
    result = flowctl("run", str(path), env=plugin_env)
    assert result.returncode == 1
    assert "nothing was started" in result.stderr
    assert not device.exists()


def test_validate_refuses_a_site_without_the_broker_a_node_names(
        write, capsys: pytest.CaptureFixture[str]) -> None:
    flow = write("flows/listen.yaml", """
        id: listen
        vars:
          broker: {type: string, default: main}
        nodes:
          - id: sub
            type: mqtt.in
            topic: a/b
            broker: ${broker}
            to: [show]
          - {id: show, type: log}
    """)
    lacking = write("site.yaml", f"""
        flows:
          - file: {flow}
          - file: {flow}
            instance: gx
            vars: {{broker: local}}
    """)
    assert main(["validate", str(lacking)]) == 1
    err = capsys.readouterr().err
    assert f"{flow}:3:26: flow 'listen', node 'sub' (mqtt.in): broker 'main': the site file " \
        f"has no mqtt connection 'main'; set by var 'broker' ({flow}:8:5: broker: ${{broker}}); " \
        "add it under connections: mqtt: main:" in err  # 3:26: the var's default
    assert "listen@gx" not in err  # `local` needs no entry: it is the GX's own broker
    having = write("site2.yaml", f"""
        connections:
          mqtt:
            main: {{host: broker.lan}}
        flows:
          - file: {flow}
    """)
    assert main(["validate", str(having)]) == 0


def test_validate_refuses_two_services_with_one_dbus_name(
        write, capsys: pytest.CaptureFixture[str]) -> None:
    flow = write("flows/sensor.yaml", """
        id: sensor
        vars:
          name: {type: string, default: esess_sensor}
        nodes:
          - id: svc
            type: dbus.service
            preset: temperature
            name: ${name}
            device_instance: 20
    """)
    clash = write("site.yaml", f"""
        flows:
          - file: {flow}
            instance: a
          - file: {flow}
            instance: b
          - file: {flow}
            instance: c
            vars: {{name: esess_c}}
    """)
    assert main(["validate", str(clash)]) == 1
    err = capsys.readouterr().err
    assert f"{flow}:3:24: flow 'sensor@b', node 'svc' (dbus.service): D-Bus name " \
        "com.victronenergy.temperature.esess_sensor is taken already by flow 'sensor@a', " \
        "node 'svc'" in err
    assert "give each its own name" in err and "sensor@c" not in err
    fine = write("site2.yaml", f"""
        flows:
          - file: {flow}
          - file: {flow}
            instance: c
            vars: {{name: esess_c}}
    """)
    assert main(["validate", str(fine)]) == 0


def test_schemas_are_up_to_date() -> None:
    assert main(["schemas", "--check"]) == 0, "run `esess-flowctl schemas` and commit"


def test_stale_schema_is_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--out", str(tmp_path), "--docs", ""]) == 0
    node_file = next((tmp_path / "nodes").glob("*.json"))
    node_file.write_text("{}\n")
    capsys.readouterr()
    assert main(["schemas", "--check", "--out", str(tmp_path), "--docs", ""]) == 1
    assert f"stale: {node_file}" in capsys.readouterr().err


def test_list_nodes_describes_every_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-nodes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    for expected in ("timer", "formula", "join", "filter", "change", "delay", "log"):
        assert expected in names
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("esess-flowctl 0.")


@pytest.mark.parametrize("command", ["validate", "run", "schemas", "list-nodes"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: esess-flowctl " + command in capsys.readouterr().out


def test_readme_main_command_runs_from_the_checkout() -> None:
    """The README's first command: the root script, its bootstrap, the demo."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ESESS_BOOTSTRAPPED")}
    boot = subprocess.run([str(ROOT / "scripts" / "bootstrap")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert boot.returncode == 0, boot.stderr
    done = subprocess.run([str(ROOT / "esess-flowctl"), "demo", "--duration", "3"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mosquitto_sub -h 127.0.0.1 -p " in done.stdout
    assert "[demo] " in done.stdout


def test_the_guardian_runs_the_same_command_line_with_no_guardian() -> None:
    from flowengine.launch import without_guardian_flags

    assert without_guardian_flags(
        ["run", "--guardian", "--guardian-timeout", "5", "--state-dir", "s", "site.yaml"]
    ) == ["run", "--no-guardian", "--state-dir", "s", "site.yaml"]
    assert without_guardian_flags(["run", "--guardian-timeout=3", "f.yaml"]) == [
        "run", "--no-guardian", "f.yaml"]


@pytest.mark.parametrize(("host", "tls", "warned"), [
    ("broker.lan", "false", True), ("192.168.1.5", "false", True),
    ("broker.lan", "true", False), ("localhost", "false", False), ("127.0.0.1", "false", False)])
def test_validate_warns_of_a_password_sent_in_clear_to_another_host(
        write, capsys: pytest.CaptureFixture[str], host: str, tls: str, warned: bool) -> None:
    site = write("site.yaml", f"""
        connections:
          mqtt:
            main: {{host: {host}, username: esess, password: !secret pw, tls: {tls}}}
        flows: []
        """)
    os.environ["ESESS_SECRET_PW"] = "hunter2-secret"
    try:
        assert main(["validate", str(site)]) == 0
    finally:
        del os.environ["ESESS_SECRET_PW"]
    err = capsys.readouterr().err
    assert "hunter2-secret" not in err
    if warned:
        assert err.startswith(f"{site}:3:5: warning: mqtt.main: the password for {host}:1883 "
                              "goes over the network in clear text")
        assert "tls: true" in err
    else:
        assert err == ""


def test_a_guardian_timeout_shorter_than_the_heartbeat_is_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--guardian-timeout", "0.5", "site.yaml"])
    assert exit_.value.code == 2
    assert "0.5 s: use between 2 and 600 s (the heartbeat comes every second)" in \
        capsys.readouterr().err


SIX_ERRORS = {
    "flows/a.yaml": "id: a\nnodes:\n  - {id: x}\n",
    "flows/b.yaml": """
        id: b
        nodes:
          - {id: t, type: timer, interval_ms: 1000, to: [nowhere]}
          - {id: f, type: formul}
    """,
    "site.yaml": """
        log: {level: LOUD}
        connections:
          mqtt:
            main: {host: broker.lan, port: 0}
        flows:
          - file: flows/a.yaml
          - file: flows/b.yaml
          - use: nope
    """,
}


def test_validate_reports_the_errors_of_site_flows_and_graphs_in_one_pass(
        write, capsys: pytest.CaptureFixture[str]) -> None:
    paths = {name: write(name, text) for name, text in SIX_ERRORS.items()}
    assert main(["validate", str(paths["site.yaml"])]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == "6 error(s)"
    site, a, b = paths["site.yaml"], paths["flows/a.yaml"], paths["flows/b.yaml"]
    assert [line.split(": ", 1)[0] for line in lines[:-1]] == [
        f"{a}:3:5", f"{b}:3:50", f"{b}:4:13", f"{site}:1:7", f"{site}:4:5", f"{site}:8:5"]
    assert "unknown value 'LOUD'" in lines[3] and "'port' must be at least 1" in lines[4]
    assert "no shipped flow 'nope'" in lines[5] and "unknown node type 'formul'" in lines[2]


def test_validate_a_directory_checks_the_site_and_its_flows_once(
        write, capsys: pytest.CaptureFixture[str]) -> None:
    write("conf/sensor.yaml", """
        id: sensor
        nodes:
          - {id: svc, type: dbus.service, preset: temperature, name: esess_t, device_instance: 20}
    """)
    site = write("conf/site.yaml", "flows:\n  - file: sensor.yaml\n")
    write("conf/secrets.yaml", "pw: hunter2\n")
    write("conf/bad.yaml", "id: bad\nnodes:\n  - {id: n, type: nope}\n")
    assert main(["validate", str(site.parent)]) == 1
    captured = capsys.readouterr()
    # sensor.yaml is checked as the site's flow, not a second time on its own (which
    # would claim its D-Bus name twice); secrets.yaml is no flow
    assert captured.err.splitlines() == [
        f"{site.parent / 'bad.yaml'}:3:13: flow 'bad', node 'n' (nope): unknown node type "
        "'nope'; see `esess-flowctl list-nodes` for the known types", "1 error(s)"]
    (site.parent / "bad.yaml").unlink()
    assert main(["validate", str(site.parent)]) == 0
    assert capsys.readouterr().out == \
        f"ok: flow 'sensor' (1 nodes) in {site.parent / 'sensor.yaml'}\n"


def test_validate_without_a_file_checks_the_gx_site_file(
        write, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import flowengine.cli as cli

    site = write("data/es-ESS-flows/site.yaml", "flows: []\nlog: {level: LOUD}\n")
    monkeypatch.setattr(cli, "GX_SITE", str(site))
    monkeypatch.setattr(cli, "on_gx", lambda: False)
    assert main(["validate"]) == 2
    assert "give a site or flow file" in capsys.readouterr().err
    monkeypatch.setattr(cli, "on_gx", lambda: True)
    assert main(["validate"]) == 1
    assert f"{site}:2:7: option 'log.level' has the unknown value 'LOUD'" in \
        capsys.readouterr().err


def test_a_flow_file_alone_publishes_to_main_on_the_local_broker(
        write, capsys: pytest.CaptureFixture[str]) -> None:
    """What validate passes, run can open: `main` alone is localhost:1883 (`local`)."""
    from flowengine.connections import Connections
    from flowengine.registry import Registry

    kinds = Registry.default(plugins=False).connection_kinds
    assert Connections(kinds, standalone=True).configured("mqtt") == ["local", "main"]
    assert Connections(kinds, {}).configured("mqtt") == ["local"]
    demo = ROOT / "examples" / "demo.yaml"
    assert main(["validate", str(demo)]) == 0
    assert "localhost:1883" in demo.read_text() and "broker: ${broker}" in demo.read_text()
    odd = write("odd.yaml", """
        id: odd
        nodes:
          - {id: pub, type: mqtt.out, broker: elsewhere, topic: a}
    """)
    assert main(["validate", str(odd)]) == 1
    assert f"{odd}:3:31: flow 'odd', node 'pub' (mqtt.out): broker 'elsewhere': a flow file " \
        "run alone has no mqtt connection 'elsewhere'; run it from a site file with " \
        "connections: mqtt: elsewhere:, or use local or main" in capsys.readouterr().err


def test_run_without_a_dbus_says_how_to_get_one_and_exits_at_once(write, tmp_path) -> None:
    flow = write("soc.yaml", """
        id: soc
        nodes:
          - {id: system, type: dbus.source, service: com.victronenergy.system,
             paths: {soc: /Dc/Battery/Soc}, to: [show]}
          - {id: show, type: log}
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path / 'no-bus'}")
    started = time.monotonic()
    result = flowctl("run", "--no-guardian", str(flow), env=env)
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "running 0 of" not in out
    (line,) = [x for x in out.splitlines() if " ERROR " in x and "did not start" in x]
    assert line.endswith(
        f"flow 'soc': node 'system' (dbus.source) did not start: cannot connect to D-Bus at "
        f"unix:path={tmp_path / 'no-bus'}: [Errno 2] No such file or directory; is the bus at "
        f"DBUS_SYSTEM_BUS_ADDRESS=unix:path={tmp_path / 'no-bus'} still running? "
        "(`esess-flowctl sim` prints the address of its own)")
    assert out.splitlines()[-3].endswith("ERROR flowengine.cli: no flow could start; exiting")


def test_no_system_bus_suggests_the_simulator() -> None:
    from nodes.dbus.explain import no_bus_hint

    assert "run `esess-flowctl sim` and export the DBUS_SYSTEM_BUS_ADDRESS it prints" in \
        no_bus_hint(None)


def test_var_values_are_read_as_flow_files_are() -> None:
    from flowengine.preflight import parse_vars

    assert parse_vars(["a=yes", "b=on", "c=1:30", "d=012", "e=21.5", "f=[1, 2]", "g="]) == {
        "a": "yes", "b": "on", "c": "1:30", "d": 12, "e": 21.5, "f": [1, 2], "g": ""}
    with pytest.raises(SystemExit, match="--var h: "):
        parse_vars(["h=[1,"])
