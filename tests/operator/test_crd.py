"""The CRD file agrees with the Python sources of truth, and is fit for people and servers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from longtask.operator import decide
from pydantic import BaseModel

from longtask import constants, model, tasktypes
from longtask.phases import ConditionType, DesiredState, OnMaxPause, OnTerminate, Phase

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "longtask.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with CRD_PATH.open() as f:
        loaded: dict[str, Any] = yaml.safe_load(f)
    return loaded


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    v: dict[str, Any] = only
    return v


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _props(root: dict[str, Any], *path: str) -> dict[str, Any]:
    node = root
    for name in path:
        node = node["properties"][name]
    return node


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, child in (node.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from _walk(child, f"{path}.{name}")
    if "items" in node:
        yield f"{path}[]", node["items"]
        yield from _walk(node["items"], f"{path}[]")


def test_names_come_from_constants(crd: dict[str, Any], version: dict[str, Any]) -> None:
    names = crd["spec"]["names"]
    got = (
        crd["metadata"]["name"],
        crd["spec"]["group"],
        version["name"],
        names["kind"],
        names["plural"],
        names["shortNames"],
        crd["spec"]["scope"],
    )
    want = (
        f"{constants.PLURAL}.{constants.GROUP}",
        constants.GROUP,
        constants.VERSION,
        constants.KIND,
        constants.PLURAL,
        [constants.SHORT_NAME],
        "Namespaced",
    )
    assert got == want, f"expected CRD names {want}, got {got}"


def test_metadata_schema_is_only_a_type(root: dict[str, Any]) -> None:
    """The API server refuses a CRD whose metadata schema says more (422)."""
    assert root["properties"]["metadata"] == {"type": "object"}, root["properties"]["metadata"]


def test_status_is_a_subresource(version: dict[str, Any]) -> None:
    assert version["subresources"] == {"status": {}}, version.get("subresources")


def test_type_takes_every_registered_name_and_a_plug_ins_by_its_pattern(
        root: dict[str, Any]) -> None:
    """No enum: a plug-in's type needs no CRD of its own; the registry's names and the
    CRD's pattern are one rule (longtask.tasktypes.TYPE_NAME)."""
    prop = _props(root, "spec", "type")
    assert "enum" not in prop
    assert prop["pattern"] == tasktypes.TYPE_NAME.pattern
    assert all(re.match(prop["pattern"], name) for name in tasktypes.REGISTRY)
    for name in ("BaselineUpload", "MyTeamsImport"):
        assert re.match(prop["pattern"], name)
    for name in ("baselineUpload", "Bulk-Delete", "", "X" * 64):
        assert not re.match(prop["pattern"], name), name


@pytest.mark.parametrize(
    ("path", "values"),
    [
        (("spec", "state"), [s.value for s in DesiredState]),
        (("spec", "onTerminate"), [s.value for s in OnTerminate]),
        (("spec", "onMaxPause"), [s.value for s in OnMaxPause]),
        (("status", "phase"), [p.value for p in Phase]),
        (("status", "lastAction", "state"), [s.value for s in DesiredState]),
    ],
    ids=["spec.state", "spec.onTerminate", "spec.onMaxPause", "status.phase",
         "status.lastAction.state"],
)
def test_enum_mirrors_phases_module(
    root: dict[str, Any], path: tuple[str, ...], values: list[str]
) -> None:
    enum = _props(root, *path)["enum"]
    assert enum == values, f"{'.'.join(path)}: CRD enum {enum}, longtask/phases.py {values}"


def test_condition_type_enum_mirrors_phases_module(root: dict[str, Any]) -> None:
    enum = _props(root, "status", "conditions")["items"]["properties"]["type"]["enum"]
    assert enum == [t.value for t in ConditionType], enum


def test_defaults_are_running_and_rollback(root: dict[str, Any]) -> None:
    got = (_props(root, "spec", "state")["default"], _props(root, "spec", "onTerminate")["default"])
    assert got == ("Running", "Rollback"), f"expected defaults (Running, Rollback), got {got}"


def test_every_field_has_a_description(root: dict[str, Any]) -> None:
    """Except ``metadata``, where the server refuses anything but ``type``."""
    missing = [
        path for path, node in _walk(root) if path != ".metadata" and not node.get("description")
    ]
    assert not missing, f"fields without a description: {missing}"


