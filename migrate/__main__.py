"""`python -m migrate CONFIG.INI [--output DIR] [--force]`: import-ini without the CLI."""

import sys

from migrate.cli import run

sys.exit(run())
