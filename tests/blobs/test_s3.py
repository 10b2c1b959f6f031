"""S3BlobStore beyond the shared contract: the ``--files s3://`` URL, start-up checks,
multipart uploads in bounded memory, readers pinned to what they opened, and the
client library loaded only when S3 is used."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from harness import require_module
from s3_moto import MotoS3, s3_env
from syncline.blobs import (
    BlobStore,
    FileStoreUnavailable,
    InvalidFileStoreLocation,
    open_blob_store,
)
from syncline.errors import InvalidRequest

from .support import collect, read_all, run, s3_leftovers, stream

s3 = require_module("syncline.blobs.s3", "pip install 'syncline[s3]' (in the dev extra)")
MiB = 1024 * 1024


@pytest.fixture
def store(s3_files: str) -> Any:
    return s3.S3BlobStore.connect(s3_files, part_size=s3.MIN_PART_SIZE)


# ----------------------------------------------------------------------------- the URL


def test_url_options_and_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://general:9000",
        "AWS_ENDPOINT_URL_S3": "http://minio:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-central-1",
    }
    loc = s3.parse_s3_url("s3://my-bucket/a//b/", env)
    assert (loc.bucket, loc.prefix, loc.endpoint_url, loc.region, loc.addressing) == (
        "my-bucket",
        "a/b/",
        "http://minio:9000",
        "eu-central-1",
        "path",
    )
    assert str(loc) == "s3://my-bucket/a/b/ at http://minio:9000"
    loc = s3.parse_s3_url(
        "s3://my-bucket?endpoint=https://acc.r2.cloudflarestorage.com&region=auto"
        "&addressing=virtual",
        env,
    )
    assert (loc.prefix, loc.endpoint_url, loc.region, loc.addressing) == (
        "",
        "https://acc.r2.cloudflarestorage.com",
        "auto",
        "virtual",
    )
    loc = s3.parse_s3_url("s3://my-bucket/files", {"AWS_ENDPOINT_URL": "http://general:9000"})
    assert (loc.endpoint_url, loc.region) == ("http://general:9000", "us-east-1")
    loc = s3.parse_s3_url("s3://my-bucket/files", {"AWS_DEFAULT_REGION": "ap-south-1"})
    assert (loc.endpoint_url, loc.region, loc.addressing) == (None, "ap-south-1", "auto")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3:///files", "expected s3://BUCKET"),
        ("s3://B/files", "Invalid S3 bucket name 'B'"),
        ("s3://ab/files", "Invalid S3 bucket name 'ab'"),
        ("s3://bucket/../x", "Invalid S3 prefix"),
        ("s3://bucket/x?secret_key=abc", "Unknown option 'secret_key'.*credentials come from"),
        ("s3://bucket/x?region=", "needs one value"),
        ("s3://bucket/x?endpoint=minio:9000", "expected an http:// or https:// URL"),
        ("s3://bucket/x?addressing=sideways", "Invalid addressing 'sideways'"),
    ],
)
def test_invalid_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidFileStoreLocation, match=message) as caught:
        open_blob_store(url)
    assert caught.value.code == "InvalidFileStoreLocation"
    assert isinstance(caught.value, InvalidRequest)


def test_other_schemes_are_refused() -> None:
    with pytest.raises(InvalidFileStoreLocation, match="expected a directory path") as caught:
        open_blob_store("gs://bucket/files")
    assert caught.value.code == "UnsupportedFileStore"


def test_without_the_extra_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "syncline.blobs.s3", None)  # as if aiobotocore were absent
    with pytest.raises(InvalidFileStoreLocation, match=r"pip install 'syncline\[s3\]'") as caught:
        open_blob_store("s3://bucket/files")
    assert caught.value.code == "UnsupportedFileStore"


def test_the_client_is_loaded_only_for_s3() -> None:
    code = (
        "import sys, tempfile\n"
        "from syncline.blobs import open_blob_store\n"
        "open_blob_store(tempfile.mkdtemp())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiobotocore', 'botocore', 'aiohttp') or m == 'syncline.blobs.s3'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- start-up checks


def test_a_missing_bucket_fails_at_open(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch)
    with pytest.raises(FileStoreUnavailable, match="the bucket does not exist") as caught:
        open_blob_store(moto_s3.url("no-such-bucket"))
    assert (caught.value.code, caught.value.http_status) == ("FileStoreUnavailable", 503)
    assert "s3://no-such-bucket/files/" in str(caught.value)


def test_an_unreachable_endpoint_fails_at_open(monkeypatch: pytest.MonkeyPatch) -> None:
    from syncline._devtools import free_port

    s3_env(monkeypatch)
    url = f"s3://bucket/files?endpoint=http://127.0.0.1:{free_port()}"
    with pytest.raises(FileStoreUnavailable, match="could not reach its bucket"):
        s3.S3BlobStore.connect(url, connect_timeout_s=1.0, max_attempts=1)


def test_the_endpoint_from_the_environment(
    moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(monkeypatch)
    bucket = moto_s3.new_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3.endpoint)
    store = open_blob_store(f"s3://{bucket}/env")
    run(store.put("k", stream([b"via the environment"])))
    assert str(store) == f"s3://{bucket}/env/ at {moto_s3.endpoint}"
    assert run(s3_leftovers(store)) == ["env/k"]


def test_part_size_below_the_s3_minimum_is_refused() -> None:
    loc = s3.parse_s3_url("s3://bucket/files", {})
    with pytest.raises(ValueError, match="at least 5242880"):
        s3.S3BlobStore(loc, part_size=MiB)


# ----------------------------------------------------------------------------- layout


def test_keys_live_under_the_prefix_and_nothing_else_is_listed(store: Any) -> None:
    async def scenario() -> list[tuple[str, int]]:
        await store.put("mine", stream([b"12"]))
        client = await store._client()
        bucket = store.location.bucket
        for name in ("elsewhere", "files/sub/deeper", "files/not.a.key", "files-other/x"):
            await client.put_object(Bucket=bucket, Key=name, Body=b"x")
        return await collect(store)

    assert run(scenario()) == [("mine", 2)]


# ----------------------------------------------------------------------------- uploads


def test_multipart_parts_are_bounded(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts are at least part_size but the last; one part goes up while the next fills."""
    sizes: list[int] = []
    active = [0, 0]  # now, most at once
    upload = s3._Multipart._upload

    async def watched(self: Any, number: int, data: bytes) -> None:
        sizes.append(len(data))
        active[0] += 1
        active[1] = max(active)
        try:
            await upload(self, number, data)
        finally:
            active[0] -= 1

    monkeypatch.setattr(s3._Multipart, "_upload", watched)
    chunks = [b"p" * (MiB + 3)] * 13  # 13 MiB and change, in odd-sized chunks
    info = run(store.put("parts", stream(chunks)))
    assert info.size == sum(map(len, chunks))
    assert sum(sizes) == info.size
    assert all(s3.MIN_PART_SIZE <= s < s3.MIN_PART_SIZE + MiB + 3 for s in sizes[:-1]), sizes
    assert len(sizes) == 3 and active[1] == 1
    assert run(read_all_key(store, "parts")) == b"".join(chunks)


