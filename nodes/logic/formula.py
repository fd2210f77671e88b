"""formula: evaluate an expression over the latest inputs and emit the result.

Each input message sets a name: a message with topic `soc` and value 50 makes `soc`
be 50. A message whose value is a mapping (from `join`) sets one name per key; the
mapping itself is a name too (its topic), for `joined['soc']`. After each input the
expression is evaluated with the latest value of every name and the result goes out
on the topic `output` (after an input that gave no name a new value, the last result
goes out again without being computed):

    - id: charge-limit
      type: formula
      expression: clamp(5000 - 40 * soc, 0, 5000)
      output: max_charge_w

An expression is a Python expression, restricted to: numbers, texts, True, False,
None, input names, `+ - * / // % **`, comparisons, `and or not`,
`a if cond else b`, `x['key']` and `x[0]` on mapping and list inputs, and the
functions min, max, abs, round, clamp(x, lo, hi), floor, ceil and sqrt. Anything else
(attributes, lambdas, comprehensions, list literals, ...) is refused by `validate`.
Flow vars are not names: write `${var}` and the loader puts its text in. Texts are
formatted with `%`: `'%.1f kW' % (power / 1000)`, `'%(soc)d%%' % joined`.

Every operation is bounded before it runs, so an evaluation takes microseconds: an
integer stays within ±2**1024 (about 1.8e308, as a float); a text that `+`, `*` or
`%` makes has at most 4096 characters; a list that they make, or a list or mapping
that `in`, a comparison, min, max or clamp goes through, at most 1000 items; a `%`
format has at most 20 fields, widths and precisions of at most 100 and no `*`; `round`
takes ndigits from -30 to 30. Beyond that is a run-time error, or a `validate` error
for a part without names (`round(x, -10**8)`, `'%099999999d' % 1`), which is computed
once up front.

Invalid stays invalid: while a name the expression uses has no value yet or is
invalid (None), the result is invalid (None); with `skip_invalid: true` nothing is
emitted instead. With `require_all: false` the expression is evaluated anyway, and a
missing name is None. A run-time error (division by zero, a result beyond 1e15 in
size) gives an invalid result and a warning status; each distinct error is logged once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flowengine.errors import ConfigError
from flowengine.model import JsonValue, Message, NodeSpec
from flowengine.node import Node, UpstreamInfo, node_type, option
from nodes.logic.bounded import MAX_NDIGITS
from nodes.logic.expression import EvaluationError, Expression, ExpressionError, suggest

__all__ = ["Formula", "FormulaConfig"]

_MAX_LOGGED = 50  # distinct errors remembered, so that each is logged once


@dataclass(frozen=True, kw_only=True)
class FormulaConfig:
    expression: str = option("the expression; its names are input topics",
                             example="5000 - 40 * soc", min_length=1)
    output: str = option("topic of the result", default="value")
    inputs: list[str] | None = option(
        "the names the expression may use (default: the topics wired into this node)",
        default=None, example=["soc"])
    require_all: bool = option(
        "the result is invalid while a name it uses has no valid value", default=True)
    skip_invalid: bool = option("emit nothing instead of an invalid (None) result",
                                default=False)
    decimals: int | None = option("round the result to this many decimals", default=None,
                                  example=0, minimum=-MAX_NDIGITS, maximum=MAX_NDIGITS)


@node_type("formula", config=FormulaConfig)
class Formula(Node[FormulaConfig]):
    """Evaluate an expression over the latest inputs; emit the result."""

    def __init__(self, config: FormulaConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        mark = self.mark_of("expression")
        try:
            self._expr = Expression(config.expression)
        except ExpressionError as exc:
            raise ConfigError(str(exc), mark=mark, hint=exc.hint) from None
        for name in self._expr.names:
            if config.inputs is not None and name not in config.inputs:
                raise ConfigError(f"unknown name '{name}'", mark=mark, hint=suggest(
                    name, config.inputs) or f"add '{name}' to inputs")
        self._wanted = frozenset(self._expr.names)
        self._latest: dict[str, JsonValue] = {}
        self._problem = ""  # why the last result was invalid; "" when it was valid
        self._had_result = False
        self._logged: set[str] = set()
        self._outcome: tuple[bool, JsonValue | str, bool] | None = None  # of the latest names

    @classmethod
    def output_topics(cls, config: FormulaConfig) -> frozenset[str]:
        return frozenset({config.output})

    def check(self, upstream: UpstreamInfo) -> list[ConfigError]:
        topics = upstream.topics
        if self.config.inputs is not None or topics is None or not upstream.sources:
            return []
        mark = self.mark_of("expression")
        return [ConfigError(f"unknown name '{name}'", mark=mark, hint=suggest(name, topics)
                            or "no node wired into this one emits it")
                for name in self._expr.names if name not in topics]

    def receive(self, port: str, msg: Message) -> bool:
        value, wanted, latest = msg.value, self._wanted, self._latest
        changed = False
        if isinstance(value, dict):
            for key, item in value.items():
                if key in wanted:
                    changed = changed or not _same(latest.get(key, _ABSENT), item)
                    latest[key] = item
        if msg.topic in wanted:
            changed = changed or not _same(latest.get(msg.topic, _ABSENT), value)
            latest[msg.topic] = value
        outcome = self._outcome
        if changed or outcome is None:  # else the same names give the same outcome
            outcome = self._outcome = self._evaluate()
        self._give(outcome)
        return True

    def _evaluate(self) -> tuple[bool, JsonValue | str, bool]:
        """(valid, the result or why it is invalid, whether that is an error)."""
        latest = self._latest
        if self.config.require_all:
            for name in self._expr.names:
                if latest.get(name) is None:
                    return False, (f"'{name}' is invalid" if name in latest
                                   else f"waiting for '{name}'"), False
        try:
            result = self._expr.evaluate(latest)
        except EvaluationError as exc:
            return False, str(exc), True
        if result is None:
            return False, "the result is None", False
        decimals = self.config.decimals
        if decimals is not None and isinstance(result, int | float) \
                and not isinstance(result, bool):
            result = round(result, decimals) if decimals > 0 else int(round(result, decimals))
        return True, result, False

    def _give(self, outcome: tuple[bool, JsonValue | str, bool]) -> None:
        """Emit a result (or None, or nothing) and show it."""
        valid, result, error = outcome
        if not valid:
            self._invalid(str(result), error=error)
            return
        ctx = self.ctx
        if self._problem:
            if self._had_result:
                ctx.log.info("result valid again")
            self._problem = ""
        self._had_result = True
        ctx.status.ok(_short(result))
        ctx.emit(ctx.message(self.config.output, result))

    def _invalid(self, problem: str, *, error: bool) -> None:
        ctx = self.ctx
        if error:
            if problem not in self._logged:
                if len(self._logged) >= _MAX_LOGGED:
                    self._logged.clear()
                self._logged.add(problem)
                ctx.log.warning("%s: %s; the result is invalid", self._expr.text, problem)
        elif not self._problem and self._had_result:
            ctx.log.info("result invalid: %s", problem)
        self._problem = problem
        ctx.status.warning(_short(problem, 120))
        if not self.config.skip_invalid:
            ctx.emit(ctx.message(self.config.output, None))


_ABSENT = object()


def _same(old: object, new: object) -> bool:
    """Whether a name keeps its value: equal, and of the same types and key order all the
    way down (1 and 1.0 are not the same: a result could keep the type). A mapping or
    list that is the very object kept is never the same: it may have changed in place."""
    if type(old) is not type(new):
        return False
    if old is new and isinstance(old, dict | list):
        return False
    if isinstance(old, dict):
        assert isinstance(new, dict)
        return len(old) == len(new) and all(
            a == b and _same(old[a], new[b]) for a, b in zip(old, new, strict=True))
    if isinstance(old, list):
        assert isinstance(new, list)
        return len(old) == len(new) and all(
            _same(a, b) for a, b in zip(old, new, strict=True))
    if isinstance(old, float):  # -0.0 == 0.0, but '%s' % x tells them apart
        return old == new and math.copysign(1.0, old) == math.copysign(1.0, new)
    return bool(old == new)


def _short(value: object, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
