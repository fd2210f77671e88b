"""config.ini -> the site file's content (connections, log level, flows) and its text.

The order of work: [Services] decides what is on; [Common] and [Mqtt] become the
connections and the log level; each feature's sections become `flows:` entries (off
ones commented out); every key nobody read is reported with its line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from migrate.convert import Context, Reader, put, whole
from migrate.ini import IniFile, IniSection
from migrate.report import Report
from migrate.services import INSTANCE_FEATURES, SINGLE_FEATURES, Entry, Feature, instance_key
from migrate.yamlout import render

__all__ = ["Imported", "convert_ini", "render_secrets", "render_site"]

LEVELS = ("TRACE", "DEBUG", "APP_DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# sections es-ESS knew that have no flow here, and why
NO_FLOW = {
    "FroniusSmartmeterJSON": "no flow reads a Fronius smart meter over its JSON API yet",
    "FroniusSmartmeterRS485": "es-ESS never ran it (dormant), and there is no flow for it",
    "Grid2Bat": "es-ESS never ran it (dormant), and there is no flow for it",
    "MqttDC:": "es-ESS never ran it (dormant), and there is no flow for it",
    "MqttPvInverter": "zero feed-in through OpenDTU is not part of the mqtt-pvinverter flow",
    "MqttPVInverter": "zero feed-in through OpenDTU is not part of the mqtt-pvinverter flow",
}
NO_FLOW_FLAGS = ("FroniusSmartmeterJSON", "FroniusSmartmeterRS485", "Grid2Bat", "MqttDC")
IGNORED_PREFIX = {"MqttTemperatures:": "[MqttTemperature:<key>]",
                  "MqttPvInverter:": "[MqttPVInverter:<key>]",
                  "MattExporter:": "[MqttExporter:<key>]"}


@dataclass
class Imported:
    site: dict[str, Any]
    entries: list[Entry]
    secrets: dict[str, str]
    report: Report


def convert_ini(ini: IniFile, file_label: str, *, state_dir: str | None = None) -> Imported:
    """The site for `ini`; `state_dir`: where its nodes keep state (beside the site file)."""
    report = Report(file_label)
    ctx = Context(ini, report)
    done: set[str] = set()
    flags = _services(ctx, done)
    site: dict[str, Any] = {}
    connections: dict[str, Any] = {}
    common = _common(ctx, done, site, connections)
    _mqtt(ctx, done, connections, common)
    entries = _features(ctx, done, flags, common)
    _other_sections(ctx, done, flags)
    ordered: dict[str, Any] = {}
    if connections:  # the brokers first, as a reader looks for them
        ordered["connections"] = dict(sorted(connections.items(), key=lambda kv: kv[0] != "mqtt"))
    if "mqtt" in connections:
        ordered["observe"] = ["mqtt.main"]  # es-ESS's service messages, on the main broker
    if state_dir is not None:
        ordered["state_dir"] = state_dir
    ordered.update(site)
    ordered["flows"] = [e.item() for e in entries if e.enabled]
    return Imported(ordered, entries, ctx.secrets, report)


# -- [Services] -------------------------------------------------------------------------

def _services(ctx: Context, done: set[str]) -> dict[str, bool]:
    section = ctx.ini.section("Services")
    flags: dict[str, bool] = {}
    if section is None:
        ctx.report.add(None, "Services", None, "no [Services] section: es-ESS started no "
                       "feature; every entry is written commented out", attention=True)
        return flags
    done.add(section.name)
    r = Reader(ctx, section)
    known = {f.flag: f for f in (*SINGLE_FEATURES, *INSTANCE_FEATURES)}
    for flag, feature in known.items():
        variants = feature.flag_variants
        found = r.take(flag, *variants, spelling_note=f"es-ESS reads the flag `{flag}`, so "
                       f"it ignored this one (its README's spelling); imported as {flag}")
        if found is not None:
            flags[flag] = r.flag(found)
    for flag in NO_FLOW_FLAGS:
        found = r.take(flag)
        if found is not None:
            flags[flag] = r.flag(found)
            if flags[flag]:
                r.note(found, "not imported: " + NO_FLOW.get(flag, NO_FLOW.get(f"{flag}:", "")),
                       attention=True)
    r.leftovers()
    return flags


# -- [Common] ----------------------------------------------------------------------------

def _common(ctx: Context, done: set[str], site: dict[str, Any],
            connections: dict[str, Any]) -> dict[str, Any]:
    """Site-wide values; returns those the flows take (portal_id, capacity_wh, ...)."""
    out: dict[str, Any] = {}
    section = ctx.ini.section("Common")
    if section is None:
        return out
    done.add(section.name)
    r = Reader(ctx, section)
    level = r.take("LogLevel")
    if level is not None and level.value.strip():
        text = level.value.strip()
        if text in LEVELS:
            site["log"] = {"level": text}
        elif text.upper() in LEVELS:
            site["log"] = {"level": text.upper()}
            r.note(level, f"es-ESS accepted upper case only and did not start with "
                          f"`{text}`; imported as {text.upper()}")
        else:
            r.note(level, f"not imported: `{text[:40]}` is no log level (one of "
                          f"{', '.join(LEVELS)}); the default is INFO", attention=True)
    put(out, "portal_id", r.text("VRMPortalID"))
    put(out, "capacity_wh", whole(r.number("BatteryCapacityInWh")))
    put(out, "service_message_count", r.integer("ServiceMessageCount"))
    default = r.number("DefaultPowerSetPoint")
    if default is not None:
        connections["setpoint"] = {"default": {"default_w": whole(default)}}
        r.note(section.values.get("DefaultPowerSetPoint"),
               "es-ESS wrote this setpoint at every start, feature or not; the arbiter "
               "writes it only when a request (no-bat-to-ev, charge-current-reducer) ends")
    r.drop("NumberOfThreads", "one event loop here, no thread pool")
    r.drop("ConfigVersion", "no config versions here (the site file is checked as a "
                            "whole by `validate`)")
    for key in ("BatteryMaxChargeInWh", "BatteryMaxChargeInW"):
        r.drop(key, "es-ESS read it nowhere")
    r.leftovers()
    return out


# -- [Mqtt] ------------------------------------------------------------------------------

def _mqtt(ctx: Context, done: set[str], connections: dict[str, Any],
          common: dict[str, Any]) -> None:
    section = ctx.ini.section("Mqtt")
    main: dict[str, Any] = {}
    if section is None:
        ctx.report.add(None, "Mqtt", None, "no [Mqtt] section (es-ESS needed one): the "
                       "main broker is written as localhost", attention=True)
        connections["mqtt"] = {"main": {"host": "localhost"}}
        return
    done.add(section.name)
    r = Reader(ctx, section)
    host = r.text("Host")
    if host is None:
        r.note(None, "no Host (es-ESS needed one): the main broker is written as "
                     "localhost", attention=True)
    main["host"] = host or "localhost"
    put(main, "port", r.integer("Port"))
    user = r.take("User")
    password = r.take("Password")
    user_text = user.value.strip() if user else ""
    if user_text and password is not None and password.value:
        main["username"] = user_text
        main["password"] = ctx.secret("mqtt_password", password.value)
    elif user_text or (password is not None and password.value):
        r.note(user or password, "es-ESS logged in only with both a User and a Password, "
                                 "so it connected without a login; so does the import",
               attention=True)
    ssl = r.take("SslEnabled")
    if ssl is not None and ssl.value.strip() and r.flag(ssl):
        main["tls"] = True
        r.note(ssl, "es-ESS used TLS without checking the broker's certificate or name; "
                    "imported as TLS *with* checks: a broker with a self-signed "
                    "certificate needs `ca_file:` (or, only to try things out, "
                    "`insecure: true`) under connections: mqtt: main", attention=True)
    local = r.take("LocalSslEnabled")
    if local is not None and local.value.strip() and r.flag(local):
        r.note(local, "not imported: flows reach the GX's own broker on localhost:1883, "
                      "which never leaves the machine (es-ESS used port 8883 without "
                      "certificate checks)")
    r.drop("ThrottlePeriod", "the broker connection sends only the latest value of a "
                             "topic when it cannot keep up; no fixed throttle",
           attention=False)
    if "service_message_count" in common:
        main["service_message_count"] = max(1, min(1000, common["service_message_count"]))
    connections["mqtt"] = {"main": main}
    r.leftovers()


# -- the features ------------------------------------------------------------------------

def _features(ctx: Context, done: set[str], flags: dict[str, bool],
              common: dict[str, Any]) -> list[Entry]:
    entries: list[Entry] = []
    for feature in SINGLE_FEATURES:
        section = ctx.ini.section(*feature.sections)
        if section is None and feature.flag not in flags:
            continue
        if section is None and feature.flag in ("FroniusWattpilot", "Shelly3EMGrid",
                                                "ChargeCurrentReducer"):
            if flags.get(feature.flag):
                ctx.report.add(None, feature.flag, None, f"[Services] {feature.flag} is "
                               f"on but there is no [{feature.flag}] section: not "
                               "imported", attention=True)
            continue
        blank = section or IniSection(feature.flag, 0)
        if section is not None:
            done.add(section.name)
        r = Reader(ctx, blank)
        entry = feature.convert(ctx, r, "")
        if entry.use == "time-to-go":
            for var in ("capacity_wh", "portal_id"):
                put(entry.vars, var, common.get(var))
                if var not in entry.vars:
                    ctx.report.add(None, "Common", None, f"time-to-go needs `{var}` "
                                   "([Common] VRMPortalID, BatteryCapacityInWh)",
                                   attention=True)
        _switch(ctx, entry, feature, flags)
        if section is not None:
            r.leftovers()
        entries.append(entry)
    for feature in INSTANCE_FEATURES:
        names: dict[str, int] = {}
        for section in ctx.ini.sections:
            prefix = next((p for p in feature.sections if section.name.startswith(p)), None)
            if prefix is None:
                continue
            done.add(section.name)
            key = instance_key(section, prefix)
            r = Reader(ctx, section)
            if prefix in IGNORED_PREFIX:
                r.note(None, f"es-ESS looks for {IGNORED_PREFIX[prefix]} sections, so it "
                             "ignored this one; imported")
            entry = feature.convert(ctx, r, key)
            assert entry.instance is not None
            count = names.get(entry.instance.lower(), 0) + 1
            names[entry.instance.lower()] = count
            if count > 1:
                entry.instance = f"{entry.instance}-{count}"
            _switch(ctx, entry, feature, flags)
            r.leftovers()
            entries.append(entry)
    return entries


def _switch(ctx: Context, entry: Entry, feature: Feature, flags: dict[str, bool]) -> None:
    flag = flags.get(feature.flag)
    if feature.dormant:
        entry.enabled = False
        entry.why_disabled = (f"es-ESS never ran {feature.flag} (its start is commented "
                              "out there)")
        if flag:
            ctx.report.add(entry.line or None, feature.flag, None,
                           f"[Services] {feature.flag} is on, but es-ESS never ran it; "
                           "written commented out: check its vars, then enable it",
                           attention=True)
    elif flag is None:
        entry.enabled = False
        entry.why_disabled = f"config.ini has no [Services] {feature.flag} flag"
        if feature.flag not in ctx.missing_flags:
            ctx.missing_flags.add(feature.flag)
            ctx.report.add(entry.line or None, feature.flag, None,
                           f"no [Services] {feature.flag} flag (es-ESS stopped starting "
                           "its services at a missing flag); written commented out",
                           attention=True)
    elif not flag:
        entry.enabled = False
        entry.why_disabled = f"[Services] {feature.flag} is off in config.ini"


def _other_sections(ctx: Context, done: set[str], flags: dict[str, bool]) -> None:
    for section in ctx.ini.sections:
        if section.name in done:
            continue
        reason = NO_FLOW.get(section.name) or next(
            (text for prefix, text in NO_FLOW.items()
             if prefix.endswith(":") and section.name.startswith(prefix)), None)
        if reason is None:
            reason, attention = "es-ESS knows no such section (a typo?)", True
        elif section.name.lower() == "mqttpvinverter":
            zero = section.find("EnableZeroFeedin")
            attention = bool(zero and zero.value.strip().lower() == "true")
        else:
            attention = bool(flags.get(section.name.split(":")[0]))
        for value in section.values.values():
            ctx.report.add(value.line, section.name, value.key, f"not imported: {reason}",
                           attention=attention)
        if not section.values:
            ctx.report.add(section.line, section.name, None, f"not imported: {reason}",
                           attention=attention)
    if ctx.ini.defaults is not None:
        for value in ctx.ini.defaults.values.values():
            ctx.report.add(value.line, "DEFAULT", value.key, "not imported: es-ESS added "
                           "[DEFAULT] keys to every section (comments, in its sample file)",
                           attention=False)


# -- text ----------------------------------------------------------------------------------

def render_site(imported: Imported, header: list[str]) -> str:
    lines = [*header]
    body = {k: v for k, v in imported.site.items() if k != "flows"}
    lines.extend(render(body))
    enabled = [e for e in imported.entries if e.enabled]
    disabled = [e for e in imported.entries if not e.enabled]
    if enabled:
        lines.append("flows:")
        lines.extend(render([e.item() for e in enabled], 2))
    else:
        lines.append("flows: []  # to enable an entry below, delete this `[]` and the `# `s")
    for entry in disabled:
        lines.append(f"  # off: {entry.why_disabled}; to enable it, remove the `# ` below")
        lines.extend("  # " + line[2:] for line in render([entry.item()], 2))
    return "\n".join(lines) + "\n"


def render_secrets(secrets: dict[str, str]) -> str:
    lines = ["# Secrets for site.yaml (`!secret name`), imported from an es-ESS config.ini.",
             "# Keep this file readable only by its owner (mode 0600)."]
    lines.extend(f"{name}: {scalar_text(value)}" for name, value in secrets.items())
    return "\n".join(lines) + "\n"


def scalar_text(value: str) -> str:
    """Always quoted, so a password such as `yes` or `123` stays the text it is."""
    return json.dumps(value, ensure_ascii=False)

