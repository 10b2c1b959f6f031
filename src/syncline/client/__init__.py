"""Python clients for a Syncline (or Convex) deployment, over the sync protocol's WebSocket.

``AsyncClient`` is the asyncio client; ``Client`` is the same client for synchronous code
(it runs an ``AsyncClient`` on a private event loop in a background thread)::

    import asyncio
    from syncline.client import AsyncClient

    async def main() -> None:
        async with AsyncClient("http://127.0.0.1:3210") as client:
            await client.set_auth(jwt)                      # optional
            task_id = await client.mutation("tasks:create", {"title": "Write docs"})
            print(await client.query("tasks:list"))
            async for tasks in client.subscribe("tasks:list"):
                print(tasks)                                # again on every change

    asyncio.run(main())

    from syncline import api
    from syncline.client import Client

    with Client("http://127.0.0.1:3210") as client:
        client.mutation(api.tasks.create, {"title": "Write docs"})
        for tasks in client.subscribe(api.tasks.list):
            ...

Semantics follow the official clients:

* One WebSocket per client, opened on first use (or by ``connect()``), reconnected with
  exponential backoff (100 ms to 10 s, with jitter) when it is lost or when the server stays
  silent for 30 s. After a reconnect the client re-authenticates, re-subscribes every query
  under its old id and re-sends every unanswered mutation with its original ``requestId``
  (one ``sessionId`` per client object lets the server de-duplicate them). Actions that were
  already sent fail with :class:`ConnectionLost`; they are never run twice.
* ``mutation()`` returns only once the server has sent a Transition at or past the mutation's
  commit timestamp, so a query issued afterwards sees the write (read-your-writes).
* Function failures raise :class:`~syncline.errors.ConvexError` (with ``data``) when the
  function raised one, else :class:`FunctionError` with the server's message.
* Arguments are a dict of values; a Python ``int`` travels as a float64, as with the official
  Python client (use ``syncline.Int64`` for int64).

Modules: ``_connection`` (what travels and what is pending: URLs, errors, per-query and
per-request state, backoff constants), ``_async`` (:class:`AsyncClient`, the protocol state
machine and its connection loop), ``_sync`` (:class:`Client`, an ``AsyncClient`` on a private
event loop in a background thread).
"""

from syncline.client._async import AsyncClient, Subscription
from syncline.client._connection import ClientClosed, ConnectionLost, FunctionError, ws_url
from syncline.client._sync import Client, SyncSubscription

__all__ = [
    "AsyncClient",
    "Client",
    "ClientClosed",
    "ConnectionLost",
    "FunctionError",
    "Subscription",
    "SyncSubscription",
    "ws_url",
]
