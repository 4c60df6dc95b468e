"""An export's output downloaded and checked against what the API announced for it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
from longtask.cli.client import Api
from longtask.cli.errors import DownloadFailed


def output(api: Api, name: str, target: Path, partial: bool) -> dict[str, Any]:
    """Download task ``name``'s output to ``target``; its facts (``file``, ``bytes``,
    ``sha256``, ``rows``, ``complete``).

    The bytes go to a temporary file beside ``target``, renamed to it only when their
    length is the ``Content-Length`` and their SHA-256 the ``LongTask-Output-SHA256`` the
    API announced. Raises :class:`DownloadFailed` (no file left) otherwise, and the
    errors of :meth:`Api.stream`.
    """
    target_dir = target.resolve().parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target_dir)
    temp = Path(temp_name)
    try:
        digest, size = hashlib.sha256(), 0
        params = {"partial": "true"} if partial else {}
        # identity: the length and the digest are of the bytes as the API sends them, which
        # a compressing proxy on the way would change.
        with os.fdopen(fd, "wb") as out, api.stream(
                "GET", f"/v1/tasks/{name}/output", params=params,
                headers={"Accept-Encoding": "identity"},
                timeout=httpx.Timeout(60.0, read=300.0)) as response:
            expected_size = response.headers.get("Content-Length")
            expected_sha = response.headers.get("LongTask-Output-SHA256")
            try:
                for chunk in response.iter_raw():
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            except httpx.TransportError as exc:
                raise DownloadFailed(
                    f"the download of {name} broke off after {size:,} of {expected_size} "
                    f"bytes ({exc or type(exc).__name__}); nothing written to {target}"
                ) from None
        if expected_size is not None and size != int(expected_size):
            raise DownloadFailed(f"the download of {name} is {size:,} bytes, the API "
                                 f"announced {int(expected_size):,}; nothing written to "
                                 f"{target}")
        if not expected_sha:
            raise DownloadFailed(f"the API sent no LongTask-Output-SHA256 for {name}; "
                                 f"nothing written to {target}")
        if digest.hexdigest() != expected_sha.lower():
            raise DownloadFailed(f"the download of {name} has SHA-256 {digest.hexdigest()}, "
                                 f"the API announced {expected_sha}; nothing written to "
                                 f"{target}")
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return {"file": str(target), "bytes": size, "sha256": digest.hexdigest(),
            "rows": int(response.headers.get("LongTask-Output-Rows") or 0),
            "complete": response.headers.get("LongTask-Output-Complete") == "true"}
