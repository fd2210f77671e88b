"""A broker that refuses the login: one line that says so and what to check, no more."""

from __future__ import annotations

from pathlib import Path

from conftest import run
from testkit.mosquitto import Mosquitto
from testkit.process import RuntimeProcess


def test_a_refused_login_is_one_line_with_the_fix(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.config.write_text(broker.config.read_text().replace(
        "allow_anonymous true", "allow_anonymous false"))
    (tmp_path / "pub.yaml").write_text("""
id: pub
nodes:
  - {id: tick, type: timer, interval_ms: 200, topic: now, to: [out]}
  - {id: out, type: mqtt.out, broker: main, topic: "x/{topic}"}
""")
    site = tmp_path / "site.yaml"
    site.write_text(f"""
state_dir: {tmp_path / 'state'}
connections:
  mqtt:
    main: {{host: {broker.host}, port: {broker.port}, username: esess, password: wrong,
            reconnect_min_ms: 10, reconnect_max_ms: 100}}
flows:
  - file: pub.yaml
""")
    runtime = RuntimeProcess(site, tmp_path)

    async def scenario() -> None:
        await runtime.start()
        try:
            # several refused attempts (every 10-100 ms at first)
            await runtime.until(lambda: broker.log.exists() and broker.log.read_text().count(
                "not authorised") >= 3, 15, "three refused logins")
        finally:
            assert await runtime.stop() == 0

    broker.start()
    try:
        run(scenario())
    finally:
        broker.stop()
    lines = runtime.output().splitlines()
    refused = [line for line in lines if ("refused" in line or "CONNACK" in line)
               and "flowengine.admin" not in line]  # its line names the (test's) state dir
    assert len(refused) == 1, runtime.output()
    assert refused[0].endswith(f" ERROR nodes.mqtt.broker: mqtt.main: cannot connect to "
                               f"{broker.host}:{broker.port}: refused by the broker (code 5 "
                               "(Connection Refused: not authorised)); check username and "
                               "password")
    assert not [line for line in lines if " gmqtt" in line]
