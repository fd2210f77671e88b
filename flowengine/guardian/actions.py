"""Safe actions: what the guardian does for a node when the runtime cannot.

An action is a plain JSON object, as the runtime registers it:

    {"type": "dbus.set_value", "bus": null, "service": "com.victronenergy.settings",
     "path": "/Settings/CGwacs/AcPowerSetPoint", "signature": "d", "value": 0.0}
    {"type": "mqtt.publish", "host": "broker.lan", "port": 1883, "tls": false,
     "username": "esess", "password": "...", "topic": "heater/set", "payload": "0",
     "qos": 1, "retain": true}
    {"type": "http.get", "url": "http://192.168.1.60/relay/0?turn=off",
     "username": "admin", "password": "..."}              (HTTP basic auth, optional)
    {"type": "wattpilot.set", "host": "192.168.1.60", "port": 80, "path": "/ws",
     "password_hash": "...", "serial": "91400617", "values": {"frc": 1}}
                                    (path and serial optional; the serial is checked)

each with an optional `timeout_s` (default 3 s, at most 10 s). `check_action` refuses a
malformed one when it is registered, so a mistake shows up then, not when it is needed.
`describe` is what a log line may show: never a password or a URL's user info.

A Wattpilot's `password_hash` is HP, the hash of the login and of the signatures that
the runtime derives from the password (PBKDF2 or bcrypt, too slow for the guardian). It
is as good as the password at that charger, so it is sealed on disk as a password is.
"""

from __future__ import annotations

import base64
import logging
import math
import urllib.parse
from collections.abc import Mapping

from flowengine.guardian.dbuswire import call_set_value
from flowengine.guardian.mqttwire import MqttTarget, publish_once

TYPE_CHECKING = False  # typing costs the guardian 2 MB resident; mypy still sees these
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ActionError", "apply_action", "check_action", "describe"]

log = logging.getLogger("flowengine.guardian")

DEFAULT_TIMEOUT_S = 3.0
MAX_TIMEOUT_S = 10.0
SECRET_FIELDS = ("password", "password_hash")

_REQUIRED: dict[str, dict[str, type]] = {
    "dbus.set_value": {"service": str, "path": str, "signature": str},
    "mqtt.publish": {"host": str, "port": int, "topic": str, "payload": str},
    "http.get": {"url": str},
    "wattpilot.set": {"host": str, "port": int, "password_hash": str, "values": dict},
}
_SIGNATURES = {"b", "i", "x", "u", "d", "s", "ai", "au", "ad", "as"}


class ActionError(ValueError):
    """A registered action is malformed, or applying it failed."""


def check_action(action: Any) -> dict[str, Any]:
    """The action, checked; ActionError says what is wrong."""
    if not isinstance(action, dict):
        raise ActionError("a safe action is a JSON object")
    kind = action.get("type")
    fields = _REQUIRED.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise ActionError(f"unknown safe action type {kind!r}; known: {', '.join(_REQUIRED)}")
    for name, expected in fields.items():
        if not isinstance(action.get(name), expected):
            raise ActionError(f"{kind}: '{name}' must be a {expected.__name__}")
    timeout = action.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not 0 < timeout <= MAX_TIMEOUT_S:
        raise ActionError(f"{kind}: timeout_s must be a number of seconds in (0, "
                          f"{MAX_TIMEOUT_S:g}]")
    if kind == "dbus.set_value" and action["signature"] not in _SIGNATURES:
        raise ActionError(f"dbus.set_value: signature {action['signature']!r} is not one of "
                          + ", ".join(sorted(_SIGNATURES)))
    if kind == "mqtt.publish" and action.get("qos", 0) not in (0, 1, 2):
        raise ActionError("mqtt.publish: qos must be 0, 1 or 2")
    if kind == "http.get" and urllib.parse.urlsplit(action["url"]).scheme not in ("http",
                                                                                  "https"):
        raise ActionError("http.get: the url must start with http:// or https://")
    if kind == "wattpilot.set":
        _check_wattpilot(action)
    return action


