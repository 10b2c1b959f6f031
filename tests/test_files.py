"""File storage: ``ctx.storage`` in every kind of function, ``_storage`` rows, upload tokens,
transactional deletion, and the sweep of orphaned blobs. (HTTP routes: tests/server.)"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import stat
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import MakeBackend, blob_keys, use_files, write_functions
from s3_moto import MotoS3, s3_env
from syncline.application import Application
from syncline.blobs import FileStoreUnavailable, LocalBlobStore
from syncline.clock import ManualClock
from syncline.database.database import Database
from syncline.errors import ConvexError, InvalidRequest
from syncline.files.errors import (
    DigestMismatch,
    FileNotFound,
    FileStorageError,
    FileTooLarge,
    InvalidStorageId,
    StorageNotAvailable,
    UploadTokenRejected,
)
from syncline.files.service import (
    DEFAULT_MAX_UPLOAD_BYTES,
    FileStorage,
    open_file_storage,
    parse_byte_size,
)
from syncline.files.upload_tokens import load_or_create_secret
from syncline.persistence.sqlite import SqlitePersistence
from syncline.testing import TestBackend
from syncline.values.ids import new_id

T = TypeVar("T")

FUNCTIONS = {
    "files.py": """
        from syncline import ConvexError, action, mutation, query, v


        @mutation
        def upload_url(ctx):
            return ctx.storage.generate_upload_url()


        @query(args={"id": v.id("_storage")})
        def url(ctx, id):
            return ctx.storage.get_url(id)


        @query(args={"id": v.any()})
        def url_of_anything(ctx, id):
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


        @mutation(args={"id": v.id("_storage")})
        def remove_then_fail(ctx, id):
            ctx.storage.delete(id)
            raise ConvexError("changed my mind")


        @mutation(args={"name": v.string()})
        def make_doc(ctx, name):
            return ctx.db.insert("docs", {"name": name})


        @query(args={"method": v.string()})
        def misuse_in_query(ctx, method):
            args = [] if method == "generate_upload_url" else ["x"]
            return getattr(ctx.storage, method)(*args)


        @mutation(args={"method": v.string()})
        def misuse_in_mutation(ctx, method):
            return getattr(ctx.storage, method)("x")


        @action(args={"text": v.string()})
        async def store_text(ctx, text):
            storage_id = await ctx.storage.store(text.encode(), "text/plain")
            data = await ctx.storage.get(storage_id)
            return {"id": storage_id, "url": await ctx.storage.get_url(storage_id), "data": data}


        @action(args={"parts": v.array(v.string()), "sha256": v.optional(v.string())})
        async def store_stream(ctx, parts, sha256=None):
            async def chunks():
                for part in parts:
                    yield part.encode()

            return await ctx.storage.store(chunks(), sha256=sha256)


        @action(args={"id": v.id("_storage")})
        async def read_in_chunks(ctx, id):
            reader = await ctx.storage.open(id)
            if reader is None:
                return None
            async with reader:
                sizes = [len(chunk) async for chunk in reader]
            return {"size": reader.size, "chunks": len(sizes), "total": sum(sizes),
                    "contentType": reader.content_type}


        @action(args={"id": v.id("_storage")})
        async def remove_in_action(ctx, id):
            await ctx.storage.delete(id)
            return await ctx.storage.get(id)


        @action
        async def url_from_action(ctx):
            return await ctx.storage.generate_upload_url()
    """,
}


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def action(t: TestBackend, path: str, args: dict[str, Any] | None = None) -> Any:
    return run(t.app.executor.action(path, args or {}, allow_internal=True)).unwrap()


def storage_of(t: TestBackend) -> FileStorage:
    assert t.app.storage is not None
    return t.app.storage


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
def t(make_backend: MakeBackend, files_location: str) -> TestBackend:
    return use_files(make_backend(FUNCTIONS), files_location)


def stored(t: TestBackend) -> list[str]:
    """The keys of the blobs in ``t``'s store."""
    return blob_keys(storage_of(t).blobs)


# ----------------------------------------------------------------------------- contents and rows


