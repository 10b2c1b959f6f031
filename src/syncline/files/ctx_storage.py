"""``ctx.storage``: what each kind of function may do with files.

::

    method                                   query  mutation  action
    get_url(id) -> str | None                 yes    yes       yes
    generate_upload_url() -> str              -      yes       yes
    delete(id)                                -      yes (1)   yes (2)
    store(data, content_type=, sha256=) -> id -      -         yes
    get(id) -> bytes | None                   -      -         yes
    open(id) -> FileReader | None             -      -         yes

(1) part of the mutation's transaction; (2) its own transaction. Calling a
method where it is not available raises :class:`StorageNotAvailable`, which
says where to call it instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncline.files.errors import StorageNotAvailable
from syncline.files.service import check_storage_id

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction
    from syncline.files.service import FileReader, FileStorage
    from syncline.functions.executor import Executor
    from syncline.identity import Identity

__all__ = ["ActionStorage", "MutationStorage", "QueryStorage", "install_ctx_storage"]


def install_ctx_storage(executor: Executor, files: FileStorage) -> None:
    """Give functions run by ``executor`` a ``ctx.storage`` backed by ``files``."""

    def ctx_member(kind: str, tx: Transaction | None, identity: Identity) -> Any:
        if kind == "query":
            assert tx is not None
            return QueryStorage(files, tx)
        if kind == "mutation":
            assert tx is not None
            return MutationStorage(files, tx)
        if kind == "action":
            return ActionStorage(files)
        return None

    executor.register_ctx_member("storage", ctx_member)


def _not_here(method: str, kind: str, where: str) -> StorageNotAvailable:
    return StorageNotAvailable(
        f"ctx.storage.{method}() is not available in a {kind}: {where}",
        code="StorageNotAvailable",
    )


_USE_ACTION = (
    "reading or writing file contents is I/O, which queries and mutations (deterministic "
    "transactions) cannot do. Use an action, or upload with ctx.storage.generate_upload_url()."
)


class QueryStorage:
    """``ctx.storage`` in a query: :meth:`get_url` only."""

    _kind = "query"

    def __init__(self, files: FileStorage, tx: Transaction) -> None:
        self._files = files
        self._tx = tx

    def get_url(self, storage_id: str) -> str | None:
        """The file's download URL, or None if there is no such file.

        The URL is a bearer capability: anyone who has it can download the file
        until the file is deleted.
        """
        check_storage_id(storage_id, "ctx.storage.get_url")
        # A read like any other: a live query re-runs when the file is deleted.
        if self._tx.get(storage_id) is None:
            return None
        return self._files.url_for(storage_id)

    def generate_upload_url(self) -> str:
        raise _not_here("generate_upload_url", self._kind, "call it from a mutation or an action")

    def delete(self, storage_id: str) -> None:
        raise _not_here("delete", self._kind, "call it from a mutation or an action")

    def store(self, *args: Any, **kwargs: Any) -> Any:
        raise _not_here("store", self._kind, _USE_ACTION)

    def get(self, storage_id: str) -> Any:
        raise _not_here("get", self._kind, _USE_ACTION)

    def open(self, storage_id: str) -> Any:
        raise _not_here("open", self._kind, _USE_ACTION)


class MutationStorage(QueryStorage):
    """``ctx.storage`` in a mutation: URLs, and deletion as part of the transaction."""

    _kind = "mutation"

    def generate_upload_url(self) -> str:
        """A URL to ``POST`` one file to within the next hour; the response is ``{"storageId"}``."""
        return self._files.generate_upload_url()

    def delete(self, storage_id: str) -> None:
        """Delete the file if this mutation commits (its URL then answers 404)."""
        self._files.delete_in(self._tx, storage_id, "ctx.storage.delete")


class ActionStorage:
    """``ctx.storage`` in an action: every method is a coroutine."""

    def __init__(self, files: FileStorage) -> None:
        self._files = files

    async def get_url(self, storage_id: str) -> str | None:
        check_storage_id(storage_id, "ctx.storage.get_url")
        if await self._files.metadata(storage_id) is None:
            return None
        return self._files.url_for(storage_id)

    async def generate_upload_url(self) -> str:
        return self._files.generate_upload_url()

    async def delete(self, storage_id: str) -> None:
        await self._files.delete(storage_id)

    async def store(
        self, data: Any, content_type: str | None = None, *, sha256: str | None = None
    ) -> str:
        """Store ``data`` (bytes, or an (async) iterable of byte chunks); return its storage id.

        ``sha256`` (base64 or hex), when given, must match the contents.
        """
        return await self._files.store(data, content_type=content_type, sha256=sha256)

    async def get(self, storage_id: str) -> bytes | None:
        """The file's contents, or None if there is no such file (see :meth:`open` for big ones)."""
        check_storage_id(storage_id, "ctx.storage.get")
        reader = await self._files.open(storage_id)
        if reader is None:
            return None
        async with reader:
            return await reader.read()

    async def open(self, storage_id: str) -> FileReader | None:
        """The file as a :class:`FileReader` (``async for chunk in reader``), or None."""
        check_storage_id(storage_id, "ctx.storage.open")
        return await self._files.open(storage_id)