def _check_wattpilot(action: dict[str, Any]) -> None:
    port, path, values = action["port"], action.get("path", "/ws"), action["values"]
    if isinstance(port, bool) or not 0 < port < 65536:
        raise ActionError("wattpilot.set: 'port' must be a port number (1 to 65535)")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ActionError("wattpilot.set: 'path' must be a str that starts with /")
    if not isinstance(action.get("serial"), str | None):
        raise ActionError("wattpilot.set: 'serial' must be a str or null")
    if not values:
        raise ActionError("wattpilot.set: 'values' names no key to write")
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise ActionError("wattpilot.set: every key of 'values' is a non-empty str")
        if not (value is None or isinstance(value, bool | int | str)
                or (isinstance(value, float) and math.isfinite(value))):
            raise ActionError(f"wattpilot.set: values.{key} must be a JSON number, bool, "
                              f"str or null")


def describe(action: Mapping[str, Any]) -> str:
    """One line for the log, without secrets."""
    kind = action.get("type")
    if kind == "dbus.set_value":
        return f"D-Bus {action['service']} {action['path']} := {action.get('value')!r}"
    if kind == "mqtt.publish":
        return (f"MQTT {action['host']}:{action['port']} {action['topic']} "
                f"<- {_short(action['payload'])!r} (qos {action.get('qos', 0)}"
                f"{', retained' if action.get('retain') else ''})")
    if kind == "http.get":
        parts = urllib.parse.urlsplit(str(action["url"]))
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        shown = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
        return f"HTTP GET {shown}"
    if kind == "wattpilot.set":
        writes = ", ".join(f"{key} := {value!r}" for key, value in action["values"].items())
        return f"Wattpilot {action['host']}:{action['port']} {_short(writes)}"
    return f"unknown action {kind!r}"


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def apply_action(action: Mapping[str, Any]) -> None:
    """Do it, within its timeout. Raises ActionError (with the reason) when it failed."""
    timeout = float(action.get("timeout_s", DEFAULT_TIMEOUT_S))
    kind = action["type"]
    try:
        if kind == "dbus.set_value":
            code = call_set_value(action.get("bus"), action["service"], action["path"],
                                  action["signature"], action.get("value"), timeout)
            if code != 0:
                raise ActionError(f"the service refused it (code {code})")
        elif kind == "mqtt.publish":
            if action.get("insecure"):
                log.warning("TLS to %s without certificate checks (insecure: true in the site "
                            "file): anyone on the way can pose as the broker", action["host"])
            target = MqttTarget(
                host=action["host"], port=action["port"], tls=bool(action.get("tls")),
                ca_file=action.get("ca_file"), insecure=bool(action.get("insecure")),
                username=action.get("username"), password=action.get("password"),
                client_id=str(action.get("client_id") or "esess-guardian"))
            publish_once(target, action["topic"], action["payload"].encode(),
                         qos=int(action.get("qos", 0)), retain=bool(action.get("retain")),
                         timeout_s=timeout)
        elif kind == "http.get":
            import urllib.request  # when needed: it pulls in http, email and ssl

            request = urllib.request.Request(action["url"])
            if action.get("username") is not None:
                pair = f"{action['username']}:{action.get('password') or ''}".encode()
                request.add_header("Authorization",
                                   "Basic " + base64.b64encode(pair).decode())
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(request, timeout=timeout) as reply:
                if not 200 <= reply.status < 300:
                    raise ActionError(f"the device answered HTTP {reply.status}")
                reply.read(65536)
        elif kind == "wattpilot.set":
            from flowengine.guardian.wattpilotwire import set_values  # hashlib: OpenSSL

            set_values(action["host"], action["port"], action["password_hash"],
                       action["values"], path=action.get("path", "/ws"),
                       serial=action.get("serial"), timeout_s=timeout)
        else:
            raise ActionError(f"unknown action type {kind!r}")
    except ActionError:
        raise
    except TimeoutError as exc:
        raise ActionError(f"no answer within {timeout:g} s") from exc
    except OSError as exc:  # includes the wire errors, URLError, HTTPError, ssl errors
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        status = getattr(exc, "code", None)  # an HTTPError's status
        if isinstance(status, int):
            reason = f"the device answered HTTP {status} {reason}"
        raise ActionError(str(reason)) from exc
