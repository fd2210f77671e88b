"""Display texts of Venus OS values: units, decimals, invalid as `---`.

    render(123.42, "W")  -> "123.4W"
    render(51.23, "V")   -> "51.2V"
    render(85, "%")      -> "85%"       (integers as they are, floats with the unit's decimals)
    render(None, "W")    -> "---"
    render(0xA144, "", path="/ProductId") -> "0xA144"
"""

from __future__ import annotations

from flowengine.model import JsonValue

__all__ = ["INVALID_TEXT", "UNITS", "render"]

INVALID_TEXT = "---"

UNITS: dict[str, int] = {
    # unit -> decimals shown
    "W": 1, "V": 1, "A": 1, "%": 0, "kWh": 2, "Wh": 0, "Ah": 1, "°C": 1, "Hz": 2,
    "s": 0, "hPa": 0, "VA": 1, "": -1,
}
"""Known units and their decimals (-1: as the value comes)."""


def render(value: JsonValue, unit: str = "", *, path: str = "") -> str:
    """The text a GUI shows for `value` at `path`, with its unit."""
    if value is None:
        return INVALID_TEXT
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        if path == "/ProductId" and isinstance(value, int):
            return f"0x{value:X}"
        if isinstance(value, int):
            return f"{value}{unit}"
        decimals = UNITS.get(unit, -1)
        return (f"{value:.{decimals}f}" if decimals >= 0 else f"{value:g}") + unit
    if isinstance(value, str):
        return value
    return str(value)
