"""The tables of docs/flows/fronius-wattpilot.md are the code's, not typed copies.

Each table is found by its header row. The modelStatus table must equal MODEL_STATUS,
the err table what `vrm_status` shows, the allowance table what the policy decides,
and the options table the vars of flows/fronius-wattpilot.yaml with their defaults.
"""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import ROOT

from nodes.energy.wattpilot_policy import AutoPolicy, Wish
from nodes.energy.wattpilot_vrm import MODEL_STATUS, vrm_status

PAGE = ROOT / "docs" / "flows" / "fronius-wattpilot.md"
FLOW = ROOT / "flows" / "fronius-wattpilot.yaml"

VRM_NAMES = {0: "disconnected", 1: "connected", 2: "charging", 3: "charged",
             4: "waiting for sun", 5: "waiting for RFID", 6: "waiting for start",
             7: "low SoC", 8: "ground test error", 9: "welded contacts error",
             10: "CP input test error", 11: "residual current detected",
             12: "undervoltage detected", 13: "overvoltage detected",
             14: "overheating detected", 20: "charging limit", 21: "start charging",
             22: "switching to three phase", 23: "switching to single phase",
             24: "stop charging"}
"""gui-v2's Evcs_Status, as venus-dbus.md lists it"""


def table(header: str) -> list[list[str]]:
    """The cells of the rows of the table whose header row is `header`."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == header]
    assert len(starts) == 1, f"the page has {len(starts)} tables headed {header!r}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"the table headed {header!r} is empty"
    return rows


def vrm_cell(cell: str) -> int:
    """`2 charging (...)` -> 2, after checking the name is the VRM one."""
    match = re.match(r"(\d+) ([^(]+?)(?: \(.*\))?$", cell)
    assert match, f"not a VRM status: {cell!r}"
    code = int(match.group(1))
    assert match.group(2) == VRM_NAMES[code], f"{cell!r}: {code} is {VRM_NAMES[code]!r}"
    return code


def test_the_model_status_table_is_model_status() -> None:
    rows = table("| modelStatus | name | /Status |")
    documented = {int(n): (name.strip("`"), vrm_cell(status)) for n, name, status in rows}
    assert documented == MODEL_STATUS
    assert [int(r[0]) for r in rows] == sorted(MODEL_STATUS), "rows in order, once each"


def test_the_err_table_is_what_vrm_shows() -> None:
    rows = table("| err | name | /Status |")
    documented = {int(err): vrm_cell(status) for err, _, status in rows}
    for err, code in documented.items():
        assert vrm_status(car=3, model_status=26, err=err, power_w=0,
                          phases_wanted=None) == code, err
    for err in set(range(32)) - set(documented):  # the rest show as the modelStatus says
        assert vrm_status(car=3, model_status=26, err=err, power_w=0,
                          phases_wanted=None) == MODEL_STATUS[26][1], err


def test_the_status_table_names_every_status_the_flow_sets() -> None:
    rows = table("| /Status | when |")
    listed = {int(n) for first, _ in rows for n in re.findall(r"\d+", first)}
    used = {status for _, status in MODEL_STATUS.values()} | {0, 3, 4, 21, 22, 23, 24}
    used |= {vrm_status(car=3, model_status=26, err=e, power_w=0, phases_wanted=None)
             for e in range(32)}
    assert listed == used
    for first, _ in rows:
        if re.fullmatch(r"\d+ .+", first):
            vrm_cell(first)


ALLOWANCE = re.compile(r"(\d+) W")
CHARGES = re.compile(r"(one phase|three phases) at (\d+) A")


def test_the_allowance_table_is_what_the_policy_decides() -> None:
    rows = table("| allowance | amps | charges on |")
    assert len(rows) >= 6
    for allowance, amps, charges in rows:
        watts = ALLOWANCE.fullmatch(allowance)
        assert watts, allowance
        wish = Wish(allowance_w=float(watts.group(1)), voltage_v=230, max_a=16)
        policy = AutoPolicy(min_on_off_s=600, min_phase_switch_s=300)
        total = min(int(wish.allowance_w or 0) // 230, 3 * wish.max_a)  # rounded down, capped
        assert amps == f"{total} A", allowance
        assert policy.target(wish)[0] == (total if total >= wish.min_a else 0), allowance
        plan = policy.decide(wish, 0)
        if charges.startswith("nothing"):
            assert not plan.charge, allowance
            assert charges == f"nothing ({plan.status} {VRM_NAMES[plan.status or 0]})"
        else:
            match = CHARGES.fullmatch(charges)
            assert match, charges
            phases = 1 if match.group(1) == "one phase" else 3
            assert (plan.charge, plan.phases, plan.amps) == (True, phases,
                                                             int(match.group(2))), allowance


def flow_vars() -> dict[str, object]:
    declared = yaml.safe_load(FLOW.read_text(encoding="utf-8"))["vars"]
    assert isinstance(declared, dict)
    return {name: spec.get("default", "required") for name, spec in declared.items()}


def test_the_options_table_lists_every_var_with_its_default() -> None:
    rows = table("| var | meaning | type | default | es-ESS key |")
    documented = {}
    for var, _, _, default, _ in rows:
        name = var.strip("`")
        documented[name] = "required" if default == "required" else \
            yaml.safe_load(default.strip("`"))
    assert documented == flow_vars()


@pytest.mark.parametrize("key", ["VRMInstanceID", "VRMInstanceID_OverheadRequest",
                                 "MinPhaseSwitchSeconds", "MinOnOffSeconds",
                                 "OverheadPriority", "ResetChargedEnergyCounter", "Position",
                                 "Host", "Password", "HibernateMode"])
def test_every_es_ess_key_has_its_var(key: str) -> None:
    rows = table("| var | meaning | type | default | es-ESS key |")
    assert [r[0] for r in rows if r[4] == f"`{key}`"], f"no var for es-ESS {key}"
