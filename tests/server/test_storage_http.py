"""File storage over HTTP (in-process, Starlette TestClient): the upload/download flow,
response headers, ``Range``, ``HEAD``, ``Digest``, and bad input that must store nothing."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import blob_keys, write_functions
from syncline.application import Application
from syncline.blobs import open_blob_store
from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.files.service import FileStorage
from syncline.persistence.sqlite import SqlitePersistence
from syncline.server.app import create_app
from syncline.values.ids import new_id

MAX_UPLOAD = 100_000

FUNCTIONS = {
    "files.py": """
        from syncline import mutation, query, v


        @mutation
        def upload_url(ctx):
            return ctx.storage.generate_upload_url()


        @query(args={"id": v.id("_storage")})
        def url(ctx, id):
            return ctx.storage.get_url(id)


        @query(args={"id": v.id("_storage")})
        def meta(ctx, id):
            return ctx.db.system.get(id)


        @query
        def listing(ctx):
            return ctx.db.system.query("_storage").collect()


        @mutation(args={"id": v.id("_storage")})
        def remove(ctx, id):
            ctx.storage.delete(id)


        @mutation
        def make_doc(ctx):
            return ctx.db.insert("docs", {"n": 1})
    """,
}


@dataclass
class Served:
    app: Application
    client: TestClient
    clock: ManualClock

    def call(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        response = self.client.post(
            f"/api/{kind}", json={"path": path, "args": args or {}, "format": "json"}
        )
        body = response.json()
        assert body["status"] == "success", body
        return body["value"]

    def upload_url(self) -> str:
        url: str = self.call("mutation", "files:upload_url")
        assert url.startswith("http://testserver/api/storage/upload?token=")
        return url.removeprefix("http://testserver")

    def upload(self, data: bytes, **kwargs: Any) -> str:
        response = self.client.post(self.upload_url(), content=data, **kwargs)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"storageId"}
        return str(body["storageId"])

    def blob_names(self) -> list[str]:
        assert self.app.storage is not None
        return blob_keys(self.app.storage.blobs)

    def rows(self) -> list[dict[str, Any]]:
        return list(self.call("query", "files:listing"))


@pytest.fixture
def served(tmp_path: Path, files_location: str) -> Iterator[Served]:
    clock = ManualClock()
    functions = write_functions(tmp_path / "functions", FUNCTIONS)
    database = Database(
        SqlitePersistence(str(tmp_path / "db.sqlite3"), durability="off"), clock=clock
    )
    app = Application(database, functions, clock=clock)
    app.public_url = "http://testserver"
    app.use_storage(
        FileStorage(
            database,
            open_blob_store(files_location),
            secret=b"k" * 32,
            clock=clock,
            origin=lambda: app.public_url,
            max_upload_bytes=MAX_UPLOAD,
        )
    )
    try:
        app.load()
        with TestClient(create_app(app)) as client:
            yield Served(app, client, clock)
    finally:
        app.close()


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["message"]
    return body


# ----------------------------------------------------------------------------- the flow


def test_upload_then_download(served: Served) -> None:
    data = bytes(range(256)) * 300  # 76,800 bytes
    storage_id = served.upload(data, headers={"content-type": "image/png"})
    url = served.call("query", "files:url", {"id": storage_id})
    assert url == f"http://testserver/api/storage/{storage_id}"

    response = served.client.get(url)
    assert response.status_code == 200
    assert response.content == data
    headers = response.headers
    assert headers["content-type"] == "image/png"
    assert headers["content-length"] == str(len(data))
    assert headers["accept-ranges"] == "bytes"
    assert headers["digest"] == f"sha-256={b64sha(data)}"
    assert headers["cache-control"] == "private, max-age=2592000"

    row = served.call("query", "files:meta", {"id": storage_id})
    assert row["sha256"] == b64sha(data)
    assert row["size"] == len(data)
    assert row["contentType"] == "image/png"
    assert served.blob_names() == [storage_id]


@pytest.mark.parametrize(
    ("content_type", "sandboxed"),
    [
        ("text/html", True),
        ("TEXT/HTML; charset=utf-8", True),
        ("image/svg+xml", True),
        ("application/xhtml+xml", True),
        ("application/xml", True),
        ("text/xml;charset=utf-8", True),
        ("image/png", False),
        ("text/plain", False),
        ("application/json", False),
        ("text/htmlx", False),
        (None, False),
    ],
)
def test_active_content_is_sandboxed(
    served: Served, content_type: str | None, sandboxed: bool
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    storage_id = served.upload(b"<script>alert(1)</script>", headers=headers)
    response = served.client.get(f"/api/storage/{storage_id}")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers.get("content-security-policy") == ("sandbox" if sandboxed else None)


def test_head(served: Served) -> None:
    storage_id = served.upload(b"0123456789", headers={"content-type": "text/plain"})
    response = served.client.head(f"/api/storage/{storage_id}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "10"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["digest"] == f"sha-256={b64sha(b'0123456789')}"
    ranged = served.client.head(f"/api/storage/{storage_id}", headers={"range": "bytes=2-4"})
    assert ranged.status_code == 206
    assert ranged.headers["content-length"] == "3"
    assert ranged.headers["content-range"] == "bytes 2-4/10"


def test_no_content_type(served: Served) -> None:
    storage_id = served.upload(b"raw")
    assert "contentType" not in served.call("query", "files:meta", {"id": storage_id})
    response = served.client.get(f"/api/storage/{storage_id}")
    assert response.headers["content-type"] == "application/octet-stream"


def test_empty_file(served: Served) -> None:
    storage_id = served.upload(b"")
    response = served.client.get(f"/api/storage/{storage_id}")
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-length"] == "0"
    assert_error(
        served.client.get(f"/api/storage/{storage_id}", headers={"range": "bytes=0-"}),
        416,
        "RangeNotSatisfiable",
    )


def test_digest_header_is_verified(served: Served) -> None:
    data = b"checked contents"
    good = served.client.post(
        served.upload_url(), content=data, headers={"digest": f"sha-256={b64sha(data)}"}
    )
    assert good.status_code == 200, good.text
    # Other algorithms next to it are ignored.
    both = served.client.post(
        served.upload_url(),
        content=data,
        headers={"digest": f"md5=AAAA, SHA-256={b64sha(data)}"},
    )
    assert both.status_code == 200, both.text
    before = (served.blob_names(), served.rows())

    wrong = served.client.post(
        served.upload_url(), content=data, headers={"digest": f"sha-256={b64sha(b'other')}"}
    )
    assert "not the" in assert_error(wrong, 400, "DigestMismatch")["message"]
    malformed = served.client.post(
        served.upload_url(), content=data, headers={"digest": "sha-256=not-base64!"}
    )
    assert_error(malformed, 400, "InvalidDigest")
    assert (served.blob_names(), served.rows()) == before


@pytest.mark.parametrize(
    ("header", "status", "span"),
    [
        ("bytes=0-4", 206, (0, 5)),
        ("bytes=5-", 206, (5, 20)),
        ("bytes=-3", 206, (17, 20)),
        ("bytes=-100", 206, (0, 20)),
        ("bytes=10-1000", 206, (10, 20)),
        ("bytes=19-19", 206, (19, 20)),
        ("BYTES = 1-2", 206, (1, 3)),
        # Several ranges, malformed or invalid ones, other units: ignored (everything).
        ("bytes=0-1,3-4", 200, (0, 20)),
        ("bytes=abc", 200, (0, 20)),
        ("bytes=5-2", 200, (0, 20)),
        ("bytes=-", 200, (0, 20)),
        ("items=0-1", 200, (0, 20)),
    ],
)
def test_ranges(served: Served, header: str, status: int, span: tuple[int, int]) -> None:
    data = b"0123456789abcdefghij"
    storage_id = served.upload(data)
    response = served.client.get(f"/api/storage/{storage_id}", headers={"range": header})
    assert response.status_code == status
    start, end = span
    assert response.content == data[start:end]
    assert response.headers["content-length"] == str(end - start)
    if status == 206:
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/20"
    else:
        assert "content-range" not in response.headers


@pytest.mark.parametrize("header", ["bytes=20-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges(served: Served, header: str) -> None:
    storage_id = served.upload(b"0123456789abcdefghij")
    response = served.client.get(f"/api/storage/{storage_id}", headers={"range": header})
    assert_error(response, 416, "RangeNotSatisfiable")
    assert response.headers["content-range"] == "bytes */20"


def test_deleted_file_answers_404_and_its_blob_goes(served: Served) -> None:
    storage_id = served.upload(b"short-lived")
    served.call("mutation", "files:remove", {"id": storage_id})
    assert served.call("query", "files:url", {"id": storage_id}) is None
    assert_error(served.client.get(f"/api/storage/{storage_id}"), 404, "FileNotFound")
    deadline = time.monotonic() + 5
    while served.blob_names():
        assert time.monotonic() < deadline, "the blob outlived its row"
        time.sleep(0.01)


def test_cors_preflight_for_browser_uploads(served: Served) -> None:
    response = served.client.options(
        served.upload_url(),
        headers={
            "origin": "https://app.example.com",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def nothing_stored(served: Served) -> Iterator[None]:
    """The test's bad requests leave no blob file and no ``_storage`` row behind."""
    existing = served.upload(b"already here")
    yield
    assert served.blob_names() == [existing]
    assert [row["_id"] for row in served.rows()] == [existing]


