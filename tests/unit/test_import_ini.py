"""esess-flowctl import-ini: config.ini files written from the es-ESS README's tables and
examples become a site.yaml that validates, a secrets.yaml only its owner reads, and a
report that names every key not carried over with its line."""

from __future__ import annotations

import re
import stat
import textwrap
from pathlib import Path

import pytest

from flowengine.preflight import load_files
from flowengine.registry import Registry
from flowengine.yamlsrc import read_yaml
from migrate.cli import run

README_INI = """\
[DEFAULT]
devComment1 = Comments in this file have been ommited

[Common]
LogLevel=INFO
NumberOfThreads=5
ServiceMessageCount=50
ConfigVersion=7
VRMPortalID=VRM0815
BatteryCapacityInWh=28000
BatteryMaxChargeInW=9000
DefaultPowerSetPoint=-10

[Mqtt]
Host=mqtt.ad.equinox-solutions.de
User=user
Password=secure123!
Port=1833
SslEnabled=true
LocalSslEnabled=true

[Services]
SolarOverheadDistributor=true
TimeToGoCalculator=true
FroniusWattpilot=true
ChargeCurrentReducer=true
MqttExporter=true
MqttTemperature=true
NoBatToEV=true
Shelly3EMGrid=false
ShellyPMInverter=true
MqttPVInverter=true

[TimeToGoCalculator]
UpdateInterval=1000

[MqttTemperature:garden]
VRMInstanceID=1000
CustomName=MPPT2 Wiring
Topic=Devices/d1Garden/Sensors/TEMP/Value
TopicHumidity=Devices/d1Garden/Sensors/HUM/Value
TopicPressure=Devices/d1Garden/Sensors/PRESSURE/Value

[MqttTemperature:cellar]
VRMInstanceID=1001
CustomName=Cellar
Topic=Devices/cellar/Sensors/TEMP/Value

[MqttExporter:gridL1]
Service=com.victronenergy.system
DbusKey=/Ac/Grid/L1/Power
MqttTopic=Grid/Ac/L1/Power

[MqttExporter:soc]
Service=com.victronenergy.battery
DbusKey=/Soc
MqttTopic=es-ESS/Battery/*

[FroniusWattpilot]
VRMInstanceID=1001
VRMInstanceID_OverheadRequest=1002
MinPhaseSwitchSeconds=300
MinOnOffSeconds=600
OverheadPriority=35
ResetChargedEnergyCounter=OnDisconnect
Position=0
Host=wallbox.ad.equinox-solutions.de
Username=User
Password=Secret123!
HibernateMode=true

[NoBatToEV]
UseRelay=1

[Shelly3EMGrid]
VRMInstanceID=47
CustomName=Shelly 3EM (Grid)
PollFrequencyMs=1000
Username=User
Password=JG372FDr
Host=192.168.136.87
Metering=Net

[ShellyPMInverter:aUniqueKey]
VRMInstanceID=1008
CustomName=HMS-Garage
PollFrequencyMs=1000
Username=admin
Password=JG372FDr-pm
Host=192.168.136.88
Phase=2
Position=1
Relay=0

[SolarOverheadDistributor]
VRMInstanceID=1000
VRMInstanceID_ReservationMonitor=1001
MinBatteryCharge=5000 - 40 * SOC
UpdateInterval=45000

[HttpConsumer:waterplay]
CustomName=Waterplay
IgnoreBatReservation=true
VRMInstanceID=1008
Request=120.0
OnUrl=http://shellyOneWaterPlayFilter.ad.equinox-solutions.de/relay/0/?turn=on
OffUrl=http://shellyOneWaterPlayFilter.ad.equinox-solutions.de/relay/0/?turn=off
StatusUrl=http://shellyOneWaterPlayFilter.ad.equinox-solutions.de/status
OnKeywordRegex="ison":\\s*true
PowerUrl=http://shellyOneWaterPlayFilter.ad.equinox-solutions.de/status
PowerExtractRegex="apower":([^,]+),

[MqttConsumer:poolHeater]
CustomName=Pool Heater
Request=750
Priority=40
VRMInstanceID=1009
OnTopic=Devices/shellyPro2PMPoolControl/IO/Heater/Set
OnValue=true
OffTopic=Devices/shellyPro2PMPoolControl/IO/Heater/Set
OffValue=false
StatusTopic=Devices/shellyPro2PMPoolControl/IO/Heater/State
IsOnKeywordRegex=true
PowerTopic=Devices/shellyPro2PMPoolControl/IO/Heater/Power
PowerExtractRegex=(.*)

[ChargeCurrentReducer]
DesiredChargeAmps=max(100 - SOC, 30)

[MqttPVInverter:balcony]
CustomName=Balcony
VRMInstanceID=63
Position=1
L1VoltageTopic=
L2VoltageTopic=
L3VoltageTopic=
L1PowerTopic=solar/116181234567/0/power
L2PowerTopic=
L3PowerTopic=
TotalPowerTopic=
L1CurrentTopic=
L2CurrentTopic=
L3CurrentTopic=
L1EnergyForwardedTopic=solar/116181234567/0/yieldtotal
L2EnergyForwardedTopic=
L3EnergyForwardedTopic=
TotalEnergyForwardedTopic=

[MqttPvInverter]
EnableZeroFeedin=false
EnablePvShutdown=false
ZeroFeedinScaleStep=0.05
ZeroFeedinDistance=50
ZeroFeedinStartSoc=100
"""