def test_store_in_an_action_and_read_everything_back(t: TestBackend) -> None:
    result = action(t, "files:store_text", {"text": "hello files"})
    storage_id = result["id"]
    assert result["data"] == b"hello files"
    assert result["url"] == f"http://127.0.0.1:3210/api/storage/{storage_id}"
    assert t.query("files:url", {"id": storage_id}) == result["url"]

    row = t.query("files:meta", {"id": storage_id})
    assert set(row) == {"_id", "_creationTime", "sha256", "size", "contentType"}
    assert row["sha256"] == b64sha(b"hello files")  # base64, as npm clients >= 1.9 expect
    assert row["size"] == 11.0 and isinstance(row["size"], float)
    assert row["contentType"] == "text/plain"
    assert isinstance(row["_creationTime"], float) and row["_creationTime"] > 0
    assert t.query("files:listing") == [row]
    assert t.get_file(storage_id) == b"hello files"
    # The blob lives under the storage id.
    assert stored(t) == [storage_id]


def test_creation_times_interleave_with_other_writes(t: TestBackend) -> None:
    """A file's row takes a creation time like any insert: strictly after earlier writes."""
    first = t.mutation("files:make_doc", {"name": "before"})
    storage_id = t.store_file(b"x")
    last = t.mutation("files:make_doc", {"name": "after"})
    times = t.run(
        lambda ctx: [
            ctx.db.get(first)["_creationTime"],
            ctx.db.system.get(storage_id)["_creationTime"],
            ctx.db.get(last)["_creationTime"],
        ]
    )
    assert times[0] < times[1] < times[2], times


def test_streamed_store_without_content_type(t: TestBackend) -> None:
    parts = ["a" * 1000, "b" * 3000, "", "c"]
    storage_id = action(t, "files:store_stream", {"parts": parts})
    data = "".join(parts).encode()
    row = t.query("files:meta", {"id": storage_id})
    assert "contentType" not in row
    assert (row["size"], row["sha256"]) == (len(data), b64sha(data))
    assert t.get_file(storage_id) == data


def test_open_streams_chunks(t: TestBackend) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: several read chunks
    storage_id = t.store_file(data, "application/x-test")
    info = action(t, "files:read_in_chunks", {"id": storage_id})
    assert info["size"] == info["total"] == len(data)
    assert info["chunks"] > 1
    assert info["contentType"] == "application/x-test"


@pytest.mark.parametrize("encode", [lambda d: d.hex(), lambda d: base64.b64encode(d).decode()])
def test_store_verifies_a_given_sha256(t: TestBackend, encode: Any) -> None:
    good = encode(hashlib.sha256(b"abc").digest())
    storage_id = action(t, "files:store_stream", {"parts": ["a", "bc"], "sha256": good})
    assert t.get_file(storage_id) == b"abc"

    bad = encode(hashlib.sha256(b"something else").digest())
    with pytest.raises(DigestMismatch, match="SHA-256"):
        action(t, "files:store_stream", {"parts": ["abc"], "sha256": bad})
    with pytest.raises(FileStorageError, match="not a SHA-256 digest") as caught:
        action(t, "files:store_stream", {"parts": ["abc"], "sha256": "nope"})
    assert caught.value.code == "InvalidDigest"
    assert len(t.query("files:listing")) == 1
    assert len(stored(t)) == 1


def test_store_too_large_stores_nothing(tmp_path: Path, files_location: str) -> None:
    functions = write_functions(tmp_path / "functions", FUNCTIONS)
    with use_files(TestBackend(functions, data_dir=tmp_path / "data"), files_location) as t:
        storage_of(t).max_upload_bytes = 10
        assert t.get_file(action(t, "files:store_stream", {"parts": ["0123456789"]}))
        with pytest.raises(FileTooLarge, match="upload limit of 10 bytes") as caught:
            action(t, "files:store_stream", {"parts": ["01234", "567890"]})
        assert caught.value.http_status == 413
        assert len(t.query("files:listing")) == 1
        assert len(stored(t)) == 1


def test_store_rejects_non_bytes(t: TestBackend) -> None:
    with pytest.raises(TypeError, match="bytes"):
        run(storage_of(t).store("a str is not bytes"))
    with pytest.raises(TypeError, match="chunks must be bytes"):
        run(storage_of(t).store([b"ok", 5]))
    assert stored(t) == []