@pytest.mark.usefixtures("nothing_stored")
def test_bad_tokens(served: Served) -> None:
    client = served.client
    assert_error(client.post("/api/storage/upload", content=b"x"), 400, "MissingUploadToken")
    assert_error(client.post("/api/storage/upload?token=", content=b"x"), 400, "MissingUploadToken")
    assert_error(
        client.post("/api/storage/upload?token=forged", content=b"x"), 403, "InvalidUploadToken"
    )
    url = served.upload_url()
    token = url.split("token=")[1]
    tampered = url.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert_error(client.post(tampered, content=b"x"), 403, "InvalidUploadToken")


@pytest.mark.usefixtures("nothing_stored")
def test_expired_token(served: Served) -> None:
    url = served.upload_url()
    served.clock.advance(60 * 60 * 1000)
    body = assert_error(served.client.post(url, content=b"late"), 403, "UploadTokenExpired")
    assert "expired" in body["message"]


def test_reused_token(served: Served) -> None:
    url = served.upload_url()
    first = served.client.post(url, content=b"first")
    assert first.status_code == 200
    before = (served.blob_names(), served.rows())
    body = assert_error(served.client.post(url, content=b"second"), 403, "UploadTokenUsed")
    assert "already used" in body["message"]
    assert (served.blob_names(), served.rows()) == before


