"""Fuzz: thousands of mutated flow and site files through `validate`, and of mutated
device replies and broker payloads through their decoders (tests/faults/test_fuzz.py
runs a few hundred of each in CI; the mutations are in tests/testkit/fuzz.py).

    .venv/bin/python bench/fuzz.py [--cases 5000] [--seed 1] [--kind both] [--json]

Prints, per kind, the cases run, how many were accepted and rejected, the slowest case,
and every failure: a traceback or an exit code other than 0 or 1, an error line without
file:line, or a case over 5 s. Each failure names `case_input(kind, seed, index)`, which
gives its input back. Exits 1 when any case failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from testkit.fuzz import Report, fuzz_files, fuzz_payloads  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000, help="cases of each kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kind", choices=["files", "payloads", "both"], default="both")
    parser.add_argument("--show", type=int, default=20, help="failures shown per kind")
    parser.add_argument("--json", action="store_true", help="the counts as JSON")
    args = parser.parse_args()
    reports: list[tuple[Report, float]] = []
    if args.kind in ("files", "both"):
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="esess-fuzz-") as directory:
            report = fuzz_files(Path(directory), seed=args.seed, cases=args.cases)
        reports.append((report, time.monotonic() - began))
    if args.kind in ("payloads", "both"):
        began = time.monotonic()
        reports.append((fuzz_payloads(seed=args.seed, cases=args.cases),
                        time.monotonic() - began))
    if args.json:
        print(json.dumps([{"kind": r.kind, "cases": r.cases, "accepted": r.accepted,
                           "rejected": r.rejected, "max_s": round(r.max_s, 3),
                           "slowest": r.slowest, "failed": len(r.failures),
                           "total_s": round(total, 1), "failures": r.failures}
                          for r, total in reports], indent=2))
    else:
        for report, total in reports:
            print(f"{report.summary()}; {total:.1f} s in all")
            for problem, cases in report.groups().items():
                print(f"  {len(cases)} x {problem}")
                print(f"      e.g. {', '.join(cases[:3])}")
            for failure in report.failures[:args.show]:
                print("  " + failure.rstrip().replace("\n", "\n    ")[:2000])
            if len(report.failures) > args.show:
                print(f"  ... and {len(report.failures) - args.show} more")
    return 1 if any(r.failures for r, _ in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