async def read_all_key(store: BlobStore, key: str) -> bytes:
    return await read_all(await store.open(key))


def test_a_failed_completion_aborts_the_upload(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: Any) -> None:
        await self.wait()
        raise ConnectionResetError("connection lost while completing")

    monkeypatch.setattr(s3._Multipart, "complete", refuse)
    with pytest.raises(ConnectionResetError):
        run(store.put("k", stream([b"c" * (3 * MiB)] * 3)))
    assert run(s3_leftovers(store)) == []


# ----------------------------------------------------------------------------- readers


def test_a_replacement_between_head_and_get_is_seen(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GET is conditional on the ETag the HEAD saw: a reader never mixes versions."""
    head = s3.S3BlobStore._head
    replaced: list[bool] = []

    async def head_then_replace(self: Any, client: Any, name: str) -> Any:
        seen = await head(self, client, name)
        if not replaced:
            replaced.append(True)
            await client.put_object(Bucket=self.location.bucket, Key=name, Body=b"second")
        return seen

    monkeypatch.setattr(s3.S3BlobStore, "_head", head_then_replace)

    async def scenario() -> tuple[int, bytes]:
        await store.put("k", stream([b"first version"]))
        reader = await store.open("k")
        return reader.size, await read_all(reader)

    assert run(scenario()) == (6, b"second")


def test_a_versioned_bucket_pins_the_version(
    moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(monkeypatch)
    store = open_blob_store(moto_s3.url(moto_s3.new_bucket(versioned=True)))

    async def scenario() -> tuple[bytes, bytes, bool]:
        await store.put("k", stream([b"version one"]))
        first = await store.open("k")
        await store.put("k", stream([b"version two"]))
        second = await store.open("k", 8)
        deleted = await store.delete("k")
        return await read_all(first), await read_all(second), deleted

    assert run(scenario()) == (b"version one", b"two", True)
    assert run(store.exists("k")) is False
