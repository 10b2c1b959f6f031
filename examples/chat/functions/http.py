"""The chat web page, served by HTTP actions.

On the site port (http://127.0.0.1:3211/) and under /http/ on the API port
(http://127.0.0.1:3210/http/):

* ``GET /``           public/index.html, told where the sync API is
* ``GET /app.js``     public/app.js (the page's code)
* ``GET /convex.js``  the official Convex browser client, from node_modules
                      (``npm ci`` in this folder; no CDN, works offline)
"""

import asyncio
import html
from pathlib import Path
from urllib.parse import urlsplit

from syncline import HttpResponse, HttpRouter

PROJECT = Path(__file__).resolve().parent.parent
PUBLIC = PROJECT / "public"
CONVEX_BUNDLE = PROJECT / "node_modules" / "convex" / "dist" / "browser.bundle.js"

JS = "text/javascript; charset=utf-8"
ASSETS = {
    "/app.js": (PUBLIC / "app.js", JS),
    "/convex.js": (CONVEX_BUNDLE, JS),
}
# Files are read on every request, so edits show on reload.
NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

http = HttpRouter()


def api_url(request):
    """The URL of the sync API, as seen by the browser that asked for the page.

    Under /http/ on the API port it is the page's own origin. On the site port
    it is, by convention (3210 and 3211), the port below; the page's
    ``?api=URL`` parameter overrides this when the ports are elsewhere.
    """
    url = urlsplit(request.url)
    mount = url.path[: len(url.path) - len(request.path)]
    if mount:
        return f"{url.scheme}://{url.netloc}"
    host, sep, port = url.netloc.rpartition(":")
    if sep and port.isdigit():
        return f"{url.scheme}://{host}:{int(port) - 1}"
    return f"{url.scheme}://{url.netloc}"


@http.route(path="/", method="GET")
async def index(ctx, request):
    url = urlsplit(request.url)
    if not url.path.endswith("/"):
        # /http -> /http/, so that the page's relative asset URLs resolve under the mount.
        query = f"?{url.query}" if url.query else ""
        return HttpResponse.redirect(f"{url.path}/{query}")
    page = await asyncio.to_thread((PUBLIC / "index.html").read_text, encoding="utf-8")
    page = page.replace("{{API_URL}}", html.escape(api_url(request)))
    return HttpResponse(page, headers=NO_CACHE, content_type="text/html; charset=utf-8")


async def asset(ctx, request):
    path, content_type = ASSETS[request.path]
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        hint = " (run `npm ci` in the example's folder)" if path == CONVEX_BUNDLE else ""
        return HttpResponse(f"{path} is missing{hint}", status=404)
    return HttpResponse(data, headers=NO_CACHE, content_type=content_type)


for asset_path in ASSETS:
    http.route(path=asset_path, method="GET", handler=asset)
