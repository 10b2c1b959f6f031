"""Admin HTTP API for environment variables (used by ``syncline env --url``).

Both endpoints require ``Authorization: Convex <admin key>`` (401 for a bad
key, 403 without one):

* ``GET /api/admin/env`` -> ``{"variables": [{"name", "value"}, ...]}`` sorted by name;
* ``POST /api/admin/env`` with ``{"changes": [{"name": "A", "value": "x"},
  {"name": "B", "value": null}]}`` (``null`` or a missing ``value`` removes)
  applies every change in one commit and answers ``{"changes": [{"name",
  "result"}], "variables": [...]}``, ``result`` being ``created``,
  ``updated``, ``unchanged``, ``removed`` or ``absent``.

Bad names, values or counts answer 400 ``{"code", "message"}`` and change
nothing (codes in :mod:`syncline.env_vars`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncline.auth.credentials import require_admin
from syncline.errors import InvalidRequest, SynclineError
from syncline.server.api import _json_body, error_response

if TYPE_CHECKING:
    from syncline.application import Application

PATH = "/api/admin/env"


def _listing(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in values.items()]


def _changes(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    raw = body.get("changes")
    if not isinstance(raw, list):
        raise InvalidRequest(
            'Body must be {"changes": [{"name": ..., "value": ... | null}, ...]}',
            code="BadEnvChanges",
        )
    out: list[tuple[str, str | None]] = []
    for item in raw:
        if not isinstance(item, dict) or "name" not in item:
            raise InvalidRequest(
                f"Each change is an object with a `name` (and a `value`), got {item!r}",
                code="BadEnvChanges",
            )
        out.append((item["name"], item.get("value")))
    return out


def routes(application: Application) -> list[Route]:
    """The admin env routes for ``application`` (added to the API app)."""

    async def admin(request: Request) -> None:
        identity = await application.identity_from_header(request.headers.get("authorization"))
        require_admin(identity, "Managing environment variables")

    async def list_env(request: Request) -> Response:
        try:
            await admin(request)
            values = await application.env.alist_all()
        except SynclineError as exc:
            return error_response(exc)
        return JSONResponse({"variables": _listing(values)})

    async def update_env(request: Request) -> Response:
        try:
            await admin(request)
            changes = _changes(await _json_body(request))
            done = await application.env.aupdate(changes)
            values = await application.env.alist_all()
        except SynclineError as exc:
            return error_response(exc)
        return JSONResponse(
            {
                "changes": [{"name": c.name, "result": c.result} for c in done],
                "variables": _listing(values),
            }
        )

    return [
        Route(PATH, list_env, methods=["GET"]),
        Route(PATH, update_env, methods=["POST"]),
    ]
