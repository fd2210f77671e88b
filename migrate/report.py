"""What the import did not carry over, or carried over differently, with its ini line.

Two kinds of finding: `attention` (something was not imported, or a value needs your
check: the import exits 2) and notes (a known difference, nothing to do: exit 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Finding", "Report"]


@dataclass(frozen=True)
class Finding:
    line: int | None
    section: str | None
    key: str | None
    text: str
    attention: bool

    def where(self) -> str:
        if self.section is None:
            return ""
        return f"[{self.section}] {self.key}" if self.key else f"[{self.section}]"


@dataclass
class Report:
    file: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, line: int | None, section: str | None, key: str | None, text: str, *,
            attention: bool) -> None:
        self.findings.append(Finding(line, section, key, text, attention))

    @property
    def needs_attention(self) -> bool:
        return any(f.attention for f in self.findings)

    def lines(self) -> list[str]:
        """One line per finding, by line in the ini: `config.ini:12: [Mqtt] Host: text`."""
        ordered = sorted(self.findings, key=lambda f: (f.line or 0, f.section or "",
                                                       f.key or ""))
        out = []
        for finding in ordered:
            at = f"{self.file}:{finding.line}" if finding.line else self.file
            mark = "check" if finding.attention else "note"
            where = finding.where()
            out.append(f"{at}: {mark}: {where + ': ' if where else ''}{finding.text}")
        return out