def test_schema_is_structural(root: dict[str, Any]) -> None:
    """Every node has a type, except int-or-string and preserve-unknown-fields nodes."""
    untyped = [
        path
        for path, node in _walk(root)
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert not untyped, f"nodes without a type: {untyped}"


@pytest.mark.parametrize("field", ["type", "organization", "params", "parallelism"])
def test_field_is_immutable(root: dict[str, Any], field: str) -> None:
    rules = [r["rule"] for r in _props(root, "spec", field).get("x-kubernetes-validations", [])]
    assert "self == oldSelf" in rules, f"spec.{field}: expected an immutability rule, got {rules}"


@pytest.mark.parametrize("field", ["concurrencyKey", "resources"])
def test_optional_field_is_immutable_including_presence(root: dict[str, Any], field: str) -> None:
    rules = [r["rule"] for r in _props(root, "spec")["x-kubernetes-validations"]]
    wanted = f"has(self.{field}) == has(oldSelf.{field})"
    assert any(wanted in rule for rule in rules), f"no rule containing {wanted!r} in {rules}"


def test_rate_limit_is_the_one_live_field_and_keeps_its_bounds(root: dict[str, Any]) -> None:
    rules = [r["rule"] for r in _props(root, "spec")["x-kubernetes-validations"]]
    rate = _props(root, "spec", "rateLimit")
    assert not [r for r in rules if "rateLimit" in r], rules
    assert "x-kubernetes-validations" not in rate, rate
    assert (rate["minimum"], rate["maximum"]) == (1, 1_000_000), rate


def test_terminated_state_is_final(root: dict[str, Any]) -> None:
    rules = [r["rule"] for r in _props(root, "spec", "state")["x-kubernetes-validations"]]
    assert rules == ["oldSelf != 'Terminated' || self == 'Terminated'"], rules


def test_params_keep_unknown_fields(root: dict[str, Any]) -> None:
    params = _props(root, "spec", "params")
    got = (params["type"], params.get("x-kubernetes-preserve-unknown-fields"))
    assert got == ("object", True), got


def test_printer_columns_tell_what_is_going_on(version: dict[str, Any]) -> None:
    shown = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert shown == ["Type", "Organization", "Phase", "Progress", "Age", "Deleting"], shown


def test_printer_columns_point_at_schema_fields(
    version: dict[str, Any], root: dict[str, Any]
) -> None:
    broken = []
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"].lstrip(".").split(".")
        if path[0] == "metadata":
            continue
        try:
            _props(root, *path)
        except KeyError:
            broken.append(column["jsonPath"])
    assert not broken, f"printer columns pointing at no schema field: {broken}"


def _wire_names(cls: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in cls.model_fields.items()}


@pytest.mark.parametrize(
    ("cls", "path"),
    [
        (model.TaskSpec, ("spec",)),
        (model.TaskStatus, ("status",)),
        (model.Progress, ("status", "progress")),
        (model.RollbackProgress, ("status", "rollback")),
        (model.LastAction, ("status", "lastAction")),
        (model.Resources, ("spec", "resources")),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else ".".join(v),
)
def test_model_and_schema_name_the_same_fields(
    root: dict[str, Any], cls: type[BaseModel], path: tuple[str, ...]
) -> None:
    """A status field the operator writes but the schema lacks would be pruned silently."""
    schema = set(_props(root, *path)["properties"])
    python = _wire_names(cls)
    assert python == schema, (
        f"{cls.__name__}: only in Python {sorted(python - schema)}, "
        f"only in the CRD {sorted(schema - python)}"
    )


def test_condition_model_names_the_schema_fields(root: dict[str, Any]) -> None:
    schema = set(_props(root, "status", "conditions")["items"]["properties"])
    assert _wire_names(model.Condition) == schema


def test_every_reason_fits_the_condition_reason_pattern(root: dict[str, Any]) -> None:
    items = _props(root, "status", "conditions")["items"]
    pattern = re.compile(items["properties"]["reason"]["pattern"])
    bad = [r.value for r in decide.Reason if not pattern.match(r.value)]
    assert not bad, f"reasons the server would refuse: {bad}"
