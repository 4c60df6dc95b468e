"""The body of ``POST /v1/tasks`` (and ``/validate``) from a YAML or JSON file and flags.

The file holds the request as the API takes it (``type``, ``organization``, ``params``,
``rateLimit``, ...); flags set or replace its top-level keys and ``--param`` its params.
Nothing is checked here beyond the file's syntax: the API says what is wrong, and where.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from longtask.cli.errors import UsageError


class _Loader(yaml.SafeLoader):
    """YAML's safe loader without its implicit timestamps: ``from: 2017-08-01`` stays the
    string the API reads (YAML 1.1 would make it a date)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers
            if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read(path: Path) -> dict[str, Any]:
    """The request in ``path``: one YAML (or JSON) mapping.

    Raises :class:`UsageError` naming the file, and the line and column of a syntax error.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it: {exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UsageError(f"{where}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the task must be a mapping (type, organization, params, "
                         f"...), not {type(data).__name__}")
    return data


def param_value(text: str) -> Any:
    """A ``--param`` value: JSON when it reads as JSON (``10``, ``true``, ``null``,
    ``["a","b"]``), else the text itself (``villages``, ``2017-08-01``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def build(path: Path | None, fields: Mapping[str, Any], params: Sequence[str]
          ) -> dict[str, Any]:
    """The request: the file's (or ``{}``), with ``fields`` that are not None set on top
    and each ``KEY=VALUE`` of ``params`` set in ``params``.

    Raises :class:`UsageError` for a ``--param`` without ``=``.
    """
    request = read(path) if path is not None else {}
    request.update({key: value for key, value in fields.items() if value is not None})
    if params:
        merged = dict(request.get("params") or {})
        for item in params:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--param {item!r}: write KEY=VALUE, e.g. form=villages")
            merged[key] = param_value(value)
        request["params"] = merged
    return request
