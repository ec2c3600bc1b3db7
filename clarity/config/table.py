"""README.md's table of every environment variable, rendered from the declarations of the settings and
of `Environment` (`python -m clarity.config` prints it; tests/test_config.py checks the README's copy).
"""

from __future__ import annotations

import sys
from typing import Any

from clarity.config.environment import Environment
from clarity.config.fields import leaf_fields, var_of
from clarity.config.settings import Settings


def _shown(default: Any) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def variables_table() -> str:
    """README.md's table of every environment variable (variable, config key, default, what it does),
    rendered from the declarations: the settings first, then `Environment`'s."""
    rows = ["| variable | config key | default | what it does |", "|---|---|---|---|"]
    for path, field in leaf_fields(Settings):
        var = var_of(field)
        if var:
            rows.append(f"| `{var}` | `{'.'.join(path)}` | {_cell(_shown(field.default))} | "
                        f"{_cell(field.description or '')} |")
    for field in Environment.model_fields.values():
        var = var_of(field)
        if var:
            rows.append(f"| `{var}` | — | {_cell(_shown(field.default))} | {_cell(field.description or '')} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    """`python -m clarity.config`: print the table of variables (paste it into README.md)."""
    sys.stdout.write(variables_table())