@pytest.mark.usefixtures("nothing_stored")
def test_oversized_uploads(served: Served) -> None:
    # Announced by Content-Length: refused before reading the body.
    too_big = served.client.post(served.upload_url(), content=b"x" * (MAX_UPLOAD + 1))
    body = assert_error(too_big, 413, "FileTooLarge")
    assert str(MAX_UPLOAD) in body["message"]

    # Chunked (no Content-Length): refused once the limit is passed mid-stream.
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"y" * 4096

    streamed = served.client.post(served.upload_url(), content=chunks())
    assert_error(streamed, 413, "FileTooLarge")
    # Exactly at the limit is fine.
    ok = served.client.post(served.upload_url(), content=b"z" * MAX_UPLOAD)
    assert ok.status_code == 200
    served.call("mutation", "files:remove", {"id": ok.json()["storageId"]})
    deadline = time.monotonic() + 5
    while len(served.blob_names()) > 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.usefixtures("nothing_stored")
def test_wrong_and_malformed_ids(served: Served) -> None:
    client = served.client
    assert_error(client.get(f"/api/storage/{new_id(2)}"), 404, "FileNotFound")
    assert client.head(f"/api/storage/{new_id(2)}").status_code == 404  # (no body for HEAD)
    doc_id = served.call("mutation", "files:make_doc")
    assert_error(client.get(f"/api/storage/{doc_id}"), 400, "InvalidStorageId")
    for bad in ["nope", "upload", "", "x" * 300, "0" * 32]:
        assert_error(client.get(f"/api/storage/{bad}"), 400, "InvalidStorageId")
    assert client.post(f"/api/storage/{new_id(2)}", content=b"x").status_code == 405


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    "path",
    [
        "/api/storage/..%2F..%2Fetc%2Fpasswd",
        "/api/storage/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/storage/..%252F..%252Fetc%252Fpasswd",
        "/api/storage/%2Fetc%2Fpasswd",
        "/api/storage/..%5C..%5Cwindows%5Cwin.ini",
        "/api/storage/....//....//etc/passwd",
        "/api/storage/files%2F..%2Fdata.sqlite3",
        "/api/storage/%00",
    ],
)
def test_path_traversal_attempts(served: Served, path: str) -> None:
    response = served.client.get(path)
    assert_error(response, 400, "InvalidStorageId")
    assert b"root:" not in response.content


@pytest.mark.usefixtures("nothing_stored")
def test_path_traversal_in_an_upload_url(served: Served) -> None:
    token = served.upload_url().split("token=")[1]
    response = served.client.post(
        f"/api/storage/..%2F..%2Ftmp%2Fevil?token={token}", content=b"evil"
    )
    assert response.status_code == 405  # only GET/HEAD below /api/storage/<id>


def test_storage_disabled(tmp_path: Path) -> None:
    functions = write_functions(tmp_path / "functions", {"x.py": ""})
    database = Database(SqlitePersistence(str(tmp_path / "db.sqlite3"), durability="off"))
    app = Application(database, functions)
    try:
        with TestClient(create_app(app)) as client:
            assert_error(client.get(f"/api/storage/{new_id(2)}"), 503, "FileStorageDisabled")
            assert_error(
                client.post("/api/storage/upload?token=x", content=b""), 503, "FileStorageDisabled"
            )
    finally:
        app.close()
