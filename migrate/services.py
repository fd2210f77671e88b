"""One function per es-ESS feature: its config.ini sections -> entries of our flows.

Each reads the keys es-ESS read (docs/flows/<flow>.md lists the es-ESS key beside each
var), sets only the vars the ini gave (the flow's defaults apply to the rest), and
reports what has no counterpart or meant something else in es-ESS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from migrate.convert import Context, Reader, bus_element, instance_name, put, whole
from migrate.ini import IniSection
from migrate.yamlout import Annotated

__all__ = ["INSTANCE_FEATURES", "SINGLE_FEATURES", "Entry"]


@dataclass
class Entry:
    """One `flows:` item of the site file; a disabled one is written commented out."""

    use: str
    line: int
    instance: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    why_disabled: str | None = None

    def item(self) -> dict[str, Any]:
        out: dict[str, Any] = {"use": self.use}
        if self.instance is not None:
            out["instance"] = self.instance
        if self.vars:
            out["vars"] = self.vars
        return out


Convert = Callable[[Context, Reader, str], Entry]


# -- single-section features -------------------------------------------------------------

def time_to_go(ctx: Context, r: Reader, _key: str) -> Entry:
    entry = Entry("time-to-go", r.section.line)
    put(entry.vars, "interval_ms", r.integer("UpdateInterval"))
    return entry


def distributor(ctx: Context, r: Reader, _key: str) -> Entry:
    entry = Entry("solar-overhead-distributor", r.section.line)
    v = entry.vars
    put(v, "reservation", r.text("MinBatteryCharge"))
    interval = r.number("UpdateInterval")
    put(v, "cycle_s", whole(interval / 1000 if interval is not None else None))
    put(v, "vrm_instance", r.integer("VRMInstanceID"))
    put(v, "reservation_vrm_instance", r.integer("VRMInstanceID_ReservationMonitor"))
    r.drop("Strategy", "es-ESS removed it in config version 3")
    return entry


def wattpilot(ctx: Context, r: Reader, _key: str) -> Entry:
    entry = Entry("fronius-wattpilot", r.section.line)
    v = entry.vars
    put(v, "host", r.text("Host"))
    put(v, "password", r.password("Password", "wattpilot_password"))
    put(v, "vrm_instance", r.integer("VRMInstanceID"))
    put(v, "overhead_vrm_instance", r.integer("VRMInstanceID_OverheadRequest"))
    put(v, "position", r.integer("Position"))
    put(v, "priority", r.integer("OverheadPriority"))
    put(v, "min_on_off_s", whole(r.number("MinOnOffSeconds")))
    put(v, "min_phase_switch_s", whole(r.number("MinPhaseSwitchSeconds")))
    reset = r.take("ResetChargedEnergyCounter")
    if reset is not None and reset.value.strip():
        # es-ESS: `.lower() == "onconnect"`, anything else behaved as OnDisconnect
        on_connect = reset.value.strip().lower() == "onconnect"
        if reset.value.strip().lower() not in ("onconnect", "ondisconnect"):
            r.note(reset, f"`{reset.value.strip()[:40]}` is neither OnConnect nor "
                          "OnDisconnect; es-ESS behaved as OnDisconnect, and so does the "
                          "import", attention=True)
        v["reset_counters"] = "OnConnect" if on_connect else "OnDisconnect"
    put(v, "hibernate", r.boolean("HibernateMode"))
    r.drop("Username", "es-ESS never used it; the Wattpilot logs in with the password "
                       "only")
    for key, var in (("LowPriceCharging", "low_price"), ("LowPriceAmps", "low_price_a")):
        r.drop(key, f"es-ESS documented it but never read it (it did no low-price "
                    f"charging); the flow can: set `{var}` yourself if you want it",
               attention=True)
    if "min_on_off_s" not in v:
        r.note(None, "no MinOnOffSeconds: the flow's default is 600 s (es-ESS's sample "
                     "file had 300)")
    return entry


def no_bat_to_ev(ctx: Context, r: Reader, _key: str) -> Entry:
    entry = Entry("no-bat-to-ev", r.section.line)
    found = r.take("UseRelay")
    relay = r.integer("UseRelay") if found is not None else None
    if relay is not None and relay >= 0:
        if relay > 3:
            r.note(found, f"relay {relay}: a GX has relays 0..3; not imported",
                   attention=True)
        else:
            entry.vars["relay"] = relay
    return entry


def shelly3em(ctx: Context, r: Reader, _key: str) -> Entry:
    entry = Entry("shelly3em-grid", r.section.line)
    v = entry.vars
    put(v, "host", r.text("Host"))
    put(v, "username", r.text("Username"))
    put(v, "password", r.password("Password", "shelly3em_password"))
    metering = r.take("Metering")
    if metering is not None and metering.value.strip():
        text = metering.value.strip()
        if text == "Net":
            v["metering"] = "net"
        elif text == "Default":
            v["metering"] = "gross"
        else:
            v["metering"] = "net"
            r.note(metering, f"`{text[:40]}` is neither Default nor Net: es-ESS counted "
                             "net then but never saved the counters; imported as net",
                   attention=True)
    put(v, "poll_ms", r.integer("PollFrequencyMs"))
    put(v, "vrm_instance", r.integer("VRMInstanceID"))
    put(v, "custom_name", r.text("CustomName"))
    r.note(None, "es-ESS subtracted 300 W from phase 2 and the total on every poll (a "
                 "debugging leftover); the flow shows what the Shelly measures")
    return entry


def charge_current_reducer(ctx: Context, r: Reader, _key: str) -> Entry:
    entry = Entry("charge-current-reducer", r.section.line)
    desired = r.take("DesiredChargeAmps")
    if desired is not None and desired.value.strip():
        entry.vars["desired_current"] = desired.value.strip()
        try:
            float(desired.value)
        except ValueError:
            r.note(desired, "es-ESS read this as a number and could not start with a "
                            "formula (its README promised one); the flow takes a formula "
                            "in SOC")
    entry.vars["max_feed_in_w"] = Annotated(None, "required: the most feed-in it may "
                                                  "request, W (es-ESS had no bound)")
    r.drop("AdjustmentFactor", "the flow's controller needs no tuning factor")
    r.drop("DefaultPowerSetPoint", "the grid setpoint default is the arbiter's "
                                   "(`connections: setpoint: default: default_w`, from "
                                   "[Common] DefaultPowerSetPoint)")
    return entry


# -- features with one section per instance ------------------------------------------------

def temperature(ctx: Context, r: Reader, key: str) -> Entry:
    entry = Entry("mqtt-temperature", r.section.line, instance_name(key))
    v = entry.vars
    put(v, "topic", r.text("Topic"))
    put(v, "humidity_topic", r.text("TopicHumidity"))
    put(v, "pressure_topic", r.text("TopicPressure"))
    put(v, "vrm_instance", r.integer("VRMInstanceID"))
    put(v, "custom_name", r.text("CustomName"))
    v["service_name"] = f"esESS_MqttTemperature_{bus_element(key)}"
    return entry


_SINGLETONS = {"system", "settings", "hub4", "platform", "logger", "modem", "fronius",
               "adc", "vecan"}


def exporter(ctx: Context, r: Reader, key: str) -> Entry:
    entry = Entry("mqtt-exporter", r.section.line, instance_name(key))
    v = entry.vars
    service_value = r.take("Service")
    service = service_value.value.strip() if service_value else ""
    if service:
        parts = service.split(".")
        if len(parts) == 3 and parts[2] not in _SINGLETONS:
            service += ".*"
            r.note(service_value, f"a service class: es-ESS followed one of its instances "
                                  f"(the last found); imported as the pattern `{service}`")
        v["service"] = service
    path = r.text("DbusKey")
    if path:
        v["paths"] = [path]
        seen = ctx.exported.setdefault((service, path), r.section.name)
        if seen != r.section.name:
            r.note(None, f"[{seen}] exports the same value: es-ESS kept only the last of "
                         "the two sections; both are imported")
    topic_value = r.take("MqttTopic")
    topic = topic_value.value.strip() if topic_value else ""
    if topic and path:
        if topic.endswith("*"):
            base = topic.replace("*", "")
            joined = base.rstrip("/") + "/" + path.lstrip("/")
            if base + path != joined:
                r.note(topic_value, f"es-ESS published `{base + path}`; imported as "
                                    f"`{joined}` (no `//`): subscribers must follow")
            topic = joined
        v["topic"] = topic
    return entry


def shellypm(ctx: Context, r: Reader, key: str) -> Entry:
    entry = Entry("shellypm-inverter", r.section.line, instance_name(key))
    v = entry.vars
    put(v, "host", r.text("Host"))
    user = r.take("Username")
    if user is not None and user.value.strip() not in ("", "admin"):
        r.note(user, "not imported: a Shelly Gen2+ always logs in as `admin`",
               attention=True)
    put(v, "password", r.password("Password", f"shellypm_{bus_element(key).lower()}"
                                              "_password"))
    if r.section.find("Relay") is None:
        r.note(None, "no Relay key: es-ESS needed one and never started this inverter; "
                     "the flow reads channel 0", attention=True)
    put(v, "channel", r.integer("Relay"))
    put(v, "phase", r.integer("Phase"))
    put(v, "position", r.integer("Position"))
    put(v, "poll_ms", r.integer("PollFrequencyMs"))
    put(v, "vrm_instance", r.integer("VRMInstanceID"))
    put(v, "custom_name", r.text("CustomName"))
    v["service_name"] = f"esESS_ShellyPMInverter_{bus_element(key)}"
    return entry


_PV_TOPICS = [(f"L{n}{what}Topic", f"l{n}_{var}_topic")
              for what, var in (("Power", "power"), ("Voltage", "voltage"),
                                ("Current", "current"), ("EnergyForwarded", "energy"))
              for n in (1, 2, 3)]
_PV_TOPICS += [("TotalPowerTopic", "total_power_topic"),
               ("TotalEnergyForwardedTopic", "total_energy_topic")]


def pvinverter(ctx: Context, r: Reader, key: str) -> Entry:
    entry = Entry("mqtt-pvinverter", r.section.line, instance_name(key))
    v = entry.vars
    missing = [k for k, _ in _PV_TOPICS if r.section.find(k) is None]
    if missing and r.section.name.startswith("MqttPVInverter:"):
        r.note(None, f"es-ESS needed all fourteen topic keys (empty when unused) and "
                     f"never started this inverter without {', '.join(missing[:3])}"
                     f"{' ...' if len(missing) > 3 else ''}; the flow takes any subset")
    for ini_key, var in _PV_TOPICS:
        put(v, var, r.text(ini_key))
    put(v, "position", r.integer("Position"))
    put(v, "vrm_instance", r.integer("VRMInstanceID"))
    put(v, "custom_name", r.text("CustomName"))
    r.drop("DtuControlTopic", "the flow does no zero feed-in throttling through an "
                              "OpenDTU", attention=True)
    v["service_name"] = f"esESS_MqttPVInverter_{bus_element(key)}"
    return entry


def _consumer_common(r: Reader, entry: Entry, raw_key: str) -> None:
    v = entry.vars
    key = re.sub(r"[/+#\s]+", "_", raw_key.strip()).strip("_") or "unnamed"
    if key != raw_key:
        r.note(None, f"the consumer key `{raw_key}` holds characters a topic level (or, in "
                     "es-ESS, its D-Bus name) cannot, so es-ESS's distribution failed "
                     f"every cycle; imported as `{key}`", attention=True)
    v["key"] = key
    put(v, "custom_name", r.text("CustomName"))
    put(v, "request_w", whole(r.number("Request")))
    put(v, "minimum_w", whole(r.number("Minimum")))
    put(v, "priority", r.integer("Priority"))
    put(v, "priority_shift", whole(r.number("PriorityShift")))
    put(v, "ignore_bat_reservation", r.boolean("IgnoreBatReservation"))
    put(v, "vrm_instance", r.integer("VRMInstanceID"))
    r.drop("StepSize", "es-ESS ignored it for on/off consumers (it sent Request as "
                       "the step); so does the flow")
    r.drop("stepSize", "es-ESS ignored it for on/off consumers (it sent Request as "
                       "the step); so does the flow")
    regex = r.text("OnKeywordRegex", "IsOnKeywordRegex",
                   spelling_note="es-ESS's code needs `OnKeywordRegex` (its README says "
                                 "IsOnKeywordRegex): with this spelling es-ESS never "
                                 "switched this consumer; imported as on_keyword_regex")
    put(v, "on_keyword_regex", regex)


def http_consumer(ctx: Context, r: Reader, key: str) -> Entry:
    entry = Entry("switched-consumer-http", r.section.line, instance_name(key))
    _consumer_common(r, entry, key)
    v = entry.vars
    urls = {var: r.take(ini) for ini, var in (("OnUrl", "on_url"), ("OffUrl", "off_url"),
                                              ("StatusUrl", "status_url"),
                                              ("PowerUrl", "power_url"))}
    logins: list[tuple[str, str]] = []  # in the order of the keys: OnUrl's first
    for var, found in urls.items():
        if found is None or not found.value.strip():
            continue
        url, login = _split_login(found.value.strip())
        v[var] = url
        if login and login not in logins:
            logins.append(login)
    if len(logins) > 1:
        r.note(None, "the URLs log in as different users; imported the first one: check "
                     "username and password", attention=True)
    if logins:
        user, password = logins[0]
        v["auth"] = "basic"
        v["username"] = user
        v["password"] = r.ctx.secret(f"consumer_{bus_element(key).lower()}_password",
                                     password)
        r.note(None, "the login in the URLs went to `auth: basic` with the password in "
                     "secrets.yaml")
    put(v, "power_extract_regex", r.text("PowerExtractRegex"))
    return entry


def mqtt_consumer(ctx: Context, r: Reader, key: str) -> Entry:
    entry = Entry("switched-consumer-mqtt", r.section.line, instance_name(key))
    _consumer_common(r, entry, key)
    v = entry.vars
    for ini, var in (("OnTopic", "on_topic"), ("OnValue", "on_value"),
                     ("OffTopic", "off_topic"), ("OffValue", "off_value"),
                     ("StatusTopic", "status_topic"), ("PowerTopic", "power_topic"),
                     ("PowerExtractRegex", "power_extract_regex")):
        put(v, var, r.text(ini))
    r.note(None, "es-ESS never saw an MQTT consumer as on (a log-format bug), so it never "
                 "switched it off; the flow does")
    return entry


def _split_login(url: str) -> tuple[str, tuple[str, str] | None]:
    """`http://user:pw@host/x` -> (`http://host/x`, (user, pw))."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None
    if not parts.password:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]  # the host as written (hostname lower-cases)
    return (urlunsplit(parts._replace(netloc=netloc)),
            (unquote(parts.username or ""), unquote(parts.password)))


