"""Import an es-ESS config.ini into a site file (`esess-flowctl import-ini`).

The package imports nothing by itself: `esess-flowctl` builds its parser from
`migrate.cli` on every start (also `run` on a GX), and the converter is loaded only
when import-ini runs. Use `migrate.ini.read_ini` and `migrate.site.convert_ini`.
"""
