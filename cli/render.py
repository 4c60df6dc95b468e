"""What the command prints for people: problems, tasks, progress lines, reports.

With ``--json`` none of this is used: the API's JSON is printed as it came.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

BAR_WIDTH = 24


def problem_lines(problem: Mapping[str, Any]) -> list[str]:
    """``error: <detail>`` and one indented line per field error: where (pointer or
    parameter, field, line, column) and why."""
    status = problem.get("status")
    kind = str(problem.get("type") or "").rsplit("/", 1)[-1]
    tag = " ".join(part for part in (f"HTTP {status}" if status else "",
                                     kind if kind and kind != "about:blank" else "") if part)
    detail = problem.get("detail") or problem.get("title") or "failed"
    lines = [f"error: {detail}" + (f" ({tag})" if tag else "")]
    for item in problem.get("errors") or []:
        if not isinstance(item, Mapping):
            lines.append(f"  {item}")
            continue
        where = [str(item[key]) if key == "pointer" else f"{key} {item[key]}"
                 for key in ("pointer", "parameter", "line", "column")
                 if item.get(key) not in (None, "")]
        field = item.get("field")
        if field and not item.get("pointer") and not item.get("parameter"):
            where.insert(0, str(field))
        lines.append(f"  {', '.join(where) or 'request'}: {item.get('detail') or item}")
    return lines


def counts(task: Mapping[str, Any]) -> tuple[int, int | None]:
    """``(done, total)`` of the run, or of the rollback while one runs or ran."""
    rolling = task.get("phase") in ("RollingBack", "RolledBack") and task.get("rollback")
    progress = (task.get("rollback") if rolling else task.get("progress")) or {}
    total = progress.get("total")
    return int(progress.get("done") or 0), int(total) if total is not None else None


def progress_line(task: Mapping[str, Any], bar: bool = False) -> str:
    """The task's phase and progress as the API reported them: rows done of total, row
    errors, rate and ETA (``ratePerSecond``, ``etaSeconds``); with ``bar``, a bar first."""
    done, total = counts(task)
    progress = task.get("progress") or {}
    parts = []
    if bar:
        share = min(1.0, done / total) if total else 0.0
        filled = int(share * BAR_WIDTH)
        parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share * 100:3.0f}%")
    rows = f"{done:,}/{total:,} rows" if total is not None else f"{done:,} rows"
    parts += [str(task.get("phase")), rows]
    if progress.get("rowErrors"):
        parts.append(f"{progress['rowErrors']:,} row errors")
    if task.get("phase") == "Running":
        if progress.get("ratePerSecond"):
            parts.append(f"{progress['ratePerSecond']:,.0f} rows/s")
        if progress.get("etaSeconds") is not None:
            parts.append(f"ETA {duration(progress['etaSeconds'])}")
    if task.get("final") and task.get("message"):
        parts.append(str(task["message"]))
    return " · ".join(parts)


def duration(seconds: float) -> str:
    """``1h02m03s``, ``4m05s`` or ``6s``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def task_lines(task: Mapping[str, Any]) -> list[str]:
    """A task for ``get``: name, what it is, phase and progress, the last request."""
    lines = [f"{task.get('name')}  {task.get('type')}  organization {task.get('organization')}",
             f"  phase     {progress_line(task)}",
             f"  state     {task.get('state')} (onTerminate {task.get('onTerminate')})"]
    if task.get("message"):
        lines.append(f"  message   {task['message']}")
    if task.get("requestedBy") or task.get("reason"):
        lines.append(f"  requested by {task.get('requestedBy') or '?'}: "
                     f"{task.get('reason') or '(no reason given)'}")
    for key in ("createdAt", "startedAt", "finishedAt"):
        if task.get(key):
            lines.append(f"  {key:<9} {task[key]}")
    lines.append(f"  params    {task.get('params')}")
    return lines


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    """Columns padded to their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """A dry run's report: valid or not, errors, columns, row errors, warnings."""
    rows = (f", {report['rowsTotal']:,} rows" if report.get("rowsTotal") is not None else "")
    lines = [f"valid: {'yes' if report.get('valid') else 'no'}  ({report.get('type')} for "
             f"{report.get('organization')}{rows}, {report.get('rowsRead')} read)"]
    lines += problem_lines({"detail": "the task would fail", "errors": report["errors"]}
                           )[1:] if report.get("errors") else []
    columns = report.get("columns") or []
    if columns:
        lines += ["columns:"] + ["  " + line for line in table(
            [(str(c.get("position")), str(c.get("header")), str(c.get("target") or "-"),
              str(c.get("type") or "-"), f"{c.get('invalid')}/{c.get('values')}",
              ", ".join(c.get("samples") or [])[:60]) for c in columns],
            ("#", "header", "target", "type", "invalid", "samples"))]
    for error in report.get("rowErrors") or []:
        lines.append(row_error_line(error))
    for warning in report.get("warnings") or []:
        lines.append(f"warning: {warning.get('code')}: {warning.get('detail')}")
    return lines


def row_error_line(error: Mapping[str, Any]) -> str:
    """``line 12, column phone: reason (value '...')``."""
    where = f"line {error.get('line')}" + (f", column {error['column']}"
                                           if error.get("column") else "")
    value = f" (value {error['value']!r})" if error.get("value") is not None else ""
    return f"{where}: {error.get('reason')}{value}"