@dataclass(frozen=True)
class Feature:
    """A feature: its [Services] flag (with known misspellings) and its converter."""

    flag: str
    flag_variants: tuple[str, ...]
    convert: Convert
    sections: tuple[str, ...]          # section names, or prefixes ending in ':'
    dormant: bool = False              # es-ESS at HEAD never started it


SINGLE_FEATURES = (
    Feature("TimeToGoCalculator", (), time_to_go, ("TimeToGoCalculator",)),
    Feature("SolarOverheadDistributor", (), distributor, ("SolarOverheadDistributor",)),
    Feature("FroniusWattpilot", (), wattpilot, ("FroniusWattpilot",)),
    Feature("NoBatToEV", (), no_bat_to_ev, ("NoBatToEV",)),
    Feature("Shelly3EMGrid", (), shelly3em, ("Shelly3EMGrid",)),
    Feature("ChargeCurrentReducer", (), charge_current_reducer, ("ChargeCurrentReducer",),
            dormant=True),
)

INSTANCE_FEATURES = (
    Feature("MqttTemperature", ("MqttTemperatures",), temperature,
            ("MqttTemperature:", "MqttTemperatures:")),
    Feature("MqttExporter", (), exporter, ("MqttExporter:", "MattExporter:")),
    Feature("ShellyPMInverter", (), shellypm, ("ShellyPMInverter:",)),
    Feature("MqttPVInverter", ("MqttPvInverter",), pvinverter,
            ("MqttPVInverter:", "MqttPvInverter:")),
    # switched consumers exist only with the distributor (es-ESS read them there)
    Feature("SolarOverheadDistributor", (), http_consumer, ("HttpConsumer:",)),
    Feature("SolarOverheadDistributor", (), mqtt_consumer, ("MqttConsumer:",)),
)


def instance_key(section: IniSection, prefix: str) -> str:
    """The part after the prefix, as written (es-ESS stripped it, except for consumers)."""
    return section.name[len(prefix):]
