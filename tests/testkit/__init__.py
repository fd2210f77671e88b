"""Helpers shared by test packages: a real mosquitto, D-Bus client helpers, and running
`esess-flowctl` on a site file. `tests/` is on sys.path (its conftest), so this imports as
`testkit`."""
