"""File storage against real ``syncline serve`` processes.

* The official npm client (``js/storage.mjs``): upload URL from a mutation,
  ``fetch`` POST, storageId saved by a mutation, URL from a live query,
  byte-identical download, single-use URLs, Range, deletion going live.
* The Python clients (``syncline.client.Client`` and PyPI ``convex``) with
  httpx for the POST and GET.
* Path traversal sent raw on the socket (no client normalises the path).
* 200 MB (100 MB on S3) up and down with the server's memory watched
  (``bench/files.py``),
  on a local folder and on S3 (moto).

The client tests run with the server's files in a local folder and in S3 (moto).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import require_module, require_node_package
from syncline.client import Client

from .test_js_client import JS_DIR, run_scenario

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

FILES_MODULE = """
    from syncline import mutation, query, v


    @mutation
    def generate_upload_url(ctx):
        return ctx.storage.generate_upload_url()


    @mutation(args={"storageId": v.id("_storage"), "name": v.string()})
    def save_file(ctx, storageId, name):
        return ctx.db.insert("uploads", {"storageId": storageId, "name": name})


    @query(args={"id": v.id("uploads")})
    def get_file(ctx, id):
        doc = ctx.db.get(id)
        if doc is None:
            return None
        return {
            "name": doc["name"],
            "url": ctx.storage.get_url(doc["storageId"]),
            "meta": ctx.db.system.get(doc["storageId"]),
        }


    @mutation(args={"id": v.id("uploads")})
    def delete_file(ctx, id):
        ctx.storage.delete(ctx.db.get(id)["storageId"])
"""


@pytest.fixture
def files_server(project: Any, start_server: Any, files_location: str) -> Any:
    """A server whose files are in a folder, then in a bucket on moto (the environment
    holds the bucket's credentials, which the server inherits)."""
    return start_server(project({"files.py": FILES_MODULE}), args=["--files", files_location])


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_upload_flow_with_the_npm_client(files_server: Any) -> None:
    require_node_package(JS_DIR, "convex")
    result = run_scenario("storage.mjs", files_server)
    assert result["checks"]["the download is byte-identical"]["ok"]
    assert result["results"]["size"] == 300_000


def test_upload_flow_with_the_python_clients(files_server: Any) -> None:
    data = os.urandom(150_000)
    with Client(files_server.url) as client:
        upload_url = client.mutation("files:generate_upload_url")
        assert upload_url.startswith(f"{files_server.url}/api/storage/upload?token=")
        response = httpx.post(upload_url, content=data, headers={"content-type": "application/pdf"})
        assert response.status_code == 200, response.text
        storage_id = response.json()["storageId"]
        doc_id = client.mutation("files:save_file", {"storageId": storage_id, "name": "py"})
        info = client.query("files:get_file", {"id": doc_id})
    assert info["url"] == f"{files_server.url}/api/storage/{storage_id}"
    assert info["meta"]["sha256"] == b64sha(data)
    assert info["meta"]["size"] == len(data)
    download = httpx.get(info["url"])
    assert download.content == data
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["digest"] == f"sha-256={b64sha(data)}"

    # The official PyPI client, same flow.
    from convex import ConvexClient

    official = ConvexClient(files_server.url)
    second_url = official.mutation("files:generate_upload_url")
    second_id = httpx.post(second_url, content=b"from convex-py").json()["storageId"]
    second_doc = official.mutation("files:save_file", {"storageId": second_id, "name": "convex"})
    second = official.query("files:get_file", {"id": second_doc})
    assert httpx.get(second["url"]).content == b"from convex-py"

    # Reusing an upload URL is refused; deleting a file makes its URL 404.
    reused = httpx.post(upload_url, content=b"again")
    assert (reused.status_code, reused.json()["code"]) == (403, "UploadTokenUsed")
    official.mutation("files:delete_file", {"id": second_doc})
    gone = httpx.get(second["url"])
    assert (gone.status_code, gone.json()["code"]) == (404, "FileNotFound")
    assert official.query("files:get_file", {"id": second_doc})["url"] is None


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET with the request target sent exactly as given."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


TRAVERSALS = [
    "/api/storage/../../etc/passwd",
    "/api/storage/..%2F..%2Fetc%2Fpasswd",
    "/api/storage/%2e%2e/%2e%2e/etc/passwd",
    "/api/storage/..\\..\\etc\\passwd",
    "/api/storage/../.syncline/data.sqlite3",
    "/api/storage/../.syncline/storage_secret",
]


def test_raw_path_traversal(files_server: Any) -> None:
    """Request targets sent byte for byte: every one is refused as not a storage id."""
    for target in TRAVERSALS:
        status, body = raw_get(files_server.port, target)
        assert status == 400, (target, status, body[:200])
        assert json.loads(body)["code"] == "InvalidStorageId", target


@pytest.mark.parametrize(
    ("size_mb", "where"),
    # moto (an S3 emulator) takes uploads at some 20 MB/s: less data, as many parts.
    [(200, []), (100, ["--moto"])],
    ids=["local", "s3"],
)
def test_large_files_stream_with_bounded_server_memory(
    tmp_path: Path, size_mb: int, where: list[str]
) -> None:
    """Runs bench/files.py: 200 MB (100 on S3) up and down; the server's RSS grows by < 50 MB."""
    if where:
        require_module("moto.server", "pip install 'moto[server]' (in the dev extra)")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "files.py"),
            "--size-mb",
            str(size_mb),
            "--json",
            *where,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["identical"], figures
    assert figures["size_bytes"] == size_mb * 1024 * 1024
    assert figures["rss_growth_mb"] < 50, figures
    assert figures["hwm_growth_mb"] < 50, figures
