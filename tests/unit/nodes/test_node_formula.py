"""formula: evaluation, invalid inputs, the sandbox, run-time errors, name checks."""

from __future__ import annotations

import asyncio
import math
import textwrap
import time
from pathlib import Path

import pytest

from flowengine.errors import ConfigErrors
from flowengine.loader import Secrets, load_flow
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.testing import NodeHarness
from nodes.logic.expression import EvaluationError, Expression

REG = Registry()
REG.add_modules(["nodes.logic.formula", "nodes.logic.join"])


def harness(tmp_path: Path, options: str) -> NodeHarness:
    node = "id: calc\ntype: formula\n" + textwrap.dedent(options).strip()
    return NodeHarness(node, registry=REG, tmp_dir=tmp_path)


def evaluate(tmp_path: Path, expression: str, **inputs: object) -> list[object]:
    """Send the inputs one by one; the values emitted after the last one."""
    async def scenario() -> list[object]:
        async with harness(tmp_path, f"expression: {expression!r}") as h:
            for topic, value in inputs.items():
                await h.send(topic, value)
            return h.values()[-1:]
    return asyncio.run(scenario())


def plan_errors(tmp_path: Path, flow: str) -> str:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(flow).lstrip(), encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        plan_flow(load_flow(path, secrets=Secrets(None, {})), REG)
    return str(info.value)


def expression_error(tmp_path: Path, expression: str) -> str:
    return plan_errors(tmp_path, f"""
        id: calc
        nodes:
          - id: calc
            type: formula
            expression: {expression}
        """)


# -- evaluation -------------------------------------------------------------------------

