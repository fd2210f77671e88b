"""Fuzzing what comes in from outside: mutated flow and site files through `validate`,
mutated device replies and broker payloads through their decoders. Seeded, so a failure
names the case that reproduces it (`testkit.fuzz.case_input(kind, seed, index)`);
`bench/fuzz.py --cases N` runs thousands."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from testkit.fuzz import (
    CASE_LIMIT_S,
    ROOT,
    case_input,
    check_validate,
    fuzz_files,
    fuzz_payloads,
    validate_in_process,
)

SEED = 2026
FILE_CASES = 500
PAYLOAD_CASES = 1000


def test_mutated_flow_and_site_files_are_accepted_or_rejected_at_a_line(
        tmp_path: Path) -> None:
    report = fuzz_files(tmp_path, seed=SEED, cases=FILE_CASES)
    assert report.failures == [], "\n".join([report.summary(), *report.failures])
    assert report.cases == FILE_CASES
    assert report.rejected > FILE_CASES // 2 and report.accepted > 0  # it did mutate
    assert report.max_s < CASE_LIMIT_S


def test_mutated_payloads_fail_only_as_decode_failures() -> None:
    report = fuzz_payloads(seed=SEED, cases=PAYLOAD_CASES)
    assert report.failures == [], "\n".join([report.summary(), *report.failures])
    assert report.rejected > 0 and report.accepted > 0
    assert report.max_s < CASE_LIMIT_S


@pytest.mark.parametrize("index", range(6))
def test_validate_as_a_process_exits_0_or_1_without_a_traceback(
        index: int, tmp_path: Path) -> None:
    name, data = case_input("file", SEED, index * 37)
    path = tmp_path / f"case-{name}"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, str(ROOT / "esess-flowctl"), "validate", str(path)],
                          capture_output=True, text=True, errors="replace", timeout=30,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    assert check_validate(done.returncode, done.stderr) is None, done.stderr
    code, _, _ = validate_in_process(path)
    assert code == done.returncode


# Inputs the fuzzer once found failing, kept as plain reproducers.
FOUND = {
    "type-from-a-null-var": """\
        id: a
        vars:
          kind: {type: string, default: null}
        nodes:
          - {id: t, type: "${kind}"}
    """,
    "type-from-a-number-var": """\
        id: a
        vars:
          kind: {type: integer, default: 5}
        nodes:
          - {id: t, type: "${kind}"}
    """,
    "timestamp-tag-on-a-non-date": """\
        id: a
        nodes:
          - {id: t, type: timer, interval_ms: 100, value: !!timestamp x}
    """,
    "control-character": "id: a\nnodes:\n  - {id: t, type: timer, interval_ms: 100}\x1a\n",
    "nul-byte": "id: a\nnodes: []\n\x00\n",
    "use-of-a-name-too-long-for-a-file": "flows:\n  - use: " + "x" * 300 + "\n",
}


@pytest.mark.parametrize("text", FOUND.values(), ids=FOUND.keys())
def test_once_found_by_the_fuzzer(text: str, tmp_path: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    code, _, err = validate_in_process(path)
    assert check_validate(code, err) is None, err
    assert code == 1
