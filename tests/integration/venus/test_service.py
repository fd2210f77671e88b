"""The installed service under Debian's daemontools, as Venus OS runs it.

One fake GX for the module (installing and starting take seconds), walked through in
order: the original es-ESS runs first and is replaced, then the service starts, restarts,
stops into its safe state, survives a firmware update and is uninstalled. The one safe
state watched: a heater allowance on MQTT (retained) that must read "0" when stopped.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client

from .venuskit import BASE_PYTHON, FakeGx, wait_for

TOPIC = "heater/allowance"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gx(host_bundle: Path, broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[FakeGx]:
    """The archive unpacked, a site with one heater flow, the original es-ESS running."""
    gx = FakeGx(tmp_path_factory.mktemp("gx"))
    gx.unpack(host_bundle)
    (gx.home / "heater.yaml").write_text(textwrap.dedent("""\
        id: heater
        nodes:
          - {id: every, type: timer, interval_ms: 300, at_start: true, value: 1500,
             to: [allowance]}
          - {id: allowance, type: mqtt.out, broker: main, topic: heater/allowance,
             qos: 1, retain: true, safe_payload: "0"}
        """))
    (gx.home / "site.yaml").write_text(textwrap.dedent(f"""\
        state_dir: {gx.home}/state
        connections:
          mqtt:
            main: {{host: {broker.host}, port: {broker.port}}}
        flows:
          - file: heater.yaml
        """))
    install_old_es_ess(gx)
    try:
        gx.start_svscan()
        yield gx
    finally:
        gx.stop_everything()


def install_old_es_ess(gx: FakeGx) -> None:
    """As realdognose/es-ESS's install.sh leaves it: /data/es-ESS, its link in /service,
    its line in rc.local; its run script starts python without exec."""
    (gx.old_home / "service").mkdir(parents=True)
    (gx.old_home / "config.ini").write_text("[Common]\nVRMPortalID = c0619ab4a585\n")
    (gx.old_home / "install.sh").write_text("#!/bin/bash\n")
    (gx.old_home / "es-ESS.py").write_text(textwrap.dedent("""\
        import pathlib, signal, sys, time
        def stop(*_):
            pathlib.Path(__file__).with_name("terminated").write_text("SIGTERM")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        while True:
            time.sleep(0.1)
        """))
    run = gx.old_home / "service" / "run"
    run.write_text(f"#!/bin/sh\nexec 2>&1\n{BASE_PYTHON} {gx.old_home}/es-ESS.py\n")
    run.chmod(0o755)
    (gx.service_dir / "es-ESS").symlink_to(gx.old_home / "service")
    gx.rc_local.write_text(f"#!/bin/bash\n{gx.old_home}/install.sh\n")
    gx.rc_local.chmod(0o755)


def old_es_ess(gx: FakeGx) -> list[int]:
    return [pid for pid, cmd in gx.processes().items() if cmd.endswith("/es-ESS.py")]


def retained(broker: Mosquitto) -> str | None:
    """What a client subscribing now gets on the heater's topic."""
    async def read() -> str | None:
        async with client(broker, name="probe") as probe:
            probe.listen(TOPIC)
            for _ in range(40):
                if probe.last(TOPIC) is not None:
                    break
                await asyncio.sleep(0.05)
            return probe.last(TOPIC)
    return asyncio.run(read())


def runtime_and_guardian(gx: FakeGx) -> tuple[list[int], list[int]]:
    procs = gx.processes()
    guardian = [p for p, c in procs.items() if "-m flowengine.guardian" in c]
    return ([p for p, c in procs.items()
             if "esess-flowctl run --no-guardian" in c and p not in guardian], guardian)


def wait_running(gx: FakeGx, broker: Mosquitto) -> None:
    wait_for(lambda: gx.service_pid(gx.link) and all(runtime_and_guardian(gx)),
             timeout=12, what="the service up with its guardian and runtime")
    wait_for(lambda: retained(broker) == "1500", timeout=10, what="the heater allowance 1500")


def test_install_does_not_start_beside_a_running_es_ess(gx: FakeGx) -> None:
    wait_for(lambda: old_es_ess(gx), timeout=10, what="the original es-ESS running")
    result = gx.install()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the original es-ESS is installed in" in result.stdout
    assert "install.sh --replace-es-ess" in result.stdout
    assert not gx.link.exists()
    assert old_es_ess(gx)


