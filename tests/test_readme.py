"""README.md tells the truth about what the code defines: every task parameter, its default."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic.fields import FieldInfo

from longtask import tasktypes

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `(?P<type>\w+)` \| `(?P<param>\w+)` \| (?P<default>[^|]+) \|", re.MULTILINE)


def documented_default(field: FieldInfo) -> str:
    """How the README writes a field's default: ``required`` or the default as JSON."""
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    return f"`{json.dumps(getattr(default, 'value', default))}`"


def test_the_task_types_table_lists_every_parameter_with_its_default() -> None:
    table = {(m["type"], m["param"]): m["default"].strip()
             for m in ROW.finditer(README.read_text())}
    expected = {
        (name, field.alias or key): documented_default(field)
        for name, task_type in tasktypes.REGISTRY.items()
        for key, field in task_type.params_model.model_fields.items()
    }

    assert table == expected
