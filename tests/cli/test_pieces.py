"""The command's pure pieces, without a server: task files, parameters, the event stream's
parsing, and problems as printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from longtask.cli import render, taskfile
from longtask.cli.client import Event, parse_events
from longtask.cli.errors import UsageError


def test_a_task_file_keeps_unquoted_dates_as_text_and_options_win(tmp_path: Path) -> None:
    path = tmp_path / "export.yaml"
    path.write_text("type: Export\norganization: acme\nrateLimit: 10\n"
                    "params: {form: survey, from: 2017-08-01, to: 2017-08-31}\n")

    request = taskfile.build(path, {"rateLimit": 50, "name": None},
                             ["to=2017-09-30", "columns=[\"a\",\"b\"]", "maxRowErrors=5"])

    assert request == {"type": "Export", "organization": "acme", "rateLimit": 50,
                       "params": {"form": "survey", "from": "2017-08-01", "to": "2017-09-30",
                                  "columns": ["a", "b"], "maxRowErrors": 5}}


def test_a_task_file_that_is_not_yaml_is_refused_with_its_line_and_column(
        tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("type: Export\nparams:\n  form: [survey\n")

    with pytest.raises(UsageError, match=rf"^{path}:\d+:\d+: not valid YAML"):
        taskfile.read(path)


def test_a_task_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- type: Export\n")

    with pytest.raises(UsageError, match="must be a mapping"):
        taskfile.read(path)


def test_a_param_without_equals_is_refused() -> None:
    with pytest.raises(UsageError, match="KEY=VALUE"):
        taskfile.build(None, {}, ["form"])


def test_server_sent_events_are_parsed_and_comments_skipped() -> None:
    lines = [": keep-alive", "", "event: task", "id: 12", 'data: {"phase":"Running"}', "",
             ": keep-alive", "", "event: end", 'data: {"phase":"Succeeded"}', ""]

    assert list(parse_events(iter(lines))) == [Event("task", {"phase": "Running"}),
                                               Event("end", {"phase": "Succeeded"})]


def test_a_problem_is_printed_with_each_field_error_where_it_is() -> None:
    lines = render.problem_lines({
        "type": "https://collect.atlan.com/problems/invalid-request", "status": 422,
        "title": "Unprocessable Content", "detail": "the task would fail",
        "errors": [{"pointer": "#/params/from", "field": "params.from", "detail": "no date"},
                   {"parameter": "organization", "detail": "unknown"},
                   {"field": "file", "line": 3, "column": "phone", "detail": "bad phone"}]})

    assert lines == ["error: the task would fail (HTTP 422 invalid-request)",
                     "  #/params/from: no date",
                     "  parameter organization: unknown",
                     "  file, line 3, column phone: bad phone"]
