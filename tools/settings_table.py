"""Print the README's configuration table from `forestops.config.Settings`.

`tests/unit/test_readme.py` checks that the README holds exactly this table, so the documented
settings can never drift from the real ones: after changing a setting, run
`.venv/bin/python tools/settings_table.py` and paste its output into the README.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from forestops.config import Settings


def _default(value: object) -> str:
    if value is PydanticUndefined:
        return "(computed)"
    if value is None or isinstance(value, SecretStr):
        return "(unset)"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "(none)"
    return str(value) or "(unset)"


def env_name(name: str, field: FieldInfo) -> str:
    """The variable a field is read from: its alias when it has one (a setting derived from the
    home is held in `configured_<name>` and read from <NAME>)."""
    alias = field.validation_alias
    return (alias if isinstance(alias, str) else name).upper()


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        variable = env_name(name, field)
        derived = variable.lower() in Settings.model_computed_fields
        default = "(derived)" if derived else _default(field.default)
        meaning = (field.description or "").replace("|", "/")
        rows.append(f"| `{variable}` | `{default}` | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
