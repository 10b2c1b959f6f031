"""The HTTP routes of built-in auth, added to ``functions/http.py``'s router.

* ``GET /.well-known/openid-configuration`` and ``GET /.well-known/jwks.json``:
  the issuer's discovery document and public keys, so other services can
  verify the deployment's access tokens.
* ``GET /api/auth/signin/<provider>`` and ``GET /api/auth/callback/<provider>``
  for each OAuth provider (:mod:`syncline.accounts.oauth`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncline.accounts.issuer import CTX_MEMBER
from syncline.functions.http.response import HttpResponse

if TYPE_CHECKING:
    from syncline.accounts.setup import ConvexAuth
    from syncline.functions.http.request import HttpRequest
    from syncline.functions.http.router import HttpRouter

__all__ = ["add_routes"]

_CACHE = {"Cache-Control": "public, max-age=60"}


async def _openid_configuration(ctx: Any, request: HttpRequest) -> HttpResponse:
    return HttpResponse(getattr(ctx, CTX_MEMBER).openid_configuration(), headers=_CACHE)


async def _jwks(ctx: Any, request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        getattr(ctx, CTX_MEMBER).jwks(), headers=_CACHE, content_type="application/jwk-set+json"
    )


def add_routes(auth: ConvexAuth, http: HttpRouter) -> None:
    http.route(
        path="/.well-known/openid-configuration", method="GET", handler=_openid_configuration
    )
    http.route(path="/.well-known/jwks.json", method="GET", handler=_jwks)
    from syncline.accounts.oauth import OAuthProvider, add_oauth_routes

    for provider in auth.providers.values():
        if isinstance(provider, OAuthProvider):
            add_oauth_routes(auth, provider, http)