def test_formula_evaluates_on_each_input(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: 5000 - 40 * soc") as h:
            await h.send("soc", 50)
            await h.send("soc", 100)
            assert h.values() == [3000, 1000]
            assert h.messages()[0].topic == "value"
            assert h.node_status.level == "ok"
            assert h.node_status.text == "1000"
    asyncio.run(scenario())


@pytest.mark.parametrize(("expression", "soc", "expected"), [
    ("5000 - 40 * SOC", 50, 3000),
    ("max(100 - SOC, 30)", 90, 30),
    ("max(100 - SOC, 30)", 20, 80),
    ("3000/(min(SOC,99)-100)+3000", 50, 2940.0),
    ("3000/(min(SOC,99)-100)+3000", 100, 0.0),
])
def test_formula_evaluates_es_ess_examples(tmp_path: Path, expression: str, soc: int,
                                           expected: float) -> None:
    assert evaluate(tmp_path, expression, SOC=soc) == [expected]


def test_formula_offers_clamp_floor_ceil_sqrt_and_conditions(tmp_path: Path) -> None:
    assert evaluate(tmp_path, "clamp(x, 0, 10)", x=14) == [10]
    assert evaluate(tmp_path, "floor(x) + ceil(x)", x=1.5) == [3]
    assert evaluate(tmp_path, "sqrt(x)", x=16) == [4.0]
    assert evaluate(tmp_path, "'on' if x > 3 and not x > 5 else 'off'", x=4) == ["on"]


def test_formula_uses_the_latest_value_of_each_name(tmp_path: Path) -> None:
    assert evaluate(tmp_path, "a - b", a=10, b=3) == [7]


def test_formula_merges_mapping_values_into_names(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: soc * power + joined['soc']") as h:
            await h.send("joined", {"soc": 2, "power": 10, "other": 1})
            assert h.values() == [22]
    asyncio.run(scenario())


def test_formula_rounds_to_decimals(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: x / 3\ndecimals: 2") as h:
            await h.send("x", 10)
            async with harness(tmp_path / "..", "expression: x / 3\ndecimals: 0") as whole:
                await whole.send("x", 10)
                assert whole.values() == [3]
                assert type(whole.values()[0]) is int
            assert h.values() == [3.33]
    asyncio.run(scenario())


# -- an input that changes no name ------------------------------------------------------

def _counting_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = Expression.evaluate

    def counted(self: Expression, values: object) -> object:
        calls[0] += 1
        return original(self, values)  # type: ignore[arg-type]
    monkeypatch.setattr(Expression, "evaluate", counted)
    return calls


def test_formula_gives_the_same_result_again_without_computing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each input still emits (a Shelly poll's other topics re-send the phase power),
    but the expression runs only when a name it uses has a new value."""
    calls = _counting_evaluations(monkeypatch)

    async def scenario() -> None:
        async with harness(tmp_path, "expression: power\ninputs: [power]") as h:
            for topic, value in [("power", 230.5), ("voltage", 231), ("current", 1.0),
                                 ("power", 230.5), ("power", 231.0)]:
                await h.send(topic, value)
            assert h.values() == [230.5, 230.5, 230.5, 230.5, 231.0]
            assert calls[0] == 2
            assert h.node_status.text == "231.0"
    asyncio.run(scenario())


@pytest.mark.parametrize(("expression", "first", "then", "shown"), [
    ("'%s' % x", 0, 0.0, ["0", "0.0"]),  # an int and a float are not the same value
    ("'%s' % x", 0.0, -0.0, ["0.0", "-0.0"]),
    ("'%s' % x", True, 1, ["True", "1"]),
    ("'%s' % x['a']", {"a": 1}, {"a": 1.0}, ["1", "1.0"]),
    ("'%s' % x[1]", [1, 2], [1, 2.0], ["2", "2.0"]),
    ("'%s' % x", math.nan, math.nan, ["nan", "nan"]),
])
def test_formula_computes_again_for_a_value_that_only_looks_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expression: str, first: object,
        then: object, shown: list[str]) -> None:
    calls = _counting_evaluations(monkeypatch)

    async def scenario() -> None:
        async with harness(tmp_path, f"expression: {expression!r}") as h:
            await h.send("x", first)  # type: ignore[arg-type]
            await h.send("x", then)  # type: ignore[arg-type]
            assert h.values() == shown
            assert calls[0] == 2
    asyncio.run(scenario())


def test_formula_computes_again_for_a_mapping_changed_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_evaluations(monkeypatch)

    async def scenario() -> None:
        async with harness(tmp_path, "expression: joined['p'][0] * 2") as h:
            inner = [50]
            joined: dict[str, object] = {"p": inner}
            await h.send("joined", joined)  # type: ignore[arg-type]
            inner[0] = 60  # the same objects again, changed in place
            await h.send("joined", joined)  # type: ignore[arg-type]
            await h.send("joined", {"p": inner})  # type: ignore[arg-type]
            await h.send("joined", {"p": [60]})  # type: ignore[arg-type]  # equal, new
            await h.send("other", 1)
            assert h.values() == [100, 120, 120, 120, 120]
            assert calls[0] == 3
    asyncio.run(scenario())


def test_formula_repeats_an_invalid_outcome_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    calls = _counting_evaluations(monkeypatch)

    async def scenario() -> None:
        async with harness(tmp_path, "expression: 100 / x\nrequire_all: false") as h:
            await h.send("y", 1)  # x missing: None, a TypeError
            await h.send("x", 0)
            await h.send("y", 2)
            await h.send("y", 3)
            assert h.values() == [None, None, None, None]
            assert "division by zero" in h.node_status.text
            assert calls[0] == 2
            await h.send("x", 5)
            assert h.values()[-1] == 20.0
            assert h.node_status.level == "ok"
    asyncio.run(scenario())
    warnings = [r for r in caplog.records if "division by zero" in r.getMessage()]
    assert len(warnings) == 1


# -- invalid inputs --------------------------------------------------------------------

def test_formula_emits_invalid_while_a_name_has_no_value(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: a + b") as h:
            await h.send("a", 1)
            assert h.values() == [None]
            assert h.node_status.text == "waiting for 'b'"
    asyncio.run(scenario())


def test_formula_emits_invalid_for_an_invalid_input_never_zero(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: 5000 - 40 * soc") as h:
            await h.send("soc", 50)
            await h.send("soc", None)
            await h.send("soc", 25)
            assert h.values() == [3000, None, 4000]
    asyncio.run(scenario())


def test_formula_skip_invalid_emits_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: a + b\nskip_invalid: true") as h:
            await h.send("a", 1)
            await h.send("b", None)
            assert h.values() == []
            assert h.node_status.level == "warning"
    asyncio.run(scenario())


def test_formula_without_require_all_sees_missing_names_as_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, """
            expression: a if b is None else a + b
            require_all: false
        """) as h:
            await h.send("a", 1)
            await h.send("b", 2)
            assert h.values() == [1, 3]
    asyncio.run(scenario())


# -- run-time errors -------------------------------------------------------------------

def test_formula_division_by_zero_gives_invalid_and_warning(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: 100 / x") as h:
            for _ in range(3):
                await h.send("x", 0)
            assert h.values() == [None, None, None]
            assert h.node_status.level == "warning"
            assert "division by zero" in h.node_status.text
            await h.send("x", 4)
            assert h.values()[-1] == 25.0
            assert h.node_status.level == "ok"
    asyncio.run(scenario())
    warnings = [r for r in caplog.records if "division by zero" in r.getMessage()]
    assert len(warnings) == 1


def test_formula_refuses_huge_powers_at_run_time_quickly(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: 10**x + 1") as h:
            await h.send("x", 10**10)
            assert h.values() == [None]
            assert h.node_status.level == "warning"
            assert h.node_status.text == "'**': the exponent 10000000000 is more than 10000"
    began = time.monotonic()
    asyncio.run(scenario())
    assert evaluate(tmp_path, "(x**999)**999", x=9) == [None]
    assert time.monotonic() - began < 5


def test_formula_refuses_results_beyond_1e15(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: x * 1e10") as h:
            await h.send("x", 1e6)
            assert h.values() == [None]
            assert "beyond" in h.node_status.text
    asyncio.run(scenario())


# -- bounded operations (issue 11): each fails quickly with a clear message ---------------

def quick_error(expression: str, **values: object) -> str:
    """The EvaluationError of evaluating `expression`, which must take under 10 ms."""
    compiled = Expression(expression)
    began = time.process_time()
    with pytest.raises(EvaluationError) as info:
        compiled.evaluate(values)
    assert time.process_time() - began < 0.010
    return str(info.value)


@pytest.mark.parametrize(("expression", "wording"), [
    ("round(x, -10**8)", "round: ndigits must be between -30 and 30, got -100000000"),
    ("round(1, -10**7)", "the expression always fails: round: ndigits must be between "
                         "-30 and 30, got -10000000"),
    ("'%0999999999d' % 1", "the expression always fails: '%': the width 999999999 is "
                           "more than 100"),
    ("'%099999999d' % 1", "the expression always fails: '%': the width 99999999 is more "
                          "than 100"),
    ("x + 10**10**10", "'10**10**10' always fails: '**': the exponent 10000000000 is "
                       "more than 10000"),
    ("x * ('a' * 10**9)", "''a' * 10**9' always fails: '*': the result would be "
                          "1000000000 characters long, more than 4096"),
    ("x + 1e999", "a number beyond ±2**1024 (about 1.8e308) is not allowed"),
    ("round(x, 1, 2)", "round takes 1 or 2 arguments, got 3"),
    ("clamp(x, 0)", "clamp takes 3 arguments, got 2"),
    ("min()", "min takes at least 1 argument, got 0"),
    ("sqrt()", "sqrt takes 1 argument, got 0"),
])
def test_formula_refuses_constant_parts_that_always_fail_at_validate(
        tmp_path: Path, expression: str, wording: str) -> None:
    began = time.process_time()
    text = expression_error(tmp_path, f'"{expression}"')
    assert f"flow.yaml:5:5: flow 'calc', node 'calc' (formula): {wording}" in text
    assert time.process_time() - began < 1


@pytest.mark.parametrize(("expression", "values", "wording"), [
    # the four expressions of the issue, their big numbers and format texts as inputs
    ("round(x, n)", {"x": 1, "n": -10**8},
     "round: ndigits must be between -30 and 30, got -100000000"),
    ("round(x, n)", {"x": 1.5, "n": 10**7},
     "round: ndigits must be between -30 and 30, got 10000000"),
    ("f % x", {"f": "%0999999999d", "x": 1}, "'%': the width 999999999 is more than 100"),
    ("f % x", {"f": "%099999999d", "x": 1}, "'%': the width 99999999 is more than 100"),
    ("f % x", {"f": "%.500f", "x": 1.0}, "'%': the precision 500 is more than 100"),
    ("f % x", {"f": "%*d", "x": 5}, "'%': the field at '%*d' is not supported"),
    ("f % x", {"f": "%(a)s" * 21, "x": {"a": 1}}, "'%': the format text has more than 20 "
                                                  "fields"),
    ("f % x", {"f": "%%" * 21, "x": 1}, "'%': the format text has more than 20 fields"),
    ("f % x", {"f": "%s %s", "x": 5}, "'%': the format text has more fields than values"),
    ("f % x", {"f": "%100s" * 20, "x": {}}, "'%': with a mapping, write fields with a key"),
    ("f % x", {"f": "%(a).100f" * 20, "x": {"a": 1e308}},
     "'%': the text could be 9240 characters long, more than 4096"),
    ("'%s' % x", {"x": [1, 2]}, "'%' formats numbers, texts, True, False and None, not a list"),
    ("'%d' % x", {"x": 2**2000}, "'%': an integer beyond ±2**1024"),
    ("'%(b)s' % x", {"x": {"a": 1}}, "'%': the mapping has no key 'b'"),
    # texts, lists and integers that operators make
    ("x * n", {"x": "ab", "n": 10**8}, "'*': the result would be 200000000 characters "
                                       "long, more than 4096"),
    ("n * x", {"x": [0], "n": 10**20}, "'*': the result would be 1e+20 items long"),
    ("x + x", {"x": "a" * 3000}, "'+': the result would be 6000 characters long"),
    ("x + x", {"x": [0] * 600}, "'+': the result would be 1200 items long, more than 1000"),
    # lists that are searched or gone through
    ("1 in x", {"x": [0] * 1001}, "'in' goes through at most 1000 items of a list, got 1001"),
    ("x < y", {"x": [0] * 2000, "y": [0] * 1500},
     "'<' goes through at most 1000 items of a list, got 1500"),
    ("max(x)", {"x": list(range(1001))}, "max goes through at most 1000 items, got a list "
                                         "of 1001"),
    ("min(x)", {"x": "a" * 5000}, "min goes through at most 1000 items, got a text of 5000"),
    ("min(x, x)", {"x": [0] * 1001}, "min goes through at most 1000 items, got a list of 1001"),
    ("clamp(x, 0, 1)", {"x": [0] * 1001}, "clamp goes through at most 1000 items, got a list"),
    ("x == y", {"x": dict.fromkeys(range(1001), 0), "y": dict.fromkeys(range(1001), 0)},
     "'==' goes through at most 1000 items of a mapping, got 1001"),
    ("x * x", {"x": 2**600}, "'*': the result would be beyond ±2**1024"),
    ("x ** 2000", {"x": 2}, "'**': the result would be beyond ±2**1024"),
    ("x // 3", {"x": 10**4000}, "'//': an integer beyond ±2**1024 (about 1.8e308) is not "
                                "allowed"),
    ("x % 3", {"x": -10**4000}, "'%': an integer beyond ±2**1024"),
    ("x ** 0.5", {"x": -4}, "'**': a negative number to a fractional power is not a real "
                            "number"),
    ("x ** 400", {"x": 10.0}, "'**': the result is too large for a float"),
    # functions given the wrong types
    ("sqrt(x)", {"x": -1}, "sqrt: the number is negative (-1)"),
    ("floor(x)", {"x": "a"}, "floor: must be real number, not str"),
    ("floor(x)", {"x": float("inf")}, "floor: cannot convert float infinity to integer"),
    ("round(x, n)", {"x": 1.5, "n": 0.5}, "round: 'float' object cannot be interpreted as "
                                          "an integer"),
    ("min(x)", {"x": []}, "min: min() arg is an empty sequence"),
    ("clamp(x, 0, 1)", {"x": "a"}, "clamp: '<' not supported between instances"),
    ("abs(x)", {"x": None}, "abs: bad operand type for abs(): 'NoneType'"),
    # indexes
    ("x['soc']", {"x": {}}, "the mapping has no key 'soc'"),
    ("x[3]", {"x": [1]}, "the index 3 is beyond the end of a list of length 1"),
    ("x[0]", {"x": None}, "None cannot be indexed with 0"),
])
def test_formula_operations_are_bounded_at_run_time(expression: str,
                                                    values: dict[str, object],
                                                    wording: str) -> None:
    assert wording in quick_error(expression, **values)


def test_formula_run_time_bounds_reach_the_status(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: round(x, n)") as h:
            await h.send("x", 1)
            await h.send("n", -10**8)
            assert h.values() == [None, None]  # waiting for n, then the refusal
            assert h.node_status.level == "warning"
            assert h.node_status.text == \
                "round: ndigits must be between -30 and 30, got -100000000"
            await h.send("n", -1)
            assert h.values()[-1] == 0
    asyncio.run(scenario())


@pytest.mark.parametrize(("expression", "values", "expected"), [
    ("'%.1f kW' % (x / 1000)", {"x": 1234}, "1.2 kW"),
    ("'%(soc)d%% %(state)s' % j", {"j": {"soc": 55.4, "state": "ok"}}, "55% ok"),
    ("'[%5s]' % x", {"x": "ab"}, "[   ab]"),
    ("'%x' % x", {"x": 2**1000}, format(2**1000, "x")),
    ("'%100.100f' % x", {"x": 1e308}, format(1e308, "100.100f")),
    ("'-' * 4096", {}, "-" * 4096),
    ("max(prices) - min(prices)", {"prices": [0.1 * i for i in range(192)]}, 0.1 * 191),
    ("0.5 in x and x != y", {"x": [0.5] * 1000, "y": [0.5] * 5000}, True),
    ("max(x, y) == y and x != j", {"x": [1, 2], "y": [1, 3], "j": {"a": 1}}, True),
    ("x == y and 'ab' in x and x[4999] == 'b'", {"x": "ab" * 2500, "y": "ab" * 2500}, True),
    ("round(x, -30) == 0 and round(y, 30) == y", {"x": 10**29, "y": 0.1}, True),
    ("x ** 1023 > 0", {"x": 2}, True),
    ("floor(x) - 1 > 10**307", {"x": 1e308}, True),
])
def test_formula_bounds_leave_ordinary_use_alone(expression: str,
                                                 values: dict[str, object],
                                                 expected: object) -> None:
    assert Expression(expression).evaluate(values) == expected


def test_formula_decimals_beyond_30_are_refused_at_validate(tmp_path: Path) -> None:
    text = plan_errors(tmp_path, """
        id: calc
        nodes:
          - id: calc
            type: formula
            expression: x
            decimals: -100000000
        """)
    assert "decimals" in text and "-30" in text


# -- the sandbox -------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "wording"), [
    ("__import__('os')", "names starting with '_' are not allowed ('__import__')"),
    ("().__class__.__bases__", "attribute access ('.__bases__') is not allowed"),
    ("soc.__class__", "attribute access ('.__class__') is not allowed"),
    ("'[x for x in range(10**9)]'", "a list comprehension is not allowed"),
    ("'lambda: 1'", "lambda is not allowed"),
    ("'[1, 2]'", "a list literal is not allowed"),
    ("'{1: 2}'", "a dict literal is not allowed"),
    ("'f\"{soc}\"'", "an f-string is not allowed"),
    ("'(y := 3)'", "assignment (:=) is not allowed"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("'round(x, ndigits=2)'", "keyword arguments are not allowed"),
    ("'x << 2'", "the operator '<<' is not allowed"),
    ("'x[y]'", "an index must be a constant"),
    ("'import os'", "the expression must be one expression, found a statement (import)"),
    ("'1 +'", "the expression does not parse"),
    ("'min'", "'min' is a function"),
])
def test_formula_sandbox_refuses_at_validate(tmp_path: Path, expression: str,
                                             wording: str) -> None:
    text = expression_error(tmp_path, expression)
    assert f"flow.yaml:5:5: flow 'calc', node 'calc' (formula): {wording}" in text


def test_formula_sandbox_refuses_deep_nesting(tmp_path: Path) -> None:
    text = expression_error(tmp_path, "-" * 150 + "1")
    assert "nested more than 100 levels" in text


# -- names ---------------------------------------------------------------------------------

FLOW_WITH_JOIN = """
    id: limits
    nodes:
      - id: inputs
        type: join
        topics: [soc, power]
        to: calc
      - id: calc
        type: formula
        expression: 5000 - 40 * {name}
    """


def test_formula_unknown_name_is_reported_with_suggestion(tmp_path: Path) -> None:
    text = plan_errors(tmp_path, FLOW_WITH_JOIN.format(name="SOCC"))
    assert "flow.yaml:9:5: flow 'limits', node 'calc' (formula): " \
           "unknown name 'SOCC'; did you mean 'soc'?" in text


def test_formula_names_from_upstream_topics_pass(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(FLOW_WITH_JOIN.format(name="soc")), encoding="utf-8")
    plan_flow(load_flow(path, secrets=Secrets(None, {})), REG)


def test_formula_names_outside_inputs_are_refused(tmp_path: Path) -> None:
    text = plan_errors(tmp_path, """
        id: calc
        nodes:
          - id: calc
            type: formula
            expression: 5000 - 40 * sco
            inputs: [soc]
        """)
    assert "flow.yaml:5:5: flow 'calc', node 'calc' (formula): unknown name 'sco'; " \
           "did you mean 'soc'?" in text
