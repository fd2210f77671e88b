"""Import an es-ESS config.ini into a site file (`esess-flowctl import-ini`)."""

from migrate.ini import IniError, IniFile, read_ini
from migrate.site import Imported, convert_ini

__all__ = ["Imported", "IniError", "IniFile", "convert_ini", "read_ini"]