PASSWORDS = ("secure123!", "Secret123!", "JG372FDr", "JG372FDr-pm")

MINIMAL = """\
[Common]
VRMPortalID=VRM0815
BatteryCapacityInWh=28000

[Mqtt]
Host=broker.lan
Port=1883

[Services]
TimeToGoCalculator=true

[TimeToGoCalculator]
UpdateInterval=1000
"""


def import_ini(tmp_path: Path, text: str, *args: str) -> tuple[int, Path]:
    ini = tmp_path / "config.ini"
    ini.write_text(textwrap.dedent(text))
    out = tmp_path / "out"
    return run([str(ini), "--output", str(out), *args]), out


def site_of(out: Path) -> dict:  # type: ignore[type-arg]
    data, _ = read_yaml(out / "site.yaml")
    assert isinstance(data, dict)
    return data


def entry(site: dict, use: str, instance: str | None = None) -> dict:  # type: ignore[type-arg]
    found = [f for f in site["flows"] if f["use"] == use and f.get("instance") == instance]
    assert len(found) == 1, f"{use}@{instance}: {site['flows']}"
    return found[0]  # type: ignore[no-any-return]


def validation_errors(site_file: Path) -> list[str]:
    loaded = load_files([str(site_file)], Registry.default(), variables={}, for_run=False)
    return [str(e) for e in loaded.errors]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(needle))


# -- the README's config --------------------------------------------------------------------

def test_readme_config_validates(tmp_path: Path) -> None:
    code, out = import_ini(tmp_path, README_INI)
    assert code == 2  # written; SslEnabled (and the dormant reducer) ask for a check
    assert validation_errors(out / "site.yaml") == []


