"""File storage over HTTP on S3 (moto): two nodes over one database and one bucket (a
file uploaded through one is served, ranged and deleted through the other, each node
with its own S3 client and file service), and a store that stops answering."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import blob_keys, write_functions
from syncline.application import Application
from syncline.server.app import create_app

from .test_storage_http import FUNCTIONS


def call(client: TestClient, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
    response = client.post(f"/api/{kind}", json={"path": path, "args": args or {}})
    body = response.json()
    assert body["status"] == "success", body
    return body["value"]


@pytest.fixture
def nodes(tmp_path: Path, s3_files: str) -> Iterator[list[tuple[Application, TestClient]]]:
    """Two workers of one project (as ``serve --workers 2`` opens them), files on S3."""
    project = tmp_path / "project"
    write_functions(project / "functions", FUNCTIONS)
    with ExitStack() as stack:
        out = []
        for name in ("node 1", "node 2"):
            app = Application.open(project, files=s3_files, worker=name, durability="off")
            stack.callback(app.close)
            app.public_url = "http://testserver"
            out.append((app, stack.enter_context(TestClient(create_app(app)))))
        yield out


def test_a_file_uploaded_through_one_node_is_read_through_the_other(
    nodes: list[tuple[Application, TestClient]],
) -> None:
    (first_app, first), (second_app, second) = nodes
    assert first_app.storage is not None and second_app.storage is not None
    assert first_app.storage.blobs is not second_app.storage.blobs
    data = bytes(range(256)) * 1000

    url = call(first, "mutation", "files:upload_url").removeprefix("http://testserver")
    storage_id = first.post(url, content=data, headers={"content-type": "image/png"}).json()[
        "storageId"
    ]
    download = call(second, "query", "files:url", {"id": storage_id})
    assert download == f"http://testserver/api/storage/{storage_id}"
    response = second.get(download)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    ranged = second.get(download, headers={"range": "bytes=1000-1999"})
    assert (ranged.status_code, ranged.content) == (206, data[1000:2000])

    # Deleted through the second node: the first answers 404 and the blob goes.
    call(second, "mutation", "files:remove", {"id": storage_id})
    assert first.get(download).status_code == 404
    deadline = time.monotonic() + 10
    while blob_keys(first_app.storage.blobs):
        assert time.monotonic() < deadline, "the blob outlived its row"
        time.sleep(0.02)


def test_an_unreachable_store_answers_503(
    nodes: list[tuple[Application, TestClient]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncline._devtools import free_port
    from syncline.blobs.s3 import S3BlobStore, parse_s3_url

    (app, client), _ = nodes
    assert app.storage is not None
    url = call(client, "mutation", "files:upload_url").removeprefix("http://testserver")
    storage_id = client.post(url, content=b"kept").json()["storageId"]
    dead = f"s3://bucket/files?endpoint=http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(app.storage, "blobs", S3BlobStore(parse_s3_url(dead), max_attempts=1))
    response = client.get(f"/api/storage/{storage_id}")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "FileStoreUnavailable"
    assert f"127.0.0.1:{dead.rsplit(':', 1)[1]}" in body["message"]
    upload = call(client, "mutation", "files:upload_url").removeprefix("http://testserver")
    assert client.post(upload, content=b"lost").status_code == 503
