"""What the ``/v1/tasks`` endpoints share: finding a task the caller may see, its phase,
the server's refusals as problems, page cursors, and the annotations only the API reads."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from fastapi import Request, Response
from longtask.api.auth import Principal
from longtask.api.kube import Invalid, Tasks
from longtask.api.problems import (
    COMMON_RESPONSES,
    ApiProblem,
    FieldError,
    body_error,
    invalid,
    not_found,
    responses,
)
from longtask.api.schemas import (
    DNS_LABEL,
    REQUESTED_NAME_LABEL,
)

from longtask.constants import GROUP
from longtask.phases import Phase

# Annotations only the API reads: the Idempotency-Key (hashed) a task was created with,
# and the SHA-256 of the create request, to tell a retry from a different request.
ANNOTATION_IDEMPOTENCY_KEY = f"{GROUP}/idempotency-key-sha256"
ANNOTATION_REQUEST_DIGEST = f"{GROUP}/create-request-sha256"
# The name a client chose for its task, kept as a label: the LongTask itself is named by
# scoped_name(), so that no organization can learn another's task names.
LABEL_REQUESTED_NAME = REQUESTED_NAME_LABEL
SCOPE_DIGITS = 12  # hex digits of the organization's scope in a chosen name (48 bits)
CONFLICT_RETRIES = 5
# Every /v1/tasks module's router is made with these.
ROUTER: dict[str, Any] = {"prefix": "/v1/tasks", "tags": ["tasks"],
                          "responses": COMMON_RESPONSES}
NAME = re.compile(DNS_LABEL)

PROBLEMS = responses(409)


def visible(tasks: Tasks, name: str, principal: Principal) -> dict[str, Any]:
    """The LongTask ``name`` if the caller may see it; 404 otherwise (missing or not theirs).

    A name no LongTask can have (not a DNS-1123 label) is missing too.
    """
    if len(name) > 63 or not NAME.match(name):
        raise not_found(f"task {name!r}")
    body = tasks.get(name)
    if body is None or not principal.may_use(str((body.get("spec") or {}).get("organization"))):
        raise not_found(f"task {name!r}")
    return body


def scoped_name(organization: str, requested: str) -> str:
    """The LongTask name of the task an organization's client names ``requested``:
    ``<requested, cut to 50 characters>-<12 hex digits of SHA-256(organization, requested)>``
    (a DNS label of at most 63 characters).

    Two organizations choosing one name get two LongTasks, so a create never tells one
    organization whether another holds a name; within one organization the name is
    unique (409 when taken). The suffix is a function of the caller's own organization:
    no client can make the API ask for a name derived for another organization.
    """
    digest = hashlib.sha256(f"{organization}\0{requested}".encode()).hexdigest()
    return f"{requested[:63 - SCOPE_DIGITS - 1]}-{digest[:SCOPE_DIGITS]}"


def phase_of(body: Mapping[str, Any]) -> Phase:
    """The task's ``status.phase``; ``Pending`` before the operator wrote one."""
    return Phase((body.get("status") or {}).get("phase") or Phase.PENDING)


def invalid_from_server(exc: Invalid, prefix: str = "spec.") -> ApiProblem:
    """The server's 422 (schema or CEL rule) as a problem with request field paths."""
    errors = []
    for field, message in exc.causes:
        path = field[len(prefix):] if field.startswith(prefix) else field
        errors.append(body_error([p for p in path.split(".") if p], message) if path
                      else FieldError(detail=message))
    return invalid(f"the task was refused: {exc.message}", errors)


def encode_cursor(values: list[Any]) -> str:
    """A page cursor: ``values`` (JSON) in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """The values of a cursor :func:`encode_cursor` made, one of each type of ``shape``
    (e.g. ``(str, str)``); 422 for any other text, a crafted one included."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        values = None
    if (not isinstance(values, list) or len(values) != len(shape)
            or not all(type(v) is t for v, t in zip(values, shape, strict=False))):
        raise invalid("the cursor is not one this API gave out",
                      [FieldError(detail="not a cursor from a previous page", field="cursor",
                                  parameter="cursor")])
    return values


def next_link(request: Request, cursor: str | None, response: Response) -> None:
    """Add ``Link: <...>; rel="next"`` (RFC 8288) for the following page."""
    if cursor is not None:
        url = request.url.include_query_params(cursor=cursor)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