# ----------------------------------------------------------------------------- ctx.storage rules


@pytest.mark.parametrize(
    ("method", "hint"),
    [
        ("generate_upload_url", "mutation or an action"),
        ("delete", "mutation or an action"),
        ("store", "Use an action"),
        ("get", "Use an action"),
        ("open", "Use an action"),
    ],
)
def test_query_storage_methods_say_where_to_go(t: TestBackend, method: str, hint: str) -> None:
    with pytest.raises(StorageNotAvailable, match=hint) as caught:
        t.query("files:misuse_in_query", {"method": method})
    assert f"ctx.storage.{method}() is not available in a query" in str(caught.value)


@pytest.mark.parametrize("method", ["store", "get", "open"])
def test_mutations_cannot_touch_contents(t: TestBackend, method: str) -> None:
    with pytest.raises(StorageNotAvailable, match="Use an action") as caught:
        t.mutation("files:misuse_in_mutation", {"method": method})
    assert "in a mutation" in str(caught.value)


def test_get_url_of_missing_and_invalid_ids(t: TestBackend) -> None:
    gone = new_id(2)
    assert t.query("files:url", {"id": gone}) is None
    doc_id = t.mutation("files:make_doc", {"name": "x"})
    for bad in [doc_id, "not-an-id", "../../etc/passwd", 5]:
        with pytest.raises(InvalidStorageId, match="is not a storage id"):
            t.query("files:url_of_anything", {"id": bad})


def test_upload_urls_from_mutations_and_actions(t: TestBackend) -> None:
    storage = storage_of(t)
    for url in (t.mutation("files:upload_url"), action(t, "files:url_from_action")):
        assert url.startswith("http://127.0.0.1:3210/api/storage/upload?token=")
        grant = storage.check_upload_token(url.split("token=", 1)[1])
        assert grant.expires_ms == int(t.clock.now_ms()) + 3_600_000
    t.app.public_url = "https://files.example.com/"
    assert t.mutation("files:upload_url").startswith(
        "https://files.example.com/api/storage/upload?token="
    )


# ----------------------------------------------------------------------------- deletion


def test_delete_in_a_mutation(t: TestBackend) -> None:
    storage_id = t.store_file(b"bye")
    t.mutation("files:remove", {"id": storage_id})
    assert t.query("files:url", {"id": storage_id}) is None
    assert t.query("files:listing") == []
    assert t.get_file(storage_id) is None
    with pytest.raises(FileNotFound, match="no file"):
        t.mutation("files:remove", {"id": storage_id})


def test_a_mutation_that_deletes_then_fails_keeps_the_file(t: TestBackend) -> None:
    storage_id = t.store_file(b"precious")
    with pytest.raises(ConvexError, match="changed my mind"):
        t.mutation("files:remove_then_fail", {"id": storage_id})
    assert t.query("files:url", {"id": storage_id}) is not None
    assert t.get_file(storage_id) == b"precious"
    assert stored(t) == [storage_id]


def open_started_app(root: Path, files: str, clock: ManualClock | None = None) -> Application:
    functions = write_functions(root / "functions", FUNCTIONS)
    return Application.open(root, functions=functions, clock=clock, durability="off", files=files)


