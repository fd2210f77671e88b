"""energy.switch: an on/off consumer of the solar overhead distributor (es-ESS's NPC).

    - id: boiler
      type: energy.switch
      key: boiler
      custom_name: Boiler
      request_w: 2000
      vrm_instance: 1010
      http:
        on_url: http://192.168.1.60/relay/0?turn=on
        off_url: http://192.168.1.60/relay/0?turn=off
        status_url: http://192.168.1.60/status
        on_keyword_regex: '"ison":\\s*true'
        power_extract_regex: '"power":\\s*([0-9.]+)'

The node asks the distributor for `request_w` on the main broker, all or nothing, as
es-ESS's HttpConsumer / MqttConsumer did: at the start and every `announce_s` it
publishes `<root>/Requests/<key>/` IsHttpConsumer (or IsMqttConsumer), IsAutomatic,
CustomName, Request, StepSize (= Request), Minimum (if set), Priority, PriorityShift,
IgnoreBatReservation, VRMInstanceID and Consumption (QoS 1, not retained); Consumption
also whenever it changes. It follows `<root>/Requests/<key>/Allowance`: at least the
request switches the consumer on, 0 switches it off, anything between changes nothing.
A change waits for `min_on_s` / `min_off_s` (the start counts as a switch-off); the
status says so. A malformed or retained allowance is ignored and counted.

The consumer is reached in one of two ways (exactly one of `http:` and `mqtt:`):

- `http:`: `on_url`, `off_url` (GET), `status_url`, read after each switch and every
  `status_interval_s`: the consumer is on when `on_keyword_regex` (es-ESS
  OnKeywordRegex; `is_on_keyword_regex`, the README's name, is taken too) is found in
  the answer. `power_extract_regex` (one group) reads the power from `power_url`, or
  from the status answer without one. `timeout_ms` bounds each request; `auth: basic`
  with `username` and `password` for a Shelly Gen1 with a login.
- `mqtt:`: `on_topic`/`on_value`, `off_topic`/`off_value` (published with `qos`),
  `status_topic` (each message: on when `on_keyword_regex` is found), `power_topic`
  (a plain number, or the group of `power_extract_regex`), on the node's broker.

Consumption is the measured power while on, `request_w` while on without a power
source (es-ESS counted 0 for MQTT consumers and they flapped), and 0 when off or when
the device does not answer (reported once, in the status and the log). The outputs
`on`, `consumption` and `allowance` carry the same values for a flow that shows them.

Fail-safe: the consumer is switched off on stop, SIGTERM and when the node fails (not
waiting for `min_on_s`; Consumption 0 and IsAutomatic false are published then), when
the broker connection is lost, and when no allowance came for `allowance_timeout_s`.
Before the first switch-on the off URL or the off publish is registered with the
guardian, which makes it when the runtime is killed or hangs; without the guardian's
consent the consumer is not switched on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from flowengine.errors import ConfigError
from flowengine.model import NodeSpec, Secret
from flowengine.node import Claim, Node, node_type, option
from nodes.energy.onoff import OnOffPolicy
from nodes.energy.onoff_device import HttpOnOff, MqttOnOff
from nodes.energy.switch_run import SwitchRun, number_text

if TYPE_CHECKING:
    from flowengine.context import NodeContext

__all__ = ["EnergySwitch", "EnergySwitchConfig", "HttpSwitchConfig", "MqttSwitchConfig",
           "number_text"]

ROOT = "es-ESS/SolarOverheadDistributor"
REPEAT_S = 60.0  # a command the device did not follow is sent again after this long
SAFE_TIMEOUT_S = 0.6  # the runtime gives every safe state 0.8 s
URL = r"^https?://"


@dataclass(frozen=True, kw_only=True)
class HttpSwitchConfig:
    on_url: str = option("GET to switch the consumer on", pattern=URL,
                         example="http://192.168.1.60/relay/0?turn=on")
    off_url: str = option("GET to switch it off (also the guardian's safe action)",
                          pattern=URL, example="http://192.168.1.60/relay/0?turn=off")
    status_url: str = option("GET for its state", pattern=URL,
                             example="http://192.168.1.60/status")
    on_keyword_regex: str | None = option(
        "on when this regex is found in the status answer (es-ESS OnKeywordRegex)",
        default=None, example='"ison":\\s*true')
    is_on_keyword_regex: str | None = option(
        "the same, under the es-ESS README's name IsOnKeywordRegex; give one of the two",
        default=None)
    power_url: str | None = option("GET for the power drawn (default: the status answer)",
                                   default=None, pattern=URL)
    power_extract_regex: str | None = option(
        "regex with one group: the power in W (none: request_w while on)", default=None,
        example='"power":\\s*([0-9.]+)')
    timeout_ms: float = option("give up on one request after", default=2000, minimum=50,
                               maximum=10000)
    status_interval_s: float = option("read the state this often (and after each switch)",
                                      default=60, minimum=1)
    auth: Literal["none", "basic"] = option("none, or basic (Shelly Gen1 with a login)",
                                            default="none")
    username: str = option("user name for basic authentication", default="admin")
    password: Secret | None = option("password for basic authentication; use !secret",
                                     default=None)


@dataclass(frozen=True, kw_only=True)
class MqttSwitchConfig:
    on_topic: str = option("topic to switch the consumer on", min_length=1,
                           example="Devices/heater/set")
    on_value: str = option("payload that switches it on", example="on")
    off_topic: str = option("topic to switch it off", min_length=1,
                            example="Devices/heater/set")
    off_value: str = option("payload that switches it off (also the guardian's)",
                            example="off")
    status_topic: str = option("where the consumer says its state", min_length=1,
                               example="Devices/heater/state")
    on_keyword_regex: str | None = option(
        "on when this regex is found in a status message (es-ESS OnKeywordRegex)",
        default=None, example="^on$")
    is_on_keyword_regex: str | None = option(
        "the same, under the es-ESS README's name IsOnKeywordRegex; give one of the two",
        default=None)
    power_topic: str | None = option("where the consumer says its power (W)", default=None,
                                     example="Devices/heater/power")
    power_extract_regex: str | None = option(
        "regex with one group: the power in a power message (none: a plain number)",
        default=None, example='"power":\\s*([0-9.]+)')
    qos: Literal[0, 1, 2] = option("QoS of the on and off messages", default=1)


@dataclass(frozen=True, kw_only=True)
class EnergySwitchConfig:
    key: str = option("the consumer's key in the distributor's topics", example="boiler",
                      pattern=r"^[^/+#\s]+$")
    root: str = option("the distributor's topic root", default=ROOT, min_length=1)
    broker: str = option("the distributor's broker connection", default="main",
                         connection="mqtt")
    custom_name: str | None = option("name shown in VRM", default=None, example="Boiler")
    request_w: float = option("power the consumer draws when on, W (all or nothing)",
                              exclusive_minimum=0, example=2000)
    minimum_w: float | None = option("Minimum published to the distributor, W", default=None,
                                     minimum=0)
    priority: int = option("lower numbers are served first", default=100)
    priority_shift: float = option("priority added after each grant", default=0, minimum=0)
    ignore_bat_reservation: bool = option("may take power the battery reservation keeps",
                                          default=False)
    vrm_instance: int | None = option("VRM instance of the consumer's battery monitor",
                                      default=None, example=1010)
    min_on_s: float = option("stay on at least this long", default=300, minimum=0)
    min_off_s: float = option("stay off at least this long (the start counts as off)",
                              default=300, minimum=0)
    announce_s: float = option("publish the request this often", default=30, minimum=1)
    allowance_timeout_s: float = option("no allowance for this long: off", default=180,
                                        minimum=1)
    http: HttpSwitchConfig | None = option(
        "switched by HTTP GETs", default=None,
        example={"on_url": "http://192.168.1.60/relay/0?turn=on",
                 "off_url": "http://192.168.1.60/relay/0?turn=off",
                 "status_url": "http://192.168.1.60/status",
                 "on_keyword_regex": '"ison":\\s*true'})
    mqtt: MqttSwitchConfig | None = option(
        "switched by MQTT messages", default=None,
        example={"on_topic": "Devices/heater/set", "on_value": "on",
                 "off_topic": "Devices/heater/set", "off_value": "off",
                 "status_topic": "Devices/heater/state", "on_keyword_regex": "^on$"})


@node_type("energy.switch", config=EnergySwitchConfig)
class EnergySwitch(Node[EnergySwitchConfig]):
    """Switch a consumer on and off by the solar overhead distributor's allowance."""

    inputs = {}

    def __init__(self, config: EnergySwitchConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        if (config.http is None) == (config.mqtt is None):
            raise ConfigError("give exactly one of `http:` and `mqtt:`",
                              mark=self.mark_of("mqtt" if config.mqtt else "http"),
                              hint="http: with on_url, off_url, status_url; or mqtt: with "
                                   "on_topic, on_value, off_topic, off_value, status_topic")
        if config.minimum_w is not None and config.minimum_w > config.request_w:
            raise ConfigError(f"minimum_w {config.minimum_w:g} is above request_w "
                              f"{config.request_w:g}", mark=self.mark_of("minimum_w"))
        if config.http is not None and config.http.auth == "basic" \
                and config.http.password is None:
            raise ConfigError("auth: basic needs a password", mark=self.mark_of("http", "auth"),
                              hint="add `password: !secret <name>`")
        block = "http" if config.http is not None else "mqtt"
        device = config.http or config.mqtt
        assert device is not None
        self._block = block
        self._on_pattern = self._on_regex(block, device.on_keyword_regex,
                                          device.is_on_keyword_regex)
        self._power_pattern = None if device.power_extract_regex is None else \
            self._regex((block, "power_extract_regex"), device.power_extract_regex, groups=1)

    def _on_regex(self, block: str, on: str | None, is_on: str | None) -> re.Pattern[str]:
        if (on is None) == (is_on is None):
            raise ConfigError(
                f"{block}: give exactly one of on_keyword_regex and is_on_keyword_regex",
                mark=self.mark_of(block, "is_on_keyword_regex" if is_on else
                                  "on_keyword_regex"),
                hint="they are the same option (es-ESS's code says OnKeywordRegex, its "
                     "README IsOnKeywordRegex), e.g. on_keyword_regex: '\"ison\":\\s*true'")
        name = "on_keyword_regex" if on is not None else "is_on_keyword_regex"
        text = on if on is not None else is_on
        assert text is not None
        return self._regex((block, name), text, groups=None)

    def _regex(self, path: tuple[str, str], text: str, *, groups: int | None
               ) -> re.Pattern[str]:
        try:
            pattern = re.compile(text)
        except re.error as exc:
            raise ConfigError(f"{'.'.join(path)}: not a regex: {exc}",
                              mark=self.mark_of(*path)) from None
        if groups is not None and pattern.groups != groups:
            raise ConfigError(f"{'.'.join(path)} has {pattern.groups} groups; it needs "
                              f"exactly {groups}", mark=self.mark_of(*path),
                              hint="the group is the number, e.g. '\"power\":\\s*([0-9.]+)'"
                                   "; make other groups non-capturing: (?:...)")
        return pattern

    def claims(self) -> list[Claim]:
        return [Claim("solar overhead consumer key", f"{self.config.root}/Requests/"
                      f"{self.config.key}", "key")]

    @classmethod
    def output_topics(cls, config: EnergySwitchConfig) -> frozenset[str]:
        return frozenset({"on", "consumption", "allowance"})

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        cfg = self.config
        broker = await ctx.connections.get("mqtt", cfg.broker)
        device: HttpOnOff | MqttOnOff
        if cfg.http is not None:
            session = await ctx.connections.get("http", "default")
            from nodes.http.session import HttpAuth

            auth = HttpAuth(cfg.http.auth, cfg.http.username, cfg.http.password)
            device = HttpOnOff(cfg.http, session.client(auth), on_pattern=self._on_pattern,
                               power_pattern=self._power_pattern)
        else:
            assert cfg.mqtt is not None
            device = MqttOnOff(cfg.mqtt, broker, on_pattern=self._on_pattern,
                               power_pattern=self._power_pattern)
        policy = OnOffPolicy(request_w=cfg.request_w, min_on_s=cfg.min_on_s,
                             min_off_s=cfg.min_off_s, repeat_s=REPEAT_S, now=ctx.now())
        self.run = SwitchRun(self, ctx, broker, device, policy)
        self.run.start()

    async def stop(self) -> None:
        run = getattr(self, "run", None)
        if run is not None:
            run.close()

    async def safe_state(self) -> None:
        """Off now (no min on time); raise when the device did not take it (the guardian,
        which still has the off, makes it when the runtime ends)."""
        run = getattr(self, "run", None)
        if run is not None:
            await run.safe_off(SAFE_TIMEOUT_S)

    def request_fields(self) -> dict[str, str]:
        """What is published under `<root>/Requests/<key>/` at each announcement."""
        cfg = self.config
        fields = {"IsHttpConsumer" if cfg.http is not None else "IsMqttConsumer": "true",
                  "IsAutomatic": "true"}
        if cfg.custom_name is not None:
            fields["CustomName"] = cfg.custom_name
        fields["Request"] = number_text(cfg.request_w)
        fields["StepSize"] = number_text(cfg.request_w)
        if cfg.minimum_w is not None:
            fields["Minimum"] = number_text(cfg.minimum_w)
        fields["Priority"] = str(cfg.priority)
        fields["PriorityShift"] = number_text(cfg.priority_shift)
        fields["IgnoreBatReservation"] = "true" if cfg.ignore_bat_reservation else "false"
        if cfg.vrm_instance is not None:
            fields["VRMInstanceID"] = str(cfg.vrm_instance)
        return fields

