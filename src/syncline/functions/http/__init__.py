"""HTTP actions: the user API of ``functions/http.py``.

::

    from syncline import HttpRouter, HttpResponse, http_action

    http = HttpRouter()

    @http.route(path="/hook", method="POST")
    async def hook(ctx, request):
        event = await request.json()
        await ctx.run_mutation("events:record", {"kind": event["kind"]})
        return HttpResponse({"ok": True})

    @http_action
    async def files(ctx, request):
        return HttpResponse(b"...", headers={"Content-Type": "application/pdf"})

    http.route(path_prefix="/files/", method="GET", handler=files)

Contracts (semantics §10):

* Methods: GET, POST, PUT, DELETE, OPTIONS, PATCH. HEAD is answered by the GET
  route with the body left out. ``path`` starts with ``/``; ``path_prefix``
  starts and ends with ``/``; ``/.files`` is reserved. Defining the same
  (path, method) or (prefix, method) twice fails when ``http.py`` is imported.
* Lookup: the exact path first, else the longest matching prefix, else 404
  ``No HttpAction routed for <path>``.
* A handler is ``async def handler(ctx, request)`` (``@http_action`` optional).
  ``ctx`` is the action ctx (``run_query``, ``run_mutation``, ``run_action``,
  ``auth``, ``env``, ...). It returns an :class:`HttpResponse`, or for
  convenience a ``str`` (text/plain), ``bytes`` (application/octet-stream), or
  ``dict``/``list`` (JSON) answered with status 200.
* No CORS headers are added unless the user asks: :func:`cors_headers` builds
  them for one response, :meth:`HttpRouter.cors` answers preflight requests and
  adds them to every response of the routes it covers.
* Request and response bodies are capped at 20 MiB.

Modules: :mod:`~syncline.functions.http.request` (:class:`HttpRequest`, headers,
query and form data, body limits, the methods a route may have),
:mod:`~syncline.functions.http.response` (:class:`HttpResponse`, what a handler may
return), :mod:`~syncline.functions.http.cors` (:class:`CorsPolicy`, :func:`cors_headers`)
and :mod:`~syncline.functions.http.router` (:func:`http_action`, :class:`HttpRouter`).
User code imports them from ``syncline``.

These modules import only the standard library, orjson and Syncline's errors:
``from syncline import HttpRouter`` loads no server and no database.
"""