async def wait_until_gone(storage: FileStorage, key: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await storage.blobs.exists(key):
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_blobs_go_after_the_delete_commits_and_never_before(
    tmp_path: Path, files_location: str
) -> None:
    app = open_started_app(tmp_path, files_location)
    storage = app.storage
    assert storage is not None

    async def scenario() -> None:
        await app.start()
        try:
            kept = await storage.store(b"kept")
            doomed = await storage.store(b"doomed")
            failed = await app.executor.mutation("files:remove_then_fail", {"id": kept})
            assert isinstance(failed.error, ConvexError)
            done = await app.executor.mutation("files:remove", {"id": doomed})
            assert done.ok, done.error
            await wait_until_gone(storage, doomed)
            assert await storage.blobs.exists(kept)
            # Deleting from an action: its own transaction, then the blob.
            other = await storage.store(b"other")
            outcome = await app.executor.action("files:remove_in_action", {"id": other})
            assert outcome.ok and outcome.value is None
            await wait_until_gone(storage, other)
        finally:
            await app.stop()

    try:
        run(scenario())
    finally:
        app.close()


def test_sweep_removes_orphans_only(tmp_path: Path, files_location: str) -> None:
    app = open_started_app(tmp_path, files_location)
    storage = app.storage
    assert storage is not None

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async def scenario() -> None:
        live = await storage.store(b"has a row")
        orphan = new_id(2)  # a blob whose row never committed (a crash in between)
        await storage.blobs.put(orphan, chunks(b"orphan"))
        foreign = "not-a-storage-id"
        await storage.blobs.put(foreign, chunks(b"not ours to judge"))
        # Too young: its row may be about to commit.
        assert await storage.collect_garbage() == 0
        assert await storage.blobs.exists(orphan)
        assert await storage.collect_garbage(grace_s=0) == 1
        assert not await storage.blobs.exists(orphan)
        assert await storage.blobs.exists(live)
        assert await storage.blobs.exists(foreign)

    try:
        run(scenario())
    finally:
        app.close()


# ----------------------------------------------------------------------------- tokens


def token_of(url: str) -> str:
    return url.split("token=", 1)[1]


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_tokens_expire_after_an_hour(t: TestBackend) -> None:
    storage = storage_of(t)
    token = token_of(t.mutation("files:upload_url"))
    t.clock.advance(3_600_000 - 1)
    storage.check_upload_token(token)
    t.clock.advance(1)
    with pytest.raises(UploadTokenRejected, match="expired") as caught:
        run(storage.upload(token, one_chunk(b"late")))
    assert caught.value.code == "UploadTokenExpired"
    assert t.query("files:listing") == [] and stored(t) == []


def test_forged_and_malformed_tokens(t: TestBackend, tmp_path: Path) -> None:
    storage = storage_of(t)
    token = token_of(t.mutation("files:upload_url"))
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    other_deployment = FileStorage(
        t.database, storage.blobs, secret=b"s" * 32, clock=t.clock
    ).generate_upload_url()
    cases = {
        flipped: "InvalidUploadToken",
        token_of(other_deployment): "InvalidUploadToken",
        token[:-1]: "InvalidUploadToken",
        token + "A": "InvalidUploadToken",
        "!" * len(token): "InvalidUploadToken",
    }
    for bad, code in cases.items():
        with pytest.raises(UploadTokenRejected) as caught:
            run(storage.upload(bad, one_chunk(b"x")))
        assert caught.value.code == code, bad
    for missing in (None, ""):
        with pytest.raises(FileStorageError, match="Missing upload token") as missing_error:
            run(storage.upload(missing, one_chunk(b"x")))
        assert missing_error.value.code == "MissingUploadToken"
    assert t.query("files:listing") == [] and stored(t) == []


def test_a_token_uploads_one_file(t: TestBackend) -> None:
    storage = storage_of(t)
    token = token_of(t.mutation("files:upload_url"))
    first = run(storage.upload(token, one_chunk(b"first"), content_type="text/plain"))
    with pytest.raises(UploadTokenRejected, match="already used") as caught:
        run(storage.upload(token, one_chunk(b"second")))
    assert caught.value.code == "UploadTokenUsed"
    assert [row["_id"] for row in t.query("files:listing")] == [first]
    assert stored(t) == [first]
    # Deleting the file does not free its token.
    t.mutation("files:remove", {"id": first})
    with pytest.raises(UploadTokenRejected, match="already used"):
        run(storage.upload(token, one_chunk(b"third")))


def test_concurrent_uses_of_one_token(t: TestBackend) -> None:
    storage = storage_of(t)
    token = token_of(t.mutation("files:upload_url"))

    async def slow(data: bytes) -> AsyncIterator[bytes]:
        await asyncio.sleep(0.05)
        yield data

    async def both() -> list[Any]:
        return await asyncio.gather(
            storage.upload(token, slow(b"a")),
            storage.upload(token, slow(b"b")),
            return_exceptions=True,
        )

    results = run(both())
    ids = [r for r in results if isinstance(r, str)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(ids) == 1 and len(errors) == 1, results
    assert isinstance(errors[0], UploadTokenRejected) and errors[0].code == "UploadTokenUsed"
    assert stored(t) == ids


def test_a_used_token_stays_used_across_restarts(tmp_path: Path, files_location: str) -> None:
    clock = ManualClock()
    app = open_started_app(tmp_path, files_location, clock)
    try:
        storage = app.storage
        assert storage is not None
        token = token_of(storage.generate_upload_url())
        run(storage.upload(token, one_chunk(b"once")))
    finally:
        app.close()
    app = open_started_app(tmp_path, files_location, clock)
    try:
        assert app.storage is not None
        app.storage.check_upload_token(token)  # same secret: still a valid signature
        with pytest.raises(UploadTokenRejected, match="already used"):
            run(app.storage.upload(token, one_chunk(b"twice")))
    finally:
        app.close()


def test_upload_url_lifetime_needs_matching_request_retention(tmp_path: Path) -> None:
    database = Database(
        SqlitePersistence(str(tmp_path / "db.sqlite3"), durability="off"),
        session_request_retention_ns=10**9,
    )
    try:
        with pytest.raises(ValueError, match="request records"):
            FileStorage(database, LocalBlobStore(tmp_path / "f"), secret=b"k" * 32)
    finally:
        database.close()


# ----------------------------------------------------------------------------- configuration


def test_secret_is_private_stable_and_checked(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert len(first) == 32
    path = tmp_path / "storage_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == ["storage_secret"]  # no temp file left
    path.write_text("short")
    with pytest.raises(Exception, match="damaged"):
        load_or_create_secret(tmp_path)


def test_file_store_locations_that_cannot_be_opened(
    tmp_path: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(monkeypatch)
    with pytest.raises(FileStoreUnavailable, match="the bucket does not exist") as caught:
        Application.open(tmp_path, files=moto_s3.url("no-such-bucket"), load=False)
    assert caught.value.code == "FileStoreUnavailable"
    with pytest.raises(InvalidRequest, match="expected a directory path") as unsupported:
        open_file_storage("gs://bucket", database=None, secret_dir=tmp_path)  # type: ignore[arg-type]
    assert unsupported.value.code == "UnsupportedFileStore"


def test_files_location(tmp_path: Path) -> None:
    app = Application.open(tmp_path, load=False)
    try:
        assert app.storage is not None
        assert app.storage.blobs.root == tmp_path / ".syncline" / "files"  # type: ignore[attr-defined]
        assert app.storage.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 1 << 30
    finally:
        app.close()
    elsewhere = tmp_path / "elsewhere"
    app = Application.open(tmp_path, files=elsewhere, load=False, max_upload_bytes=123)
    try:
        assert app.storage is not None
        assert app.storage.blobs.root == elsewhere  # type: ignore[attr-defined]
        assert app.storage.max_upload_bytes == 123
    finally:
        app.close()


def test_cli_file_options_fail_clearly(
    tmp_path: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from syncline._devtools import free_ports
    from syncline.cli import main

    (tmp_path / "functions").mkdir()
    s3_env(monkeypatch)
    runner = CliRunner()
    # Ports are bound first: free ones, so that only the --files error can stop it.
    port, site_port = (str(p) for p in free_ports(2))
    s3 = runner.invoke(
        main,
        [
            "serve",
            "--dir",
            str(tmp_path),
            "--files",
            moto_s3.url("no-such-bucket"),
            "--port",
            port,
            "--site-port",
            site_port,
        ],
    )
    assert s3.exit_code == 1
    assert "the bucket does not exist" in s3.output, s3.output
    bad_url = runner.invoke(main, ["dev", "--dir", str(tmp_path), "--public-url", "example.com"])
    assert bad_url.exit_code == 2 and "not an http:// or https:// URL" in bad_url.output
    bad_size = runner.invoke(main, ["serve", "--dir", str(tmp_path), "--max-upload-size", "lots"])
    assert bad_size.exit_code == 2 and "is not a size" in bad_size.output


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("1GiB", 1 << 30),
        ("500MB", 500_000_000),
        ("1.5 kib", 1536),
        ("2tb", 2 * 10**12),
        ("10B", 10),
    ],
)
def test_parse_byte_size(text: str, size: int) -> None:
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-5", "0", "1 GB extra", "5 XB"])
def test_parse_byte_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_byte_size(text)