def test_every_feature_becomes_its_flow(tmp_path: Path) -> None:
    _, out = import_ini(tmp_path, README_INI)
    site = site_of(out)
    assert entry(site, "time-to-go")["vars"] == {
        "interval_ms": 1000, "capacity_wh": 28000, "portal_id": "VRM0815"}
    assert entry(site, "solar-overhead-distributor")["vars"] == {
        "reservation": "5000 - 40 * SOC", "cycle_s": 45, "vrm_instance": 1000,
        "reservation_vrm_instance": 1001}
    wattpilot = entry(site, "fronius-wattpilot")["vars"]
    assert wattpilot["host"] == "wallbox.ad.equinox-solutions.de"
    assert (wattpilot["vrm_instance"], wattpilot["overhead_vrm_instance"]) == (1001, 1002)
    assert (wattpilot["min_on_off_s"], wattpilot["min_phase_switch_s"]) == (600, 300)
    assert (wattpilot["priority"], wattpilot["position"]) == (35, 0)
    assert wattpilot["reset_counters"] == "OnDisconnect" and wattpilot["hibernate"] is True
    assert entry(site, "no-bat-to-ev")["vars"] == {"relay": 1}
    garden = entry(site, "mqtt-temperature", "garden")["vars"]
    assert garden == {"topic": "Devices/d1Garden/Sensors/TEMP/Value",
                      "humidity_topic": "Devices/d1Garden/Sensors/HUM/Value",
                      "pressure_topic": "Devices/d1Garden/Sensors/PRESSURE/Value",
                      "vrm_instance": 1000, "custom_name": "MPPT2 Wiring",
                      "service_name": "esESS_MqttTemperature_garden"}
    assert entry(site, "mqtt-temperature", "cellar")["vars"]["service_name"] == \
        "esESS_MqttTemperature_cellar"
    assert entry(site, "mqtt-exporter", "gridL1")["vars"] == {
        "service": "com.victronenergy.system", "paths": ["/Ac/Grid/L1/Power"],
        "topic": "Grid/Ac/L1/Power"}
    pm = entry(site, "shellypm-inverter", "aUniqueKey")["vars"]
    assert (pm["host"], pm["phase"], pm["position"], pm["channel"]) == \
        ("192.168.136.88", 2, 1, 0)
    assert pm["service_name"] == "esESS_ShellyPMInverter_aUniqueKey"
    pv = entry(site, "mqtt-pvinverter", "balcony")["vars"]
    assert pv == {"l1_power_topic": "solar/116181234567/0/power",
                  "l1_energy_topic": "solar/116181234567/0/yieldtotal", "position": 1,
                  "vrm_instance": 63, "custom_name": "Balcony",
                  "service_name": "esESS_MqttPVInverter_balcony"}


def test_switched_consumers_keep_their_keys(tmp_path: Path) -> None:
    _, out = import_ini(tmp_path, README_INI)
    site = site_of(out)
    http = entry(site, "switched-consumer-http", "waterplay")["vars"]
    assert http["key"] == "waterplay" and http["request_w"] == 120
    assert http["ignore_bat_reservation"] is True and http["vrm_instance"] == 1008
    assert http["on_keyword_regex"] == '"ison":\\s*true'
    assert http["power_extract_regex"] == '"apower":([^,]+),'
    assert http["status_url"].endswith("/status")
    mqtt = entry(site, "switched-consumer-mqtt", "poolHeater")["vars"]
    assert (mqtt["key"], mqtt["request_w"], mqtt["priority"]) == ("poolHeater", 750, 40)
    assert (mqtt["on_value"], mqtt["off_value"], mqtt["on_keyword_regex"]) == \
        ("true", "false", "true")
    assert mqtt["power_extract_regex"] == "(.*)"


def test_common_and_mqtt_become_connections_and_log_level(tmp_path: Path) -> None:
    _, out = import_ini(tmp_path, README_INI)
    site = site_of(out)
    main = site["connections"]["mqtt"]["main"]
    assert main["host"] == "mqtt.ad.equinox-solutions.de" and main["port"] == 1833
    assert main["username"] == "user" and main["service_message_count"] == 50
    assert site["connections"]["setpoint"]["default"]["default_w"] == -10
    assert site["log"] == {"level": "INFO"}
    assert site["observe"] == ["mqtt.main"]
    assert site["state_dir"] == str((out / "state").resolve())


# -- what es-ESS did wrong --------------------------------------------------------------------

def test_ssl_is_imported_with_certificate_checks_and_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = README_INI
    _, out = import_ini(tmp_path, ini)
    main = site_of(out)["connections"]["mqtt"]["main"]
    assert main["tls"] is True and "insecure" not in main
    report = capsys.readouterr().out
    line = line_of(ini, "SslEnabled")
    assert re.search(rf"config.ini:{line}: check: \[Mqtt\] SslEnabled: es-ESS used TLS "
                     r"without checking the broker's certificate", report)
    assert "insecure: true" in report


