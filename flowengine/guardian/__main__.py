"""python3 -m flowengine.guardian [options] -- COMMAND...: run COMMAND under the guardian."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from flowengine.guardian.supervisor import Guardian
from flowengine.log import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m flowengine.guardian",
        description="Start the runtime as a child; apply its registered safe actions when "
                    "it dies or hangs, and start it again with backoff.")
    parser.add_argument("--state-dir", type=Path,
                        help="where pending safe actions are kept across a power loss")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="no heartbeat for this long: the runtime hangs (default 10)")
    parser.add_argument("--start-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="the runtime must say hello within this time (default 120)")
    parser.add_argument("--stop-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="after SIGTERM, wait this long for the runtime (default 10)")
    parser.add_argument("--pending-wait", type=float, default=60.0, metavar="SECONDS",
                        help="at start, keep trying pending actions this long (default 60)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- and the runtime's command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the runtime's command after --")
    try:
        configure_logging(args.log_level)
    except ValueError:  # a wrong level in the site file must not keep the guardian down
        configure_logging("INFO")
    guardian = Guardian(command, state_dir=args.state_dir, timeout_s=args.timeout,
                        start_timeout_s=args.start_timeout, stop_timeout_s=args.stop_timeout,
                        pending_wait_s=args.pending_wait)
    return guardian.run()


if __name__ == "__main__":
    sys.exit(main())