def test_replace_es_ess_stops_it_with_sigterm_and_disables_it(gx: FakeGx) -> None:
    result = gx.install("--replace-es-ess")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (gx.old_home / "terminated").read_text() == "SIGTERM"
    assert not old_es_ess(gx)
    assert not (gx.service_dir / "es-ESS").exists()
    wait_for(lambda: not any(c.endswith("supervise es-ESS")
                             for c in gx.processes().values()),
             timeout=5, what="its supervise gone (svc -dx)")
    assert gx.rc_local.read_text() == f"#!/bin/bash\n{gx.home}/install/install.sh\n"
    assert f"esess-flowctl import-ini {gx.old_home}/config.ini" in result.stdout
    assert (gx.old_home / "config.ini").exists()


def test_service_runs_the_guardian_and_the_runtime(gx: FakeGx, broker: Mosquitto) -> None:
    wait_running(gx, broker)
    runtime, guardian = runtime_and_guardian(gx)
    assert len(runtime) == len(guardian) == 1
    assert gx.service_pid(gx.link) == guardian[0]  # exec all the way: signals reach it
    assert gx.service_pid(gx.link / "log")
    wait_for(lambda: "running 1 of 1 flow(s)" in log_text(gx), timeout=5, what="log line")


def test_the_log_has_one_timestamp_per_line(gx: FakeGx) -> None:
    """multilog's TAI64N stamp, then the level: no second time from Python."""
    lines = [line for line in log_text(gx).splitlines() if line]
    assert lines
    for line in lines:
        stamp, _, rest = line.partition(" ")
        assert stamp.startswith("@") and len(stamp) == 25, line
        assert rest.split()[0] in {"TRACE", "DEBUG", "INFO", "WARNING", "ERROR"}, line
    assert not list(gx.home.rglob("*.log"))  # no second copy in a file


def test_restart_sh_starts_a_new_runtime(gx: FakeGx, broker: Mosquitto) -> None:
    before = runtime_and_guardian(gx)
    result = gx.sh("bash", gx.home / "install" / "restart.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: all(runtime_and_guardian(gx)) and runtime_and_guardian(gx) != before
             and set(runtime_and_guardian(gx)[0]).isdisjoint(before[0]),
             timeout=15, what="a new guardian and runtime")
    wait_running(gx, broker)


def test_stopping_the_service_applies_the_safe_state(gx: FakeGx, broker: Mosquitto) -> None:
    assert gx.sh("svc", "-d", gx.link).returncode == 0
    wait_for(lambda: retained(broker) == "0", timeout=10, what="the safe payload 0")
    wait_for(lambda: not any(runtime_and_guardian(gx)), timeout=5, what="both ended")
    assert gx.sh("svc", "-u", gx.link).returncode == 0
    wait_running(gx, broker)


def test_a_firmware_update_is_survived_through_rc_local(gx: FakeGx, broker: Mosquitto) -> None:
    """An update (or a reboot) rebuilds /service without our link; /data stays."""
    for service in (gx.link, gx.link / "log"):
        gx.sh("svc", "-dx", service)
    wait_for(lambda: not any("supervise" in c for c in gx.processes().values()),
             timeout=10, what="the supervise processes gone")
    gx.link.unlink()
    boot = gx.sh("bash", gx.rc_local)
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert "installing" not in boot.stdout  # the venv on /data is still good
    assert gx.rc_local.read_text().count("install.sh") == 1
    assert gx.link.is_symlink()
    wait_running(gx, broker)


def test_uninstall_stops_everything_and_keeps_the_site(gx: FakeGx, broker: Mosquitto) -> None:
    result = gx.sh("bash", gx.home / "install" / "uninstall.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(gx.log_dir) in result.stdout
    svscan = gx.svscan.pid if gx.svscan else None
    wait_for(lambda: not [p for p in gx.processes() if p != svscan], timeout=8,
             what=f"nothing running under {gx.root} but svscan: {gx.processes()}")
    assert retained(broker) == "0"
    assert not gx.link.exists() and not gx.link.is_symlink()
    assert "install.sh" not in gx.rc_local.read_text()
    assert (gx.home / "site.yaml").exists() and (gx.home / "state").is_dir()


def log_text(gx: FakeGx) -> str:
    current = gx.log_dir / "current"
    return current.read_text() if current.exists() else ""
