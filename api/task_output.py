"""``GET /v1/tasks/{name}/output``: an export's CSV streamed from its parts, with the
digest of the whole (computed once per set of parts, then cached)."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from longtask.api import db
from longtask.api import storage as api_storage
from longtask.api.deps import (
    DatabaseDep,
    TasksDep,
    ViewerDep,
)
from longtask.api.problems import (
    ApiProblem,
    not_found,
)
from longtask.api.task_common import (
    PROBLEMS,
    ROUTER,
    phase_of,
    visible,
)

from longtask import storage, tasktypes
from longtask.phases import OnTerminate, Phase

log = logging.getLogger("longtask.api.tasks")
router = APIRouter(**ROUTER)


class DigestCache:
    """Whole-output SHA-256s already computed, by task uid and parts (so a changed output
    is never served with an old digest). Bounded LRU."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: str) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_OUTPUT_HEADERS = {
    "Repr-Digest": {"description": "RFC 9530: sha-256 of the whole CSV, base64",
                    "schema": {"type": "string"}},
    "LongTask-Output-SHA256": {"description": "The same digest in hex, as sha256sum prints it",
                               "schema": {"type": "string"}},
    "LongTask-Output-Rows": {"description": "Data rows in the output",
                             "schema": {"type": "integer"}},
    "LongTask-Output-Expires-At": {"description": "When the retention removes the output "
                                                  "(absent while the task is not final)",
                                   "schema": {"type": "string", "format": "date-time"}},
}


@router.get(
    "/{name}/output", response_class=StreamingResponse, summary="The export's CSV",
    responses={200: {"content": {"text/csv": {}}, "headers": _OUTPUT_HEADERS}, **PROBLEMS},
)
def task_output(
    name: str,
    request: Request,
    principal: ViewerDep,
    tasks: TasksDep,
    database: DatabaseDep,
    partial: Annotated[bool, Query(
        description="Serve what a running or paused export has written so far")] = False,
) -> StreamingResponse:
    """Stream an Export's CSV from its parts, one part in memory at a time.

    ``Content-Length`` is the sum of the parts' sizes. ``Repr-Digest`` (RFC 9530) and
    ``LongTask-Output-SHA256`` carry the SHA-256 of the whole output, computed by a first
    streaming pass over the parts (then cached): compare it with ``sha256sum`` of the
    download. Each part is checked against the runner's own SHA-256 as it is sent; a part
    that changed underneath ends the stream early (the length then does not match).
    404 for a task of another type; 409 until the export has succeeded (unless
    ``partial=true``) and after it was rolled back; 410 once the retention removed it
    (``LongTask-Output-Expires-At`` says when it will, once the task is final).
    """
    body = visible(tasks, name, principal)
    spec = body.get("spec") or {}
    if spec.get("type") != tasktypes.EXPORT.name:
        raise not_found(f"output of task {name!r} ({spec.get('type')} tasks write no output)")
    phase = phase_of(body)
    if phase in (Phase.ROLLED_BACK, Phase.ROLLING_BACK) or (
            phase is Phase.TERMINATING and spec.get("onTerminate") != OnTerminate.KEEP):
        raise ApiProblem(409, "output-removed", "Conflict",
                         f"the export was terminated and its output removed ({phase})")
    if phase is not Phase.SUCCEEDED and not partial:
        raise ApiProblem(409, "output-not-ready", "Conflict",
                         f"the export is {phase}; its output is served once it has Succeeded "
                         "(pass partial=true for what it has written so far)",
                         extra={"phase": str(phase)})
    uid = uuid.UUID(body["metadata"]["uid"])
    cache: DigestCache = request.app.state.digests
    with database.connection() as conn:
        retention = storage.output_retention(conn, uid)
        if retention is not None and retention.removed_at is not None:
            raise api_storage.gone(f"the output of task {name!r}", retention)
        parts = db.export_parts(conn, uid)
        key = (uid, tuple((p.part, p.size, p.sha256) for p in parts))
        digest = cache.get(key)
        if digest is None:
            whole = hashlib.sha256()
            for part in parts:
                whole.update(db.export_part_data(conn, uid, part.part))
            digest = whole.hexdigest()
            cache.put(key, digest)
    headers = {
        "Content-Length": str(sum(p.size for p in parts)),
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(digest)).decode()}:",
        "LongTask-Output-SHA256": digest,
        "LongTask-Output-Rows": str(sum(p.rows for p in parts)),
        "LongTask-Output-Complete": "true" if phase is Phase.SUCCEEDED else "false",
        "Content-Disposition": f'attachment; filename="{name}.csv"',
    }
    if retention is not None and retention.expires_at is not None:
        headers["LongTask-Output-Expires-At"] = retention.expires_at.isoformat()
    return StreamingResponse(_stream_parts(database, uid, parts), headers=headers,
                             media_type="text/csv; charset=utf-8")


def _stream_parts(database: db.Database, uid: uuid.UUID,
                  parts: list[db.PartRow]) -> Iterator[bytes]:
    """Each part read on a pooled connection taken for it alone and given back before
    the part is sent: a client that reads slowly holds one part's bytes, no connection."""
    for part in parts:
        try:
            with database.connection() as conn:
                data = db.export_part_data(conn, uid, part.part)
        except LookupError:
            log.warning("output_part_gone", extra={"task_uid": str(uid), "part": part.part})
            return
        if hashlib.sha256(data).hexdigest() != part.sha256:
            log.error("output_part_mismatch", extra={"task_uid": str(uid), "part": part.part})
            return
        yield data
