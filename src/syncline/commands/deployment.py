"""Which deployment a ``syncline`` command talks to (:func:`find_server`), and how.

1. ``--url URL`` (or ``$SYNCLINE_URL``): the server at that URL;
2. else, when a running ``syncline serve|dev`` holds the project's data folder
   (its :class:`~syncline.application.DataDirLock`): that server, at the URL
   it recorded in ``<data dir>/server.json`` (:mod:`syncline.server.discovery`);
   a server that recorded none must be named with ``--url``;
3. else no server: ``run``, ``data`` and ``env`` open the data folder
   directly; ``logs`` and ``run --watch`` need a server and say so.

Requests to a server carry ``Authorization: Convex <admin key>``; the key is
``--admin-key`` (or ``$SYNCLINE_ADMIN_KEY``), else the one stored in the
project's data folder (``PROJECT/.syncline/admin_key``, printed by
``syncline admin-key``). A rejected key, an unreachable server or a failing
function ends the command with exit status 1 and one ``error:`` line on
stderr saying what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import orjson

from syncline.commands.console import fail
from syncline.commands.options import (
    admin_key_option,
    combine,
    db_option,
    project_option,
    url_option,
)
from syncline.errors import SynclineError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_URL",
    "Remote",
    "data_dir_for",
    "database_file_for",
    "find_server",
    "project_options",
    "server_holds",
]

DEFAULT_URL = "http://127.0.0.1:3210"
#: seconds to wait for a server to accept a connection or answer a request
CONNECT_TIMEOUT_S = 10.0

#: --dir, --db, --url and --admin-key: the options that pick a deployment
project_options = combine(project_option, db_option, url_option, admin_key_option)


def data_dir_for(project: Path, db: str | None) -> Path:
    """The data folder ``syncline serve --dir project [--db db]`` would use (and lock)."""
    from syncline.application import Paths

    try:
        return Paths.for_project(project, db=db).database_dir
    except SynclineError as exc:
        fail(str(exc))


def server_holds(data_dir: Path) -> bool:
    """True if another process (a running server) holds ``data_dir``'s lock."""
    from syncline.application import DataDirLock

    if not (data_dir / "lock").exists():
        return False
    try:
        lock = DataDirLock(data_dir)
    except SynclineError as exc:
        if exc.code == "DataDirLocked":
            return True
        raise
    lock.release()
    return False


