"""The OAuth functions ``@convex-dev/auth`` 2.x calls: ``startSignInWith<X>`` and ``completeSignInWith<X>``.

In ``functions/auth.py``, for a provider of :func:`~syncline.accounts.convex_auth`::

    auth = convex_auth(providers=[GitHub(), Google()])
    refreshSession, signOut, isAuthenticated = auth.v2.session()
    startSignInWithGithub, completeSignInWithGithub = auth.v2.oauth("github")
    startSignInWithGoogle, completeSignInWithGoogle = auth.v2.oauth("google")
    store = auth.store  # the internal mutation the callback route writes through

and ``auth.add_http_routes(http)`` in ``functions/http.py``. The page's
``useSignInWithGithub(api.auth)`` (or Google's) then runs:

1. ``startSignInWith<X>`` (mutation, ``{redirectTo}``): checks ``redirectTo``
   against ``SITE_URL``, records the sign-in with the digest of a fresh random
   ``state`` and answers ``{redirect, state}``. The client keeps ``state`` in
   its storage and goes to ``redirect``: ``/api/auth/signin/<id>`` on the site
   URL, which (as for 0.0.x) binds the provider's own state and PKCE verifier
   and sends the browser to the provider.
2. ``/api/auth/callback/<id>`` checks the provider's state, exchanges the code
   and sends the browser back to ``redirectTo`` with ``?convexAuthCode=`` (a
   one-time code valid one minute), or ``?convexAuthError=access_denied``,
   ``expired`` or ``oauth_error``.
3. ``completeSignInWith<X>`` (mutation, ``{code, state}``): the code is spent
   and is only accepted with the ``state`` of the browser that started;
   ``{status: "complete", tokens}`` or ``{status: "error", userError: {error:
   "INVALID_CODE"}}`` (unknown, spent, expired or another browser's).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from syncline.accounts.errors import auth_error
from syncline.accounts.oauth import SIGN_IN_LIFETIME_S, OAuthProvider
from syncline.accounts.redirects import redirect_target, with_query_param
from syncline.errors import FunctionDefinitionError
from syncline.functions.registration import FunctionKind, RegisteredFunction
from syncline.values.validators import v

if TYPE_CHECKING:
    from syncline.accounts.v2 import ConvexAuthV2

__all__ = ["oauth_functions"]

#: the longest one-time code or state accepted (ours are 32 and 43 characters)
_MAX_SECRET_LENGTH = 128


def oauth_functions(
    v2: ConvexAuthV2, provider_id: str
) -> tuple[RegisteredFunction, RegisteredFunction]:
    """``startSignInWith<X>, completeSignInWith<X>`` for the OAuth provider ``provider_id``."""
    provider = v2.auth.providers.get(provider_id)
    if not isinstance(provider, OAuthProvider):
        oauth_ids = [p.id for p in v2.auth.providers.values() if isinstance(p, OAuthProvider)]
        raise FunctionDefinitionError(
            f"auth.v2.oauth({provider_id!r}): no OAuth provider has this id; "
            f"convex_auth(providers=[...]) has {', '.join(map(repr, oauth_ids)) or 'none'}"
        )
    store_fn = v2.auth.store

    def start_sign_in(ctx: Any, redirectTo: str) -> dict[str, Any]:
        if store_fn.path is None:
            raise auth_error(
                "AuthNotConfigured",
                "The OAuth callback writes through the auth store mutation: bind it in "
                "functions/auth.py (store = auth.store)",
            )
        provider.credentials(ctx.env)  # fail here, not on the provider's page
        target = redirect_target(ctx.env, redirectTo)
        state = secrets.token_urlsafe(32)
        verifier_id = v2.store(ctx).create_verifier(
            provider.id, target, SIGN_IN_LIFETIME_S, client_state=state
        )
        start = f"{v2.issuer(ctx).issuer}/api/auth/signin/{provider.id}"
        return {"redirect": with_query_param(start, "code", verifier_id), "state": state}

    def complete_sign_in(ctx: Any, code: str, state: str) -> dict[str, Any]:
        store = v2.store(ctx)
        doc = None
        if len(code) <= _MAX_SECRET_LENGTH and len(state) <= _MAX_SECRET_LENGTH:
            doc = store.take_code(code, provider=provider.id, verifier=state)
        account = None if doc is None else ctx.db.get(doc["accountId"])
        if account is None:
            return {"status": "error", "userError": {"error": "INVALID_CODE"}}
        return {
            "status": "complete",
            "tokens": v2.bundle(ctx, store.create_session(account["userId"])),
        }

    return (
        v2.function(start_sign_in, FunctionKind.MUTATION, {"redirectTo": v.string()}),
        v2.function(
            complete_sign_in, FunctionKind.MUTATION, {"code": v.string(), "state": v.string()}
        ),
    )
