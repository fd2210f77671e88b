"""energy.charge_reducer: keep the battery's charge current near a desired value by feeding in.

The es-ESS ChargeCurrentReducer as one node. With DC-coupled PV and "feed in excess
DC-coupled PV" on, DVCC's charge current limit no longer holds the MPPTs back, so the
battery takes all it can. This node asks the grid setpoint arbiter (wire it to an
`energy.setpoint`) for feed-in instead: W this flow adds to the site's default setpoint,
always <= 0, or None to revoke.

    - id: reducer
      type: energy.charge_reducer
      desired_current: max(100 - SOC, 30)   # A, a formula in SOC (%)
      max_feed_in_w: 5000
      to: [setpoint]

**Inputs** (one port, by topic), from a `dbus.source` on com.victronenergy.system:
`battery_current` (/Dc/Battery/Current, A, + = charging), `battery_voltage`
(/Dc/Battery/Voltage, V) and `soc` (/Dc/Battery/Soc, %).

**Every `interval_ms`** (default 5 s: a MultiPlus-II follows a new setpoint with a time
constant of about 1.5 s, 95 % after 4.5 s, and the arbiter moves it by up to 1000 W a
second; so each cycle sees the effect of the one before), the error is the battery
current less the desired current (A; within `deadband_a` it counts as 0), and the
controller moves the feed-in by `proportional_gain * (E - E_before) + integral_gain *
E`, where E is the error times the voltage (W): a PI controller in velocity form, its
integral is the feed-in itself. The feed-in moves at most `max_step_w` up per cycle
(down without bound: backing off is the safe side), kept within 0 .. `max_feed_in_w`.
Being clamped, the feed-in cannot wind up beyond its bounds. The request is `-feed_in`,
whole W; never positive: it never imports to make the battery charge faster. Below the
desired current with no feed-in left it revokes (None) rather than requesting 0. Only
changes go out (a revoke once; the first cycle after a start always sends, so a
restarted node leaves nothing standing). Invalid inputs (a voltage <= 0, a SoC beyond
0..100) or a formula that fails or gives no number → revoke, the feed-in starts again
from 0, error status; a desired current below 0 counts as 0.

**Measured** on the plant `battery_current = (dc_pv - load - feed_in) / voltage`
(tests/unit/nodes/test_charge_reducer.py; defaults proportional 0.15, integral 0.5,
max step 1000 W, deadband 1 A): from 86.5 A, 56.5 A above the desired 30 A (52 V, DC PV
5000 W, load 500 W), it is within 1 A of it after 9 cycles (45 s) and stays there,
never going below it (the lowest is 30.6 A); with the feed-in acting one cycle late it
is within 1 A after 9 cycles too, dipping at most 3.9 A below, with no sustained
oscillation; with 30 % more or 20 % less effect per W (conversion losses) it settles in
7 and 12 cycles. The tests hold it to: within 1 A in 10 cycles without overshoot, 12
cycles and 5 A with the delay. It never requests a positive setpoint; as the SoC rises
it follows the formula's lower target; when the PV drops it backs off, and revokes
once nothing is left to feed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowengine.context import NodeContext
from flowengine.model import Message, NodeSpec, finite_number
from flowengine.node import Node, node_type, option
from nodes.logic.expression import EvaluationError, soc_formula

__all__ = ["EnergyChargeReducer", "EnergyChargeReducerConfig", "FeedInController"]

TOPICS = ("battery_current", "battery_voltage", "soc")
_UNSENT = object()  # nothing sent since the start


class FeedInController:
    """The feed-in (W, >= 0) that brings the battery current down to a desired value.

    Pure: `update` takes one cycle's measurements and returns the new feed-in, or None
    while there is nothing to feed in (revoke).
    """

    def __init__(self, *, proportional_gain: float = 0.15, integral_gain: float = 0.5,
                 max_step_w: float = 1000.0, max_feed_in_w: float,
                 deadband_a: float = 1.0) -> None:
        if max_feed_in_w <= 0 or max_step_w <= 0:
            raise ValueError("max_feed_in_w and max_step_w must be > 0")
        self.proportional_gain = proportional_gain
        self.integral_gain = integral_gain
        self.max_step_w = max_step_w
        self.max_feed_in_w = max_feed_in_w
        self.deadband_a = deadband_a
        self.feed_in_w = 0.0
        self._error_before_w = 0.0

    def reset(self) -> None:
        """Start again from no feed-in (after invalid inputs)."""
        self.feed_in_w = 0.0
        self._error_before_w = 0.0

    def update(self, current_a: float, voltage_v: float, desired_a: float) -> float | None:
        """One cycle: the feed-in in W, or None when there is none (revoke)."""
        error_a = current_a - desired_a
        if abs(error_a) < self.deadband_a:
            error_a = 0.0
        error_w = error_a * voltage_v
        if self.feed_in_w <= 0 and error_w <= 0:  # idle: below the desired current
            self.reset()
            return None
        step = self.proportional_gain * (error_w - self._error_before_w) \
            + self.integral_gain * error_w
        self._error_before_w = error_w
        feed_in = self.feed_in_w + min(step, self.max_step_w)
        self.feed_in_w = min(max(feed_in, 0.0), self.max_feed_in_w)
        if self.feed_in_w < 0.5:  # would be a request of 0 W
            self.reset()
            return None
        return self.feed_in_w


@dataclass(frozen=True, kw_only=True)
class EnergyChargeReducerConfig:
    desired_current: str = option(
        "the battery charge current (A) to keep to: a number or a formula in SOC (%)",
        example="max(100 - SOC, 30)", min_length=1)
    max_feed_in_w: float = option(
        "the most feed-in (W) it may request; at most the ESS feed-in limit",
        example=5000, exclusive_minimum=0)
    interval_ms: float = option("time between two adjustments", default=5000, minimum=500)
    proportional_gain: float = option(
        "feed-in W per W of change of the excess charge power (error x voltage)",
        default=0.15, minimum=0, maximum=1)
    integral_gain: float = option(
        "feed-in W added per cycle per W of excess charge power", default=0.5,
        exclusive_minimum=0, maximum=1)
    max_step_w: float = option("the most the feed-in grows in one cycle", default=1000,
                               exclusive_minimum=0)
    deadband_a: float = option("an error smaller than this (A) counts as none", default=1.0,
                               minimum=0)
    output: str = option("topic of the request (W <= 0, or None to revoke)",
                         default="request")


@node_type("energy.charge_reducer", config=EnergyChargeReducerConfig)
class EnergyChargeReducer(Node[EnergyChargeReducerConfig]):
    """Request feed-in so that the battery charges at no more than a desired current."""

    def __init__(self, config: EnergyChargeReducerConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self._formula = soc_formula(config.desired_current, option="desired_current",
                                    mark=self.mark_of("desired_current"))
        self.controller = FeedInController(
            proportional_gain=config.proportional_gain, integral_gain=config.integral_gain,
            max_step_w=config.max_step_w, max_feed_in_w=config.max_feed_in_w,
            deadband_a=config.deadband_a)
        self._values: dict[str, float | None] = dict.fromkeys(TOPICS)
        self._seen: set[str] = set()
        self._sent: object = _UNSENT
        self._problem = ""  # the error last logged ("" = none)

    @classmethod
    def output_topics(cls, config: EnergyChargeReducerConfig) -> frozenset[str]:
        return frozenset({config.output})

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        ctx.status.warning("waiting for the first cycle")
        ctx.every(self.config.interval_ms, self._cycle, name="cycle")

    def receive(self, port: str, msg: Message) -> bool:
        """Keep the latest input for the next cycle (a direct call: no task switch)."""
        if msg.topic in self._values:
            number = finite_number(msg.value)
            self._values[msg.topic] = number
            if number is not None:
                self._seen.add(msg.topic)
        return True

    def _cycle(self) -> None:
        ctx = self.ctx
        desired, problem = self._desired()
        request: int | None = None
        if problem is None:
            assert desired is not None
            current, voltage = self._values["battery_current"], self._values["battery_voltage"]
            assert current is not None and voltage is not None
            feed_in = self.controller.update(current, voltage, desired)
            request = None if feed_in is None else -round(feed_in)
            shown = "no request" if request is None else f"request {request} W"
            text = f"{shown}: battery {current:.1f} A at {voltage:.1f} V, " \
                   f"desired {desired:.1f} A"
            ctx.status.ok(text)
            if self._problem:
                ctx.log.info("inputs valid again")
                self._problem = ""
        else:
            self.controller.reset()
            if problem.startswith("waiting"):
                ctx.status.warning(f"no request: {problem}")
            else:
                ctx.status.error(f"no request: {problem}")
                if problem != self._problem:
                    ctx.log.warning("%s; the request is revoked", problem)
                self._problem = problem
        if request != self._sent:
            self._sent = request
            ctx.emit(ctx.message(self.config.output, request))

    def _desired(self) -> tuple[float | None, str | None]:
        """The desired current (A), or why there is none this cycle."""
        v = self._values
        waiting = [t for t in TOPICS if t not in self._seen]
        if waiting:
            return None, f"waiting for {', '.join(waiting)}"
        bad = [t for t in TOPICS if v[t] is None]
        voltage, soc = v["battery_voltage"], v["soc"]
        if voltage is not None and voltage <= 0:
            bad.append(f"battery_voltage {voltage:g} V")
        if soc is not None and not 0 <= soc <= 100:
            bad.append(f"soc {soc:g} %")
        if bad:
            return None, f"invalid input {', '.join(bad)}"
        try:
            result = self._formula.evaluate({"SOC": soc})
        except EvaluationError as exc:
            return None, f"desired_current failed: {exc}"
        if isinstance(result, bool) or not isinstance(result, int | float):
            return None, f"desired_current gave {result!r}, not a number"
        return max(0.0, float(result)), None