def _stored_admin_key(data_dir: Path) -> str | None:
    from syncline.auth.admin_key import ADMIN_KEY_FILE

    try:
        key = (data_dir / ADMIN_KEY_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        fail(f"Cannot read the admin key in {data_dir}: {exc}")
    return key or None


def _recorded_url(data_dir: Path) -> str | None:
    from syncline.server import discovery

    record = discovery.read(data_dir)
    return None if record is None else str(record["url"])


def database_file_for(project: Path, db: str | None) -> Path | None:
    """The database file ``syncline serve --dir project [--db db]`` would open (None: a
    PostgreSQL database)."""
    from syncline.application import Paths

    try:
        return Paths.for_project(project, db=db).database_file
    except SynclineError as exc:
        fail(str(exc))


@dataclass(frozen=True)
class Remote:
    """A running server and the admin key to talk to it with."""

    url: str
    admin_key: str

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Convex {self.admin_key}"}

    def _endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float = CONNECT_TIMEOUT_S,
    ) -> Any:
        """``method path`` with the admin key; the decoded JSON answer (2xx) or :func:`fail`."""
        import httpx

        try:
            response = httpx.request(
                method,
                self._endpoint(path),
                params=params,
                content=None if body is None else orjson.dumps(body),
                headers={**self._headers(), "Content-Type": "application/json"},
                timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=timeout),
            )
        except httpx.TransportError as exc:
            self._unreachable(exc)
        if not response.is_success:
            self._http_error(path, response.status_code, response.text)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            fail(f"{self.url}{path} answered something that is not JSON: {response.text[:200]!r}")

    @contextmanager
    def _streamed_get(self, path: str, params: dict[str, str] | None = None) -> Iterator[Any]:
        """The streamed answer of ``GET path`` (a success), or :func:`fail`."""
        import httpx

        try:
            with httpx.stream(
                "GET",
                self._endpoint(path),
                params=params,
                headers=self._headers(),
                timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=None),
            ) as response:
                if not response.is_success:
                    response.read()
                    self._http_error(path, response.status_code, response.text)
                yield response
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                self._unreachable(exc)
            fail(f"Lost the connection to the server at {self.url} (did it stop?)")

    def stream_lines(self, path: str) -> Iterator[str]:
        """The non-empty lines of a streamed ``GET path`` answer, until the server ends it."""
        with self._streamed_get(path) as response:
            for line in response.iter_lines():
                if line.strip():
                    yield line

    def download(
        self,
        path: str,
        out: IO[bytes],
        *,
        params: dict[str, str] | None = None,
        on_chunk: Callable[[int], None] = lambda n: None,
    ) -> dict[str, str]:
        """Stream ``GET path`` into ``out``; the response headers. Fails on an error answer."""
        with self._streamed_get(path, params) as response:
            for chunk in response.iter_bytes():
                out.write(chunk)
                on_chunk(len(chunk))
            return dict(response.headers)

    def upload(
        self,
        path: str,
        source: IO[bytes],
        *,
        params: dict[str, str] | None = None,
        on_chunk: Callable[[int], None] = lambda n: None,
        chunk_size: int = 256 * 1024,
    ) -> Any:
        """Stream ``source`` as the body of ``POST path``; the decoded JSON answer, or :func:`fail`."""
        import httpx

        def body() -> Iterator[bytes]:
            while chunk := source.read(chunk_size):
                on_chunk(len(chunk))
                yield chunk

        try:
            response = httpx.post(
                self._endpoint(path),
                params=params,
                content=body(),
                headers={**self._headers(), "Content-Type": "application/zip"},
                timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=None, write=None),
            )
        except httpx.TransportError as exc:
            self._unreachable(exc)
        if not response.is_success:
            self._http_error(path, response.status_code, response.text)
        return orjson.loads(response.content)

    def _unreachable(self, exc: Exception) -> NoReturn:
        fail(
            f"Could not reach a Syncline server at {self.url} ({exc or type(exc).__name__}). "
            "Is it running (`syncline dev`)? Pass its address with --url."
        )

    def _http_error(self, path: str, status: int, text: str) -> NoReturn:
        try:
            body = orjson.loads(text)
            code, message = body["code"], body["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            if status == 404:
                fail(
                    f"{self.url}{path} does not exist (HTTP 404): is {self.url} a Syncline "
                    "server of this version?"
                )
            fail(f"HTTP {status} from {self.url}{path}: {text[:200]}")
        if status == 401 and code in ("BadAdminKey", "InvalidAuthHeader"):
            fail(
                f"The server at {self.url} rejected the admin key: {message}. Pass the key of "
                "the server's data folder with --admin-key (`syncline admin-key --dir PROJECT` "
                "prints it on the server's machine)."
            )
        fail(f"{message} ({code})")


def find_server(
    project: Path, db: str | None, url: str | None, admin_key: str | None
) -> Remote | None:
    """The server to talk to (see the module docstring), or None to work on the data folder."""
    data_dir = data_dir_for(project, db)
    if url is None:
        if not server_holds(data_dir):
            return None
        recorded = _recorded_url(data_dir)
        if recorded is None:
            fail(
                f"{data_dir} is in use by a running Syncline server that did not record its "
                f"address: pass it with --url (e.g. --url {DEFAULT_URL}), and --admin-key "
                "if needed"
            )
        url = recorded
    if not url.startswith(("http://", "https://")):
        fail(f"--url must be an http:// or https:// URL, got {url!r}")
    key = admin_key or _stored_admin_key(data_dir)
    if not key:
        fail(
            f"No admin key for {url}: {data_dir} holds none. Pass --admin-key (or set "
            "SYNCLINE_ADMIN_KEY) with the key of the server's data folder; "
            "`syncline admin-key --dir PROJECT` prints it on the server's machine."
        )
    return Remote(url.rstrip("/"), key)
