"""Print the README's configuration table from `forestops.config.Settings`.

`tests/unit/test_readme.py` checks that the README holds exactly this table, so the documented
settings can never drift from the real ones: after changing a setting, run
`.venv/bin/python tools/settings_table.py` and paste its output into the README.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from forestops.config import Settings


def _default(value: object) -> str:
    if value is PydanticUndefined:
        return "(computed)"
    if value is None or isinstance(value, SecretStr):
        return "(unset)"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "(none)"
    return str(value) or "(derived)"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "/")
        rows.append(f"| `{name.upper()}` | `{_default(field.default)}` | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
