"""POST /v1/files and GET /v1/files/{id}: streamed uploads into the file store."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator

import httpx
import psycopg2.extensions
import pytest
from api_support import UPLOAD_LIMIT, problem, token_of, upload
from longtask.api import uploads
from longtask.api.settings import ApiSettings

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

CSV = (b"household_id,head_name,members,phone\n"
       b"H-1,Awa Diop,4,+221339612727\n"
       b"H-2,Moussa Fall,2,\n")
BOUNDARY = "longtask-test-boundary"


@pytest.fixture
def api_namespace() -> str:
    """Files need no LongTask: the default namespace saves making one."""
    return "default"


def stored_files(db: psycopg2.extensions.connection) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM longtask.files")
        return int(cur.fetchone()[0])  # type: ignore[index]


def multipart_stream(chunks: Iterator[bytes], *, close: bool = True) -> Iterator[bytes]:
    """A multipart body sent chunk by chunk (no Content-Length: chunked encoding)."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode()
    yield from chunks
    if close:
        yield f"\r\n--{BOUNDARY}--\r\n".encode()


def csv_rows(total_bytes: int, row: bytes = b"H-000000,Awa Diop,4,+221339612727\n",
             chunk: int = 64 * 1024) -> Iterator[bytes]:
    yield b"household_id,head_name,members,phone\n"
    sent = 0
    block = row * (chunk // len(row))
    while sent < total_bytes:
        yield block
        sent += len(block)


def test_an_upload_is_stored_with_its_size_digest_encoding_and_header(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    response = upload(operator, CSV)

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/files/{body['id']}"
    assert body["sizeBytes"] == len(CSV)
    assert body["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert body["encoding"] == "utf-8"
    assert body["header"] == ["household_id", "head_name", "members", "phone"]
    assert (body["rowCountEstimate"], body["rowCountExact"]) == (2, True)
    assert body["organization"] == "acme"
    assert stored_files(db) == 1


def test_a_utf16_spreadsheet_export_is_stored_as_utf8(operator: httpx.Client) -> None:
    data = CSV.decode().encode("utf-16")

    body = upload(operator, data).json()

    assert body["encoding"] == "utf-8"
    assert body["sourceEncoding"] == "utf-16 (stored as utf-8)"
    assert body["sha256"] == hashlib.sha256(CSV).hexdigest()


def test_a_large_file_gets_a_row_estimate_from_its_first_mebibyte(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    url = serve(api_settings.model_copy(update={"max_upload_bytes": 8 << 20}))
    data = b"".join(csv_rows(3 << 20))
    rows = data.count(b"\n") - 1
    client = httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token_of('operator')}"})

    body = upload(client, data).json()
    again = client.get(f"/v1/files/{body['id']}").json()
    client.close()

    assert body["rowCountExact"] is False
    assert abs(body["rowCountEstimate"] - rows) <= rows * 0.01, (body["rowCountEstimate"], rows)
    assert again == body


def test_an_upload_over_the_limit_by_content_length_is_refused_before_reading(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    body = problem(upload(operator, b"a,b\n" + b"1,2\n" * (2 * UPLOAD_LIMIT)), 413)

    assert body["limit"] == UPLOAD_LIMIT
    assert stored_files(db) == 0


def test_a_streamed_upload_crossing_the_limit_is_refused_and_nothing_is_kept(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    response = operator.post(
        "/v1/files", content=multipart_stream(csv_rows(3 * UPLOAD_LIMIT)),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})

    assert "content-length" not in response.request.headers  # it really was streamed
    problem(response, 413)
    assert stored_files(db) == 0


def test_an_upload_is_streamed_not_held_in_memory(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings,
        db: psycopg2.extensions.connection) -> None:
    size = 24 << 20
    url = serve(api_settings.model_copy(update={"max_upload_bytes": 64 << 20}))
    client = httpx.Client(base_url=url, timeout=120,
                          headers={"Authorization": f"Bearer {token_of('operator')}"})
    tracemalloc.start()
    try:
        response = client.post(
            "/v1/files", content=multipart_stream(csv_rows(size)),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.close()

    assert response.status_code == 201, response.text
    assert response.json()["sizeBytes"] > size
    # Server and client share this process: the peak covers both, a few blocks at most.
    assert peak < 12 << 20, f"peak Python memory {peak / 2**20:.1f} MiB for a 24 MiB upload"


def test_a_body_that_is_not_multipart_is_415(operator: httpx.Client) -> None:
    problem(operator.post("/v1/files", json={"file": "a,b"}), 415)


def test_a_multipart_body_without_a_file_part_is_422_naming_the_field(
        operator: httpx.Client) -> None:
    body = problem(operator.post("/v1/files", data={"note": "no file here"},
                                 files={"other": ("x.csv", b"a,b\n", "text/csv")}), 422)

    assert body["errors"][0]["field"] == "file"


def many_fields(count: int, size: int) -> Iterator[bytes]:
    """A multipart body of ``count`` form fields of ``size`` bytes each, then a file part."""
    for i in range(count):
        yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n"
               ).encode() + b"x" * size + b"\r\n"
    yield from multipart_stream(iter([CSV]))


def test_a_form_of_many_fields_is_refused_at_the_first_part_too_many(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    response = operator.post(
        "/v1/files", content=many_fields(200, 4000),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})

    body = problem(response, 400)
    assert body["detail"].startswith(f"the form has more than {uploads.MAX_PARTS} parts"), body
    assert stored_files(db) == 0


def test_a_part_with_huge_headers_is_refused(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{'a' * 200_000}.csv\"\r\n\r\n").encode()
    response = operator.post(
        "/v1/files", content=iter([head, CSV, f"\r\n--{BOUNDARY}--\r\n".encode()]),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})

    body = problem(response, 400)
    # python-multipart's own bound on a header line.
    assert body["detail"] == "malformed multipart body: Maximum header size exceeded", body
    assert stored_files(db) == 0


def test_a_field_longer_than_its_bound_is_refused_naming_it(operator: httpx.Client) -> None:
    body = problem(operator.post("/v1/files", content=many_fields(1, uploads.MAX_FIELD_BYTES + 1),
                                 headers={"Content-Type":
                                          f"multipart/form-data; boundary={BOUNDARY}"}), 400)

    assert body["detail"] == f"form field 'f0' is longer than {uploads.MAX_FIELD_BYTES} bytes"


def test_a_multipart_body_cut_short_is_400_and_nothing_is_kept(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    response = operator.post(
        "/v1/files", content=multipart_stream(iter([CSV]), close=False),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})

    problem(response, 400)
    assert stored_files(db) == 0


def test_an_empty_file_is_422(operator: httpx.Client) -> None:
    body = problem(upload(operator, b""), 422)

    assert "empty" in body["detail"]


def test_a_binary_file_whose_encoding_cannot_be_told_is_422(operator: httpx.Client) -> None:
    data = bytes(range(256)) * 64

    body = problem(upload(operator, data, "photo.jpg"), 422)

    assert "encoding" in body["detail"]


def test_no_token_is_401_with_a_bearer_challenge(
        client_as: Callable[[str | None], httpx.Client]) -> None:
    response = upload(client_as(None), CSV)

    problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="longtask"'


def test_an_unknown_token_is_401_invalid_token(api_url: str) -> None:
    client = httpx.Client(base_url=api_url, headers={"Authorization": "Bearer not-a-token"})

    response = upload(client, CSV)

    problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_viewer_may_not_upload(viewer: httpx.Client) -> None:
    body = problem(upload(viewer, CSV), 403)

    assert "operator" in body["detail"]


def test_an_upload_for_an_organization_the_token_does_not_hold_is_403(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    problem(upload(operator, CSV, organization="globex"), 403)
    assert stored_files(db) == 0


def test_another_organizations_file_is_404_as_if_missing(
        operator: httpx.Client, other: httpx.Client, admin: httpx.Client) -> None:
    file_id = upload(operator, CSV).json()["id"]

    problem(other.get(f"/v1/files/{file_id}"), 404)
    assert admin.get(f"/v1/files/{file_id}").status_code == 200
    missing = problem(other.get("/v1/files/00000000-0000-0000-0000-000000000000"), 404)
    assert missing["title"] == "Not Found"
