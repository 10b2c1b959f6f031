"""The synchronous client: :class:`Client`, an :class:`AsyncClient` on a private event loop.

A :class:`_Portal` runs that loop in a daemon thread; every blocking method of
:class:`Client` submits a coroutine to it and waits for the result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from syncline.client._async import AsyncClient, Subscription
from syncline.client._connection import BACKOFF_INITIAL, BACKOFF_MAX, LIVENESS_TIMEOUT, ClientClosed

__all__ = ["Client", "SyncSubscription"]

T = TypeVar("T")


class _Portal:
    """An event loop in a daemon thread that runs coroutines for synchronous callers."""

    def __init__(self) -> None:
        self._started = threading.Event()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name="syncline-client", daemon=True)
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it; on timeout or interrupt, cancel it."""
        if self._stopped:
            coro.close()
            raise ClientClosed("The client is closed")
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("A syncline.Client cannot be used from its own event loop thread")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop closed since the check above
            coro.close()
            raise ClientClosed("The client is closed") from None
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            # Only the loop's own shutdown cancels work we did not cancel ourselves.
            raise ClientClosed("The client was closed") from None
        except BaseException as exc:
            if not future.done():
                # A timeout or KeyboardInterrupt: stop the work, not just the waiting.
                future.cancel()
                if isinstance(exc, concurrent.futures.TimeoutError):
                    raise TimeoutError(f"The call did not complete within {timeout} s") from None
            raise

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Schedule ``fn`` on the loop without waiting (safe from any thread, even the loop's)."""
        if not self._stopped:
            try:
                self.loop.call_soon_threadsafe(fn)
            except RuntimeError:
                pass  # the loop already closed

    def shutdown(self, client: AsyncClient) -> None:
        if self._stopped:
            return
        if self.in_loop_thread():
            # Reached from garbage collection inside the loop: cannot block, so just schedule.
            self._shutdown_task = self.loop.create_task(self._close_and_stop(client))
            self._stopped = True
            return
        try:
            self.run(self._close_and_stop(client))
        finally:
            self._stopped = True
            self._thread.join()

    async def _close_and_stop(self, client: AsyncClient) -> None:
        try:
            await client.close()
        finally:
            # Refuse new work before the loop starts winding down.
            self._stopped = True
            assert self._stop is not None
            self._stop.set()


class SyncSubscription:
    """The successive results of one query, as a blocking iterator (see :class:`Subscription`).

    ``next()`` blocks until the next result; ``close()`` (from any thread) ends the iteration.
    """

    def __init__(self, portal: _Portal, subscription: Subscription) -> None:
        self._portal = portal
        self._subscription = subscription
        self._closed = False

    @property
    def path(self) -> str:
        return self._subscription.path

    @property
    def query_id(self) -> int:
        return self._subscription.query_id

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        try:
            more, value = self._portal.run(self._next())
        except ClientClosed:
            raise StopIteration from None
        if not more:
            raise StopIteration
        return value

    async def _next(self) -> tuple[bool, Any]:
        try:
            return True, await self._subscription.__anext__()
        except StopAsyncIteration:
            return False, None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._portal.call_soon(self._subscription.close)

    def __enter__(self) -> SyncSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_closed"):
            self.close()


class Client:
    """A synchronous client; same semantics as :class:`AsyncClient`.

    :param timeout: seconds each call may take before it raises ``TimeoutError`` (and is
        cancelled); ``None`` waits as long as it takes, retrying the connection meanwhile.

    Thread-safe: any thread may call it. It runs an :class:`AsyncClient` on a private event
    loop in a daemon thread, which ``close()`` (or leaving the ``with`` block) stops.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: str | None = None,
        admin_key: str | None = None,
        timeout: float | None = None,
        _liveness_timeout: float = LIVENESS_TIMEOUT,
        _backoff_initial: float = BACKOFF_INITIAL,
        _backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self._client = AsyncClient(
            url,
            auth=auth,
            admin_key=admin_key,
            _liveness_timeout=_liveness_timeout,
            _backoff_initial=_backoff_initial,
            _backoff_max=_backoff_max,
        )
        self._timeout = timeout
        self._portal = _Portal()
        # Stops the thread even if close() is never called; holds no reference to self.
        self._finalizer = weakref.finalize(self, self._portal.shutdown, self._client)

    @property
    def url(self) -> str:
        return self._client.url

    def connect(self) -> None:
        self._portal.run(self._client.connect(), self._timeout)

    def query(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return self._portal.run(self._client.query(ref, args), self._timeout)

    def mutation(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return self._portal.run(self._client.mutation(ref, args), self._timeout)

    def action(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return self._portal.run(self._client.action(ref, args), self._timeout)

    def subscribe(self, ref: Any, args: dict[str, Any] | None = None) -> SyncSubscription:
        return SyncSubscription(self._portal, self._portal.run(self._subscribe(ref, args)))

    async def _subscribe(self, ref: Any, args: dict[str, Any] | None) -> Subscription:
        return self._client.subscribe(ref, args)

    def set_auth(self, token: str | None) -> None:
        self._portal.run(self._client.set_auth(token), self._timeout)

    def set_admin_auth(self, admin_key: str, acting_as: dict[str, Any] | None = None) -> None:
        self._portal.run(self._client.set_admin_auth(admin_key, acting_as), self._timeout)

    def clear_auth(self) -> None:
        self._portal.run(self._client.clear_auth(), self._timeout)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
