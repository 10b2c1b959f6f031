"""``_system/dashboard/files:*``: list, upload through a generated URL, remove."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from dashboard.conftest import DASHBOARD_FILES, PREFIX, Board
from server.conftest import MakeServer
from syncline.blobs import open_blob_store
from syncline.files.service import FileStorage

FIRST = {"numItems": 10, "cursor": None}


@pytest.fixture
def board(make_server: MakeServer, tmp_path: Path) -> Board:
    server = make_server(DASHBOARD_FILES)
    app = server.app
    app.public_url = "http://testserver"
    app.use_storage(
        FileStorage(
            app.database,
            open_blob_store(str(tmp_path / "files")),
            secret=b"k" * 32,
            clock=app.clock,
            origin=lambda: app.public_url,
        )
    )
    return Board(server)


def upload(board: Board, data: bytes, content_type: str) -> str:
    url = board.mutation("files:generateUploadUrl")
    assert url.startswith("http://testserver/api/storage/upload?token=")
    response = board.server.client.post(
        url.removeprefix("http://testserver"), content=data, headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    storage_id: str = response.json()["storageId"]
    return storage_id


def test_upload_list_download_and_remove(board: Board) -> None:
    ws = board.admin_ws()
    ws.add(0, PREFIX + "files:list", {"paginationOpts": FIRST})
    ws.until(lambda m: 0 in ws.state.results)
    assert ws.state.value(0)["page"] == []
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    first = upload(board, png, "image/png")
    second = upload(board, b"hello", "text/plain")
    ws.until(lambda m: len(ws.state.value(0)["page"]) == 2)
    listed = board.query("files:list", {"paginationOpts": FIRST})["page"]
    assert [f["_id"] for f in listed] == [second, first]
    image = listed[1]
    assert image["size"] == len(png)
    assert image["contentType"] == "image/png"
    assert image["sha256"] == base64.b64encode(hashlib.sha256(png).digest()).decode()
    assert image["url"] == f"http://testserver/api/storage/{first}"
    assert board.server.client.get(f"/api/storage/{first}").content == png

    assert board.mutation("files:remove", {"id": first}) is None
    ws.until(lambda m: len(ws.state.value(0)["page"]) == 1)
    assert board.server.client.get(f"/api/storage/{first}").status_code == 404
    gone = board.error("mutation", "files:remove", {"id": first})
    assert gone["code"] == "FileNotFound"
    assert board.error("mutation", "files:remove", {"id": "nope"})["code"] == "InvalidStorageId"


def test_without_file_storage_files_says_so(make_server: MakeServer) -> None:
    plain = Board(make_server(DASHBOARD_FILES))
    assert plain.error("query", "files:list", {"paginationOpts": FIRST})["code"] == "FilesDisabled"