def test_dormant_reducer_is_written_commented_out_and_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = import_ini(tmp_path, README_INI)
    assert all(f["use"] != "charge-current-reducer" for f in site_of(out)["flows"])
    assert "  # - use: charge-current-reducer" in (out / "site.yaml").read_text()
    assert "ChargeCurrentReducer is on, but es-ESS never ran it" in capsys.readouterr().out


def test_wattpilot_traps_are_reported(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ini = README_INI.replace("HibernateMode=true",
                             "HibernateMode=true\nLowPriceCharging=true\nLowPriceAmps=48")
    _, out = import_ini(tmp_path, ini)
    report = capsys.readouterr().out
    assert f"config.ini:{line_of(ini, 'Username=User')}: note: [FroniusWattpilot] " \
           "Username: not imported: es-ESS never used it" in report
    assert f"config.ini:{line_of(ini, 'LowPriceCharging')}: check: [FroniusWattpilot] " \
           "LowPriceCharging: not imported" in report
    assert "low_price" not in entry(site_of(out), "fronius-wattpilot")["vars"]


def test_yes_was_false_in_es_ess(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL.replace("TimeToGoCalculator=true", "TimeToGoCalculator=yes")
    code, out = import_ini(tmp_path, ini)
    assert code == 2
    assert site_of(out)["flows"] == []
    assert f"config.ini:{line_of(ini, 'TimeToGoCalculator=yes')}: check: [Services] " \
           "TimeToGoCalculator: es-ESS read `yes` as false" in capsys.readouterr().out


def test_lone_percent_is_reported_without_its_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL.replace("Port=1883", "Port=1883\nUser=esess\nPassword=50%off")
    _, out = import_ini(tmp_path, ini)
    printed = capsys.readouterr().out
    assert f"config.ini:{line_of(ini, 'Password=')}: check: [Mqtt] Password: es-ESS could " \
           "not read this value" in printed
    assert "50%off" not in printed and "50%off" not in (out / "site.yaml").read_text()
    assert "50%off" in (out / "secrets.yaml").read_text()


def test_double_percent_is_one_percent(tmp_path: Path) -> None:
    ini = MINIMAL.replace("Host=broker.lan", "Host=broker.lan\nUser=u\nPassword=a%%b")
    _, out = import_ini(tmp_path, ini)
    assert '"a%b"' in (out / "secrets.yaml").read_text()


# -- spelling variants ------------------------------------------------------------------------

def test_spelling_variants_are_accepted(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL.replace("TimeToGoCalculator=true", textwrap.dedent("""\
        TimeToGoCalculator=true
        MqttTemperatures=true
        MqttPvInverter=true""")) + textwrap.dedent("""
        [MqttTemperatures:attic]
        VRMInstanceID=1003
        Topic=attic/temp

        [MqttPvInverter:roof]
        VRMInstanceID=64
        TotalPowerTopic=roof/power

        [MqttPVInverter:garage]
        VRMInstanceID=65
        TotalPowerTopic=garage/power
        """)
    _, out = import_ini(tmp_path, ini)
    site = site_of(out)
    assert entry(site, "mqtt-temperature", "attic")["vars"]["topic"] == "attic/temp"
    assert entry(site, "mqtt-pvinverter", "roof")["vars"]["total_power_topic"] == "roof/power"
    assert entry(site, "mqtt-pvinverter", "garage")["vars"]["vrm_instance"] == 65
    report = capsys.readouterr().out
    assert f"config.ini:{line_of(ini, 'MqttTemperatures=')}: note: [Services] " \
           "MqttTemperatures: es-ESS reads the flag `MqttTemperature`" in report
    assert f"config.ini:{line_of(ini, '[MqttPvInverter:roof]')}: note: " \
           "[MqttPvInverter:roof]: es-ESS looks for [MqttPVInverter:<key>]" in report
    assert validation_errors(out / "site.yaml") == []


def test_is_on_keyword_regex_and_on_keyword_regex_both_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = import_ini(tmp_path, README_INI)
    site = site_of(out)
    assert entry(site, "switched-consumer-http", "waterplay")["vars"]["on_keyword_regex"]
    assert entry(site, "switched-consumer-mqtt", "poolHeater")["vars"]["on_keyword_regex"]
    line = line_of(README_INI, "IsOnKeywordRegex")
    assert f"config.ini:{line}: note: [MqttConsumer:poolHeater] IsOnKeywordRegex: es-ESS's " \
           "code needs `OnKeywordRegex`" in capsys.readouterr().out


def test_key_in_other_letter_case_is_imported_and_noted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL.replace("Host=broker.lan", "host=broker.lan")
    _, out = import_ini(tmp_path, ini)
    assert site_of(out)["connections"]["mqtt"]["main"]["host"] == "broker.lan"
    assert "[Mqtt] host: es-ESS reads `Host` exactly" in capsys.readouterr().out


# -- disabled services, unknown keys ------------------------------------------------------------

def test_disabled_service_is_a_commented_entry_that_validates_when_enabled(
        tmp_path: Path) -> None:
    _, out = import_ini(tmp_path, README_INI)
    text = (out / "site.yaml").read_text()
    assert all(f["use"] != "shelly3em-grid" for f in site_of(out)["flows"])
    assert "# off: [Services] Shelly3EMGrid is off in config.ini" in text
    lines = text.splitlines()
    start = lines.index("  # - use: shelly3em-grid")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # ") or (block and line.startswith("  # off:")):
            break
        block.append("  " + line[4:])
    enabled = "\n".join(lines[:start] + block) + "\n"
    (out / "site.yaml").write_text(enabled)
    assert validation_errors(out / "site.yaml") == []
    vars_ = entry(site_of(out), "shelly3em-grid")["vars"]
    assert vars_["metering"] == "net" and vars_["username"] == "User"
    assert vars_["host"] == "192.168.136.87"


def test_all_services_off_writes_an_empty_flow_list(tmp_path: Path) -> None:
    code, out = import_ini(tmp_path, MINIMAL.replace("TimeToGoCalculator=true",
                                                     "TimeToGoCalculator=false"))
    assert code == 0
    assert site_of(out)["flows"] == []
    assert "  # - use: time-to-go" in (out / "site.yaml").read_text()
    assert validation_errors(out / "site.yaml") == []


def test_unknown_keys_and_sections_are_reported_with_their_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = README_INI.replace("UpdateInterval=1000", "UpdateInterval=1000\nUpdateIntervall=2000"
                             ) + "\n[Bogus]\nFoo = bar\n"
    code, out = import_ini(tmp_path, ini)
    assert code == 2
    printed = capsys.readouterr().out
    assert f"config.ini:{line_of(ini, 'UpdateIntervall')}: check: [TimeToGoCalculator] " \
           "UpdateIntervall: not imported: es-ESS documents no such key" in printed
    assert f"config.ini:{line_of(ini, 'Foo = bar')}: check: [Bogus] Foo: not imported" in \
        printed
    assert f"config.ini:{line_of(ini, 'NumberOfThreads')}: note: [Common] NumberOfThreads: " \
           "not imported" in printed
    assert f"config.ini:{line_of(ini, 'EnableZeroFeedin')}: note: [MqttPvInverter] " \
           "EnableZeroFeedin: not imported" in printed
    header = (out / "site.yaml").read_text().split("\nlog:")[0]
    assert f"#   config.ini:{line_of(ini, 'UpdateIntervall')}: check:" in header


def test_only_notes_exit_0(tmp_path: Path) -> None:
    code, out = import_ini(tmp_path, MINIMAL)
    assert code == 0
    assert validation_errors(out / "site.yaml") == []


# -- secrets -------------------------------------------------------------------------------------

def test_secrets_file_is_private_and_holds_every_password(tmp_path: Path) -> None:
    _, out = import_ini(tmp_path, README_INI)
    secrets = out / "secrets.yaml"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    data, _ = read_yaml(secrets)
    assert set(data.values()) == set(PASSWORDS)
    site = site_of(out)
    assert site["connections"]["mqtt"]["main"]["password"].name == "mqtt_password"


def test_passwords_never_reach_stdout_or_site_yaml(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = import_ini(tmp_path, README_INI)
    captured = capsys.readouterr()
    site_text = (out / "site.yaml").read_text()
    for password in PASSWORDS:
        assert password not in captured.out and password not in captured.err
        assert password not in site_text


def test_login_in_a_consumer_url_goes_to_the_secrets_file(tmp_path: Path) -> None:
    ini = README_INI.replace("http://shellyOneWaterPlayFilter",
                             "http://admin:pw%40home@shellyOneWaterPlayFilter")
    _, out = import_ini(tmp_path, ini.replace("%40", "%%40"))
    http = entry(site_of(out), "switched-consumer-http", "waterplay")["vars"]
    assert http["on_url"].startswith("http://shellyOneWaterPlayFilter")
    assert (http["auth"], http["username"]) == ("basic", "admin")
    assert "pw@home" in (out / "secrets.yaml").read_text()
    assert "pw@home" not in (out / "site.yaml").read_text()
    assert validation_errors(out / "site.yaml") == []


# -- files -------------------------------------------------------------------------------------

def test_refuses_to_overwrite_without_force(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "site.yaml").write_text("flows: []\n")
    code, _ = import_ini(tmp_path, MINIMAL)
    assert code == 1
    assert (out / "site.yaml").read_text() == "flows: []\n"
    assert "exists; nothing written (--force overwrites)" in capsys.readouterr().err
    code, _ = import_ini(tmp_path, MINIMAL, "--force")
    assert code == 0
    assert entry(site_of(out), "time-to-go")["vars"]["portal_id"] == "VRM0815"


def test_refuses_to_overwrite_an_existing_secrets_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "secrets.yaml").write_text("mine: x\n")
    code, _ = import_ini(tmp_path, README_INI)
    assert code == 1
    assert not (out / "site.yaml").exists()
    assert (out / "secrets.yaml").read_text() == "mine: x\n"


def test_unparsable_ini_exits_1_with_its_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL.replace("Port=1883", "Port=1883\nPort=1884")
    code, out = import_ini(tmp_path, ini)
    assert code == 1
    assert f"config.ini:{line_of(ini, 'Port=1884')}: key Port appears twice in [Mqtt]" in \
        capsys.readouterr().err
    assert not (out / "site.yaml").exists()


def test_a_line_that_is_no_key_exits_1_without_echoing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = import_ini(tmp_path, MINIMAL.replace("Port=1883", "Port=1883\nhunter2"))
    assert code == 1
    err = capsys.readouterr().err
    assert "config.ini:8: not a `key = value` line" in err and "hunter2" not in err


def test_missing_ini_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(tmp_path / "nope.ini"), "--output", str(tmp_path)]) == 1
    assert "nope.ini: cannot read" in capsys.readouterr().err


def test_section_keys_with_spaces_become_valid_names(tmp_path: Path) -> None:
    ini = MINIMAL.replace("TimeToGoCalculator=true",
                          "TimeToGoCalculator=true\nMqttTemperature=true") + textwrap.dedent("""
        [MqttTemperature:Garden Shed]
        VRMInstanceID=1004
        Topic=shed/temp
        """)
    _, out = import_ini(tmp_path, ini)
    shed = entry(site_of(out), "mqtt-temperature", "Garden-Shed")["vars"]
    assert shed["service_name"] == "esESS_MqttTemperature_Garden_Shed"
    assert validation_errors(out / "site.yaml") == []


def test_a_feature_without_a_flow_is_reported_when_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL.replace("TimeToGoCalculator=true",
                          "TimeToGoCalculator=true\nFroniusSmartmeterJSON=true") + \
        "\n[FroniusSmartmeterJSON]\nHost=10.10.20.46\nMeterID=0\n"
    code, _ = import_ini(tmp_path, ini)
    assert code == 2
    printed = capsys.readouterr().out
    assert f"config.ini:{line_of(ini, 'FroniusSmartmeterJSON=')}: check: [Services] " \
           "FroniusSmartmeterJSON: not imported: no flow reads a Fronius smart meter" in printed
    assert f"config.ini:{line_of(ini, 'MeterID')}: check: " \
           "[FroniusSmartmeterJSON] MeterID: not imported" in printed


def test_a_section_without_its_flag_is_commented_out_and_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL + "\n[NoBatToEV]\nUseRelay=-1\n"
    code, out = import_ini(tmp_path, ini)
    assert code == 2
    assert "  # - use: no-bat-to-ev" in (out / "site.yaml").read_text()
    assert f"config.ini:{line_of(ini, '[NoBatToEV]')}: check: [NoBatToEV]: no [Services] " \
           "NoBatToEV flag" in capsys.readouterr().out


def test_two_exports_of_one_value_are_both_imported_and_noted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL.replace("TimeToGoCalculator=true",
                          "TimeToGoCalculator=true\nMqttExporter=true") + textwrap.dedent("""
        [MqttExporter:one]
        Service=com.victronenergy.system
        DbusKey=/Dc/Battery/Soc
        MqttTopic=soc/one

        [MqttExporter:two]
        Service=com.victronenergy.system
        DbusKey=/Dc/Battery/Soc
        MqttTopic=soc/two
        """)
    _, out = import_ini(tmp_path, ini)
    site = site_of(out)
    assert entry(site, "mqtt-exporter", "one")["vars"]["topic"] == "soc/one"
    assert entry(site, "mqtt-exporter", "two")["vars"]["topic"] == "soc/two"
    assert "[MqttExporter:one] exports the same value: es-ESS kept only the last" in \
        capsys.readouterr().out
    assert validation_errors(out / "site.yaml") == []


def test_the_example_in_the_docs_is_what_it_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "import-ini.md").read_text()
    ini = re.search(r"```ini\n(.*?)```", doc, re.S)
    printed = re.search(r"prints .*?\n\n```\n(.*?)```", doc, re.S)
    site = re.search(r"```yaml\n# site.yaml, as import-ini writes it.*?\n(.*?)```", doc, re.S)
    assert ini and printed and site
    (tmp_path / "config.ini").write_text(ini.group(1))
    monkeypatch.chdir(tmp_path)
    assert run(["config.ini", "--output", "."]) == 2
    assert capsys.readouterr().out == printed.group(1)
    body = (tmp_path / "site.yaml").read_text().split("\n\n", 1)[1]
    assert body.replace(str(tmp_path.resolve()), "/data/es-ESS-flows") == site.group(1)


