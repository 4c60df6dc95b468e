"""README.md tells the truth about what the code defines: every task parameter, its default."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic.fields import FieldInfo

from longtask import tasktypes

README = Path(__file__).resolve().parents[1] / "README.md"
CRD = Path(__file__).resolve().parents[1] / "crds" / "longtask.yaml"
SPEC_ROW = re.compile(r"^\| `spec\.(?P<field>\w+)` \| (?P<default>[^|]+) \|", re.MULTILINE)
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


def test_the_spec_table_lists_every_field_of_the_crd_with_its_default() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    expected = {
        name: "required" if name in spec["required"]
        else f"`{json.dumps(node['default'])}`" if "default" in node else "none"
        for name, node in spec["properties"].items()
    }

    table = {m["field"]: m["default"].strip() for m in SPEC_ROW.finditer(README.read_text())}

    assert table == expected
