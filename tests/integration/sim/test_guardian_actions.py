"""The guardian's safe actions against real peers, and what it keeps on disk.

HTTP GET switches a simulated Shelly relay off (with basic auth); a refused or
unreachable target is an ActionError with the reason; the pending file never holds a
password in clear, survives a reload, and a damaged one is set aside. The guardian
itself imports nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, free_port, run
from simkit import noon_model

from flowengine.guardian.actions import ActionError, apply_action, check_action, describe
from flowengine.guardian.dbuswire import split_address
from flowengine.guardian.store import FILE_NAME, KEY_NAME, PendingStore
from sim.devices import ShellyRelayGen1

PASSWORD = "relay-Secret-42"


def test_http_get_switches_a_relay_off_with_basic_auth() -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(noon_model(), password=PASSWORD) as relay:
            relay.load.on = True
            action = check_action({"type": "http.get", "url": f"{relay.url}/relay/0?turn=off",
                                   "username": "admin", "password": PASSWORD})
            await asyncio.to_thread(apply_action, action)  # the guardian blocks; we may not
            assert relay.load.on is False
            wrong = dict(action, password="wrong")
            with pytest.raises(ActionError, match="401"):
                await asyncio.to_thread(apply_action, wrong)
    run(scenario())


def test_an_unreachable_target_fails_quickly_with_the_reason() -> None:
    port = free_port()
    with pytest.raises(ActionError, match="refused"):
        apply_action({"type": "http.get", "url": f"http://127.0.0.1:{port}/", "timeout_s": 1})
    with pytest.raises(ActionError, match="refused"):
        apply_action({"type": "mqtt.publish", "host": "127.0.0.1", "port": port,
                      "topic": "x", "payload": "0", "timeout_s": 1})


@pytest.mark.parametrize(("action", "problem"), [
    ({"type": "relay.off"}, "unknown safe action type"),
    ({"type": "dbus.set_value", "service": "a", "path": "/b"}, "'signature' must be"),
    ({"type": "dbus.set_value", "service": "a", "path": "/b", "signature": "a{sv}"},
     "signature 'a{sv}' is not one of"),
    ({"type": "mqtt.publish", "host": "h", "port": 1, "topic": "t", "payload": "0",
      "qos": 3}, "qos must be"),
    ({"type": "http.get", "url": "file:///etc/passwd"}, "must start with http"),
    ({"type": "http.get", "url": "http://x/", "timeout_s": 60}, "timeout_s must be"),
])
def test_a_malformed_action_is_refused_when_registered(action: dict[str, object],
                                                       problem: str) -> None:
    with pytest.raises(ActionError, match=problem):
        check_action(action)


def test_describe_never_shows_a_password() -> None:
    mqtt = {"type": "mqtt.publish", "host": "b", "port": 1883, "username": "u",
            "password": PASSWORD, "topic": "heater/set", "payload": "0", "qos": 1}
    http = {"type": "http.get", "url": f"http://admin:{PASSWORD}@10.0.0.5/relay/0?turn=off"}
    assert describe(mqtt) == "MQTT b:1883 heater/set <- '0' (qos 1)"
    assert describe(http) == "HTTP GET http://10.0.0.5/relay/0?turn=off"


def test_pending_actions_survive_a_reload_with_passwords_sealed(tmp_path: Path) -> None:
    action = {"type": "mqtt.publish", "host": "b", "port": 1883, "username": "u",
              "password": PASSWORD, "topic": "heater/set", "payload": "0"}
    PendingStore(tmp_path).save({"heater/out": action})
    text = (tmp_path / FILE_NAME).read_text()
    assert PASSWORD not in text and "sealed:v1:" in text
    assert stat.S_IMODE(os.stat(tmp_path / KEY_NAME).st_mode) == 0o600
    assert PendingStore(tmp_path).load() == {"heater/out": action}
    PendingStore(tmp_path).save({})
    assert not (tmp_path / FILE_NAME).exists()


def test_a_sealed_password_needs_its_key(tmp_path: Path) -> None:
    action = {"type": "mqtt.publish", "host": "b", "port": 1883, "username": "u",
              "password": PASSWORD, "topic": "t", "payload": "0"}
    PendingStore(tmp_path).save({"f/n": action})
    (tmp_path / KEY_NAME).write_bytes(os.urandom(32))  # another key
    assert PendingStore(tmp_path).load() == {}  # unusable, logged, never sent without it


def test_a_damaged_pending_file_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text('{"version": 1, "actions": {"f/n": ')
    assert PendingStore(tmp_path).load() == {}
    assert (tmp_path / (FILE_NAME + ".bad")).exists()


def test_d_bus_addresses_as_venus_and_dbus_daemon_write_them() -> None:
    assert split_address("unix:path=/tmp/x/bus,guid=ab12") == "/tmp/x/bus"
    assert split_address("tcp:host=h,port=1;unix:abstract=/tmp/dbus-%41b") == b"\0/tmp/dbus-Ab"
    assert split_address(None) == "/var/run/dbus/system_bus_socket"


def test_the_guardian_imports_only_the_standard_library() -> None:
    probe = textwrap.dedent("""\
        import sys
        import flowengine.guardian.__main__, flowengine.guardian.supervisor
        ours = {"flowengine", "__main__"}
        print(sorted({m.split(".")[0] for m in sys.modules}
                     - set(sys.stdlib_module_names) - set(sys.builtin_module_names) - ours))
        """)
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True, timeout=30)
    assert json.loads(out.stdout.replace("'", '"')) == []