def test_runs_as_python_m_migrate(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "config.ini").write_text(MINIMAL)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "migrate", "config.ini", "--output", "out"],
                          cwd=tmp_path, env={"PYTHONPATH": str(root)}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "out/site.yaml validates (1 flow(s))" in done.stdout


def test_runs_as_esess_flowctl_import_ini(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "config.ini").write_text(MINIMAL)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "esess-flowctl"), "import-ini",
                           "config.ini", "--output", "out"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "out/site.yaml validates (1 flow(s))" in done.stdout
    assert (tmp_path / "out" / "site.yaml").is_file()


def test_a_consumer_key_es_ess_could_not_use_is_made_usable_and_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = MINIMAL.replace("TimeToGoCalculator=true",
                          "TimeToGoCalculator=true\nSolarOverheadDistributor=true") + \
        textwrap.dedent("""
        [MqttConsumer:Pool Pump]
        Request=500
        OnTopic=pump/set
        OnValue=1
        OffTopic=pump/set
        OffValue=0
        StatusTopic=pump/state
        OnKeywordRegex=1
        """)
    code, out = import_ini(tmp_path, ini)
    assert code == 2
    pump = entry(site_of(out), "switched-consumer-mqtt", "Pool-Pump")["vars"]
    assert pump["key"] == "Pool_Pump"
    assert f"config.ini:{line_of(ini, '[MqttConsumer:Pool Pump]')}: check: " \
           "[MqttConsumer:Pool Pump]: the consumer key `Pool Pump`" in capsys.readouterr().out
    assert validation_errors(out / "site.yaml") == []
