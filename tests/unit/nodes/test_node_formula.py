"""formula: evaluation, invalid inputs, the sandbox, run-time errors, name checks."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

import pytest

from flowengine.errors import ConfigErrors
from flowengine.loader import Secrets, load_flow
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.testing import NodeHarness

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
        async with harness(tmp_path, "expression: 10**10**10 + x") as h:
            await h.send("x", 1)
            assert h.values() == [None]
            assert h.node_status.level == "warning"
            assert "exponent" in h.node_status.text
    began = time.monotonic()
    asyncio.run(scenario())
    assert evaluate(tmp_path, "(9**999)**999", x=1) == [None]
    assert time.monotonic() - began < 5


def test_formula_refuses_results_beyond_1e15(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "expression: x * 1e10") as h:
            await h.send("x", 1e6)
            assert h.values() == [None]
            assert "beyond" in h.node_status.text
    asyncio.run(scenario())


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
