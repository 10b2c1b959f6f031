"""What a client's (session id, request id) may answer: only its own call, never an upload token.

Mutation records and used upload tokens are kept apart, and a resent request
is answered from its record only when it is the same call (function path,
arguments and caller).
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from conftest import MakeBackend
from stores import open_store, sqlite_only
from syncline.errors import InvalidRequest
from syncline.files.errors import UploadTokenRejected
from syncline.functions.outcomes import Outcome
from syncline.identity import ANONYMOUS, Identity, User, UserIdentity
from syncline.testing import TestBackend

T = TypeVar("T")

FUNCTIONS = {
    "notes.py": """
        from syncline import mutation, query, v


        @mutation(args={"text": v.string()})
        def add(ctx, text):
            return ctx.db.insert("notes", {"text": text})


        @mutation(args={"text": v.string()})
        def add_twice(ctx, text):
            ctx.db.insert("notes", {"text": text})
            return ctx.db.insert("notes", {"text": text})


        @query
        def count(ctx):
            return len(ctx.db.query("notes").collect())


        @mutation
        def upload_url(ctx):
            return ctx.storage.generate_upload_url()
    """,
}


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def nonce_of(upload_url: str) -> bytes:
    token = upload_url.split("token=", 1)[1]
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))[:16]


def user(subject: str, token: str = "jwt") -> User:
    attributes = {"issuer": "https://issuer.test", "subject": subject}
    return User(user=UserIdentity.from_attributes(attributes), expires_at_ms=None, token=token)


@pytest.fixture
def t(make_backend: MakeBackend) -> TestBackend:
    return make_backend(FUNCTIONS)


def send(
    t: TestBackend,
    session_id: str,
    request_id: int,
    path: str = "notes:add",
    args: dict[str, Any] | None = None,
    identity: Identity = ANONYMOUS,
) -> Outcome:
    return run(
        t.app.session_mutation(
            path,
            {"text": "a"} if args is None else args,
            identity=identity,
            session_id=session_id,
            request_id=request_id,
        )
    )


def test_a_resent_request_is_answered_from_its_record(t: TestBackend) -> None:
    session = str(uuid.uuid4())
    first = send(t, session, 1, identity=user("ada", token="jwt-1"))
    # The same user with a refreshed token makes the same call.
    again = send(t, session, 1, identity=user("ada", token="jwt-2"))
    assert first.error is None and again.error is None
    assert (again.value, again.ts) == (first.value, first.ts)
    assert t.query("notes:count") == 1


@pytest.mark.parametrize(
    ("path", "args", "identity"),
    [
        pytest.param("notes:add_twice", {"text": "a"}, ANONYMOUS, id="another function"),
        pytest.param("notes:add", {"text": "b"}, ANONYMOUS, id="other arguments"),
        pytest.param("notes:add", {"text": "a"}, user("eve"), id="another caller"),
    ],
)
def test_request_ids_reused_for_another_call_are_refused(
    t: TestBackend, path: str, args: dict[str, Any], identity: Identity
) -> None:
    session = str(uuid.uuid4())
    first = send(t, session, 3)
    assert first.error is None

    reused = send(t, session, 3, path, args, identity)

    assert isinstance(reused.error, InvalidRequest), reused.value
    assert reused.error.code == "RequestIdReused"
    assert "Request 3 of session" in reused.error.message
    assert reused.value != first.value
    assert t.query("notes:count") == 1


def test_a_session_named_like_a_token_record_cannot_read_a_token(t: TestBackend) -> None:
    storage = t.app.storage
    assert storage is not None
    url = t.mutation("notes:upload_url")
    stored = run(storage.upload(url.split("token=", 1)[1], one_chunk(b"someone's file")))

    outcome = send(t, f"syncline:upload-token:{nonce_of(url).hex()}", 0)

    assert outcome.error is None
    assert outcome.value != stored
    assert t.query("notes:count") == 1


def test_a_session_named_like_a_token_record_cannot_burn_a_token(t: TestBackend) -> None:
    storage = t.app.storage
    assert storage is not None
    url = t.mutation("notes:upload_url")

    assert send(t, f"syncline:upload-token:{nonce_of(url).hex()}", 0).error is None

    token = url.split("token=", 1)[1]
    stored = run(storage.upload(token, one_chunk(b"mine")))
    assert t.get_file(stored) == b"mine"
    with pytest.raises(UploadTokenRejected, match="already used"):
        run(storage.upload(token, one_chunk(b"twice")))


@sqlite_only
def test_a_data_folder_with_the_old_shared_table_opens(tmp_path: Path) -> None:
    """Old records: used upload tokens stay used; mutation records are dropped."""
    path = tmp_path / "data.sqlite3"
    open_store(path, durability="off").close()
    nonce = bytes(range(16))
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "CREATE TABLE session_requests (session_id TEXT NOT NULL, request_id INTEGER "
            "NOT NULL, ts INTEGER NOT NULL, result BLOB NOT NULL, "
            "PRIMARY KEY (session_id, request_id)) WITHOUT ROWID"
        )
        conn.executemany(
            "INSERT INTO session_requests VALUES (?, ?, ?, ?)",
            [
                (f"syncline:upload-token:{nonce.hex()}", 0, 5, orjson.dumps("kg2storage")),
                ("syncline:upload-token:not-hex", 0, 5, orjson.dumps("x")),
                (str(uuid.uuid4()), 1, 5, orjson.dumps(1.0)),
            ],
        )
    conn.close()

    persistence = open_store(path, durability="off")
    try:
        reader = persistence.reader()
        try:
            assert reader.get_used_upload_token(nonce) == "kg2storage"
            assert reader.get_used_upload_token(b"\0" * 16) is None
        finally:
            persistence.release_reader(reader)
    finally:
        persistence.close()
    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "session_requests" not in tables
    assert {"mutation_requests", "used_upload_tokens"} <= tables
