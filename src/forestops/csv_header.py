"""How a CSV upload's header is read, shared by `/predict/csv` and the UI's check before sending.

The UI promises a person "column X is missing" before a request fails; that holds only while it
reads the header by the API's own rules (delimiter, course or canonical names, what counts as
unknown or repeated), so both read it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from forestops import contract


def sniff_delimiter(first_line: str) -> str:
    """ ";" when the header line says so (what European spreadsheets save), else ","."""
    return ";" if first_line.count(";") > first_line.count(",") else ","


@dataclass(frozen=True)
class HeaderColumns:
    canonical: list[str]
    """Each header cell's canonical name (unknown names unchanged), in file order."""
    positions: dict[str, int]
    """Contract column -> its first position in the file."""
    strays: list[tuple[str, str | None]]
    """In file order, (cell, None) for a cell naming no contract column and (cell, earlier cell)
    for a later cell naming a column already seen."""
    missing: list[str]
    """Features the header does not name, in contract order."""

    @property
    def unknown(self) -> list[str]:
        return [cell for cell, earlier in self.strays if earlier is None]


def read_header(header: list[str]) -> HeaderColumns:
    canonical = [contract.canonical_column(raw) for raw in header]
    positions: dict[str, int] = {}
    strays: list[tuple[str, str | None]] = []
    for position, (raw, name) in enumerate(zip(header, canonical, strict=True)):
        if name not in contract.COLUMNS:
            strays.append((raw, None))
        elif name in positions:
            strays.append((raw, header[positions[name]]))
        else:
            positions[name] = position
    missing = [name for name in contract.FEATURE_NAMES if name not in positions]
    return HeaderColumns(canonical, positions, strays, missing)
