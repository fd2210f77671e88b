"""`esess-flowctl import-ini CONFIG.INI`: write site.yaml and secrets.yaml from es-ESS's
config.ini, print what was not carried over, and check the result with `validate`.

Exit codes: 0 written, nothing needs your check (notes only); 1 the ini could not be
read or parsed (file:line), or an output file exists (use --force), or could not be
written; 2 written, but the report lists something to check (a key not imported, a
value that meant something else in es-ESS) or the written site does not validate.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the converter is imported by main(), not by the parser
    from migrate.site import Imported

__all__ = ["configure", "main"]

# on a GX, site.yaml lives in the install's own directory (the service runs
# `<install>/esess-flowctl run <install>/site.yaml`); /data/es-ESS-flows if that is unknown
INSTALL_DIR = Path(__file__).resolve().parent.parent
GX_DIR = str(INSTALL_DIR) if (INSTALL_DIR / "esess-flowctl").is_file() else "/data/es-ESS-flows"
EXIT_OK, EXIT_FAILED, EXIT_CHECK = 0, 1, 2


def configure(parser: argparse.ArgumentParser) -> None:
    """Add import-ini's arguments to `parser` (a subcommand parser of esess-flowctl)."""
    parser.description = ("Convert an es-ESS config.ini into site.yaml (and secrets.yaml, "
                          "readable only by its owner) in DIR, then validate it. Prints a "
                          "report of every key not imported or imported differently, with "
                          "its line. Exit 0: done; 1: the ini could not be read, or a file "
                          "exists; 2: done, but check the report.")
    parser.add_argument("ini", metavar="CONFIG.INI", help="es-ESS's config.ini")
    parser.add_argument("--output", "-o", metavar="DIR", default=None,
                        help="where to write site.yaml and secrets.yaml (default on a GX: "
                             f"this install's directory, {GX_DIR}; else the current "
                             "directory); state_dir is DIR/state")
    parser.add_argument("--force", action="store_true",
                        help="overwrite an existing site.yaml / secrets.yaml")
    parser.add_argument("--no-validate", dest="validate", action="store_false",
                        help="do not run `validate` on the written site file")


def main(args: argparse.Namespace) -> int:
    from migrate.ini import IniError, read_ini
    from migrate.site import convert_ini

    out_dir = Path(args.output if args.output else (GX_DIR if _on_gx() else "."))
    try:
        ini = read_ini(args.ini)
    except IniError as exc:
        print(f"import-ini: {exc}", file=sys.stderr)
        return EXIT_FAILED
    imported = convert_ini(ini, Path(args.ini).name,
                           state_dir=str(out_dir.resolve() / "state"))
    site_file, secrets_file = out_dir / "site.yaml", out_dir / "secrets.yaml"
    targets = [site_file] + ([secrets_file] if imported.secrets else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        print(f"import-ini: {', '.join(existing)} exists; nothing written (--force "
              "overwrites)", file=sys.stderr)
        return EXIT_FAILED
    try:
        write(imported, site_file, secrets_file, source=args.ini)
    except OSError as exc:
        print(f"import-ini: cannot write to {out_dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_FAILED
    lines = imported.report.lines()
    for line in lines:
        print(line)
    written = [str(site_file)] + ([str(secrets_file)] if imported.secrets else [])
    on = sum(1 for e in imported.entries if e.enabled)
    print(f"wrote {' and '.join(written)}: {on} flow(s) on, "
          f"{len(imported.entries) - on} commented out; {len(lines)} report item(s), "
          f"{sum(f.attention for f in imported.report.findings)} to check")
    valid = True
    if getattr(args, "validate", True):
        valid = _validate(site_file)
    return EXIT_CHECK if imported.report.needs_attention or not valid else EXIT_OK


def write(imported: Imported, site_file: Path, secrets_file: Path, *, source: str) -> None:
    from migrate.site import render_secrets, render_site

    """Write both files atomically; the secrets file is mode 0600 from its first byte."""
    from flowengine.atomic import write_atomically

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = imported.report.lines()
    header = [
        "# yaml-language-server: $schema=schemas/site.schema.json",
        f"# es-ESS flows site file, imported from {Path(source).name} by "
        f"`esess-flowctl import-ini` on {when}.",
        "# Check it with: esess-flowctl validate site.yaml   (docs/import-ini.md)",
    ]
    if lines:
        header.append("#")
        header.append(f"# Import report ({len(lines)} item(s); `check`: look at it, `note`: "
                      "a known difference):")
        header.extend(f"#   {line}" for line in lines)
    header.append("")
    if imported.secrets:
        write_atomically(secrets_file, render_secrets(imported.secrets), mode=0o600)
    write_atomically(site_file, render_site(imported, header))


def _validate(site_file: Path) -> bool:
    """Run the project's own validation on the written file; print its verdict."""
    from flowengine.preflight import load_files
    from flowengine.registry import Registry

    loaded = load_files([str(site_file)], Registry.default(), variables={}, for_run=False)
    for warning in loaded.warnings:
        print(warning)
    if loaded.errors:
        for error in sorted(loaded.errors, key=lambda e: e.sort_key()):
            print(error)
        print(f"{site_file} does not validate yet ({len(loaded.errors)} error(s)): "
              "fix them, then run `esess-flowctl validate`")
        return False
    print(f"{site_file} validates ({len(loaded.plans)} flow(s))")
    return True


def _on_gx() -> bool:
    return Path("/opt/victronenergy").is_dir()


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrate")
    configure(parser)
    return main(parser.parse_args(argv))
