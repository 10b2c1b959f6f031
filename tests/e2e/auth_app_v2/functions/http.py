"""The page (index.html) and its bundle (dist/app.js, built by the test), and auth's routes."""

import asyncio
from pathlib import Path

from syncline import HttpResponse, HttpRouter

from .auth import auth

PROJECT = Path(__file__).resolve().parent.parent
NO_CACHE = {"Cache-Control": "no-cache"}

http = HttpRouter()
auth.add_http_routes(http)


@http.route(path="/", method="GET")
async def index(ctx, request):
    page = await asyncio.to_thread((PROJECT / "index.html").read_text)
    return HttpResponse(page, headers=NO_CACHE, content_type="text/html; charset=utf-8")


@http.route(path="/app.js", method="GET")
async def bundle(ctx, request):
    code = await asyncio.to_thread((PROJECT / "dist" / "app.js").read_bytes)
    return HttpResponse(code, headers=NO_CACHE, content_type="text/javascript; charset=utf-8")
