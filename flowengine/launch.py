"""How `esess-flowctl run` puts itself under the guardian (on a GX by default).

`run` replaces its own process by `flowengine.guardian` before it reads the files; the
guardian starts the same command line again as its child with `--no-guardian`, and
that child is the runtime. What the guardian needs of the site file (state_dir, the
heartbeat timeout, the log level) is read here as far as the file can be read at all:
its errors are the runtime's to report, with the guardian's backoff between tries.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from flowengine.errors import ConfigErrors
from flowengine.loader import is_site_file
from flowengine.yamlsrc import read_yaml

__all__ = ["MAX_GUARDIAN_TIMEOUT_S", "MIN_GUARDIAN_TIMEOUT_S", "exec_guardian",
           "guardian_settings", "guardian_timeout", "on_gx", "without_guardian_flags"]

REPO = Path(__file__).resolve().parent.parent
MIN_GUARDIAN_TIMEOUT_S, MAX_GUARDIAN_TIMEOUT_S = 2.0, 600.0  # as the site schema says


def guardian_settings(file: str) -> dict[str, Any]:
    """state_dir, guardian timeout_s and log level of a site file, as far as it can be
    read (the runtime reports what is wrong with it); defaults otherwise."""
    try:
        data, _ = read_yaml(file)
    except (ConfigErrors, OSError):
        data = None
    if not is_site_file(data):
        return {}
    out: dict[str, Any] = {"state_dir": "/data/es-ESS-flows/state"}
    for key, value, kind in (("state_dir", data.get("state_dir"), str),
                             ("timeout_s", _get(data, "guardian", "timeout_s"), float),
                             ("level", _get(data, "log", "level"), str)):
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            with contextlib.suppress(ValueError):
                out[key] = kind(value)
    if not MIN_GUARDIAN_TIMEOUT_S <= out.get("timeout_s", 10.0) <= MAX_GUARDIAN_TIMEOUT_S:
        del out["timeout_s"]  # out of range: the runtime's check of the file says so
    return out


def guardian_timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not MIN_GUARDIAN_TIMEOUT_S <= seconds <= MAX_GUARDIAN_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"{seconds:g} s: use between {MIN_GUARDIAN_TIMEOUT_S:g} and "
            f"{MAX_GUARDIAN_TIMEOUT_S:g} s (the heartbeat comes every second)")
    return seconds


def _get(data: dict[str, Any], section: str, key: str) -> Any:
    part = data.get(section)
    return part.get(key) if isinstance(part, dict) else None


def on_gx() -> bool:
    """True on Venus OS (where the guardian is on by default)."""
    return Path("/opt/victronenergy").is_dir()


def exec_guardian(argv: Sequence[str], *, state_dir: str | None, timeout_s: float,
                  log_level: str) -> NoReturn:
    """Replace this process by the guardian, which runs this command line again as its
    child (with --no-guardian). The process id stays, so the service's signals reach it."""
    child = [sys.executable, str(REPO / "esess-flowctl"), *without_guardian_flags(argv)]
    # -S: no site-packages (the guardian needs none), a few MB less resident memory
    command = [sys.executable, "-S", "-m", "flowengine.guardian", "--timeout", f"{timeout_s:g}",
               "--log-level", log_level]
    if state_dir:
        command += ["--state-dir", state_dir]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [*command, "--", *child], env)


def without_guardian_flags(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--guardian", "--no-guardian"):
            continue
        if arg == "--guardian-timeout":
            skip = True
            continue
        if arg.startswith("--guardian-timeout="):
            continue
        out.append(arg)
    index = out.index("run") if "run" in out else 0
    return [*out[:index + 1], "--no-guardian", *out[index + 1:]]
