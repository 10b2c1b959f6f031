"""``convex_auth(...)``: the functions the Convex Auth client calls, built for one app.

In ``functions/auth.py``::

    from syncline.accounts import Password, convex_auth

    auth = convex_auth(providers=[Password()])
    signIn, signOut, store, isAuthenticated = auth

The four names become ``auth:signIn`` and ``auth:signOut`` (public actions,
the wire paths ``@convex-dev/auth/react`` calls), ``auth:store`` (the internal
mutation every read and write goes through) and ``auth:isAuthenticated`` (a
query). OAuth providers also need routes: in ``functions/http.py``,
``auth.add_http_routes(http)``.

``auth:signIn`` answers, as Convex Auth does:

* ``{"refreshToken"}``: ``{"tokens": {"token", "refreshToken"} | None}``
  (None: the token is invalid, spent or its session ended; sign out).
* ``{"params": {"code"}, "verifier"?}`` (after an OAuth or magic-link
  redirect): ``{"tokens": ...}``.
* ``{"provider", "params", "verifier"?}``: the provider's answer:
  ``{"tokens"}``, ``{"started": True}`` (a code was sent) or
  ``{"redirect", "verifier"}`` (OAuth: go there, keep the verifier).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from syncline.accounts.email import LINK_CODE_LENGTH
from syncline.accounts.errors import auth_error
from syncline.accounts.helpers import get_auth_session_id, get_auth_user_id
from syncline.accounts.issuer import CTX_MEMBER, TokenIssuer
from syncline.accounts.operations import run_operation
from syncline.accounts.store import RateLimit, SessionLifetimes, Store
from syncline.accounts.v2 import ConvexAuthV2
from syncline.errors import FunctionDefinitionError, InternalError
from syncline.functions.registration import (
    FunctionKind,
    RegisteredFunction,
    Visibility,
)
from syncline.values.validators import VObject, as_validator, v

if TYPE_CHECKING:
    from syncline.accounts.providers import Provider
    from syncline.functions.http.router import HttpRouter

__all__ = ["ConvexAuth", "SignInFlow", "convex_auth", "find_convex_auth"]

#: the attribute that marks ``auth:signIn`` (the application looks for it)
MARKER = "convex_auth"

_SIGN_IN_ARGS = {
    "provider": v.optional(v.string()),
    "params": v.optional(v.any()),
    "verifier": v.optional(v.string()),
    "refreshToken": v.optional(v.string()),
    "calledBy": v.optional(v.string()),
}


def _object(fields: dict[str, Any]) -> VObject:
    validator = as_validator(fields)
    assert isinstance(validator, VObject)
    return validator


class SignInFlow:
    """What a provider's sign-in may do: call the store, mint tokens, read settings."""

    def __init__(self, ctx: Any, auth: ConvexAuth) -> None:
        self.ctx = ctx
        self.auth = auth

    @property
    def issuer(self) -> TokenIssuer:
        issuer = getattr(self.ctx, CTX_MEMBER, None)
        if not isinstance(issuer, TokenIssuer):
            raise InternalError(
                "Built-in auth has no token issuer: the application did not install one "
                "(functions/auth.py must bind signIn, signOut, store and isAuthenticated)",
                code="AuthNotConfigured",
            )
        return issuer

    async def store(self, op: str, **args: Any) -> Any:
        store = self.auth.store
        if store.path is None:
            raise FunctionDefinitionError(
                "The auth store mutation is not registered: bind it in functions/auth.py "
                "(signIn, signOut, store, isAuthenticated = convex_auth(...))"
            )
        return await self.ctx.run_mutation(store, {"op": op, "args": args})

    def tokens(self, session: dict[str, str] | None) -> dict[str, Any]:
        """The ``{"tokens": ...}`` answer for a session from the store (None: signed out)."""
        if session is None:
            return {"tokens": None}
        token = self.issuer.sign(
            session["userId"], session["sessionId"], self.auth.lifetimes.access_token_s
        )
        return {"tokens": {"token": token, "refreshToken": session["refreshToken"]}}

    def env(self, name: str) -> str | None:
        value = self.ctx.env.get(name)
        return value if value else None


class ConvexAuth:
    """The built-in auth of one app: its providers and its four functions.

    Unpack it into module-level names of ``functions/auth.py``
    (``signIn, signOut, store, isAuthenticated = auth``).
    """

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        lifetimes: SessionLifetimes,
        rate_limit: RateLimit,
        module: str,
    ) -> None:
        ids = [p.id for p in providers]
        if not providers:
            raise FunctionDefinitionError(
                "convex_auth(providers=[...]) needs at least one provider"
            )
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise FunctionDefinitionError(
                f"convex_auth: provider ids must be unique, {', '.join(map(repr, duplicates))} "
                "appear more than once (pass id=... to tell them apart)"
            )
        self.providers = {p.id: p for p in providers}
        self.lifetimes = lifetimes
        self.rate_limit = rate_limit
        self.sign_in = self._function(self._sign_in, FunctionKind.ACTION, _SIGN_IN_ARGS, module)
        self.sign_out = self._function(self._sign_out, FunctionKind.ACTION, {}, module)
        self.store = self._function(
            self._store,
            FunctionKind.MUTATION,
            {"op": v.string(), "args": v.any()},
            module,
            visibility=Visibility.INTERNAL,
        )
        self.is_authenticated = self._function(
            self._is_authenticated, FunctionKind.QUERY, {}, module
        )
        setattr(self.sign_in, MARKER, self)
        #: the functions ``@convex-dev/auth`` 2.x calls (see :mod:`syncline.accounts.v2`)
        self.v2 = ConvexAuthV2(self, module)

    @staticmethod
    def _function(
        handler: Any,
        kind: FunctionKind,
        args: dict[str, Any],
        module: str,
        *,
        visibility: Visibility = Visibility.PUBLIC,
    ) -> RegisteredFunction:
        fn = RegisteredFunction(handler, kind, visibility, _object(args), None)
        # Registered by the loader as defined in the app's module (auth:signIn, ...).
        fn.__module__ = module
        return fn

    def __iter__(self) -> Iterator[RegisteredFunction]:
        return iter((self.sign_in, self.sign_out, self.store, self.is_authenticated))

    # -- the functions -----------------------------------------------------

    async def _sign_in(
        self,
        ctx: Any,
        provider: str | None = None,
        params: Any = None,
        verifier: str | None = None,
        refreshToken: str | None = None,
        calledBy: str | None = None,
    ) -> dict[str, Any]:
        flow = SignInFlow(ctx, self)
        params = params if isinstance(params, dict) else {}
        if provider is None and refreshToken is not None:
            return flow.tokens(await flow.store("refresh", refreshToken=refreshToken))
        if provider is None and isinstance(params.get("code"), str):
            if len(params["code"]) < LINK_CODE_LENGTH:
                # Short codes are typed by users and only accepted with their provider and
                # email (and rate limit); without them they could be guessed across accounts.
                return {"tokens": None}
            session = await flow.store("signInWithCode", code=params["code"], verifier=verifier)
            return flow.tokens(session)
        if provider is None:
            raise auth_error(
                "MissingProvider",
                "Cannot sign in: give a provider, params.code or a refreshToken",
            )
        chosen = self.providers.get(provider)
        if chosen is None:
            raise auth_error(
                "UnknownProvider",
                f"Unknown sign-in provider {provider!r}; this app has "
                f"{', '.join(map(repr, self.providers))}",
            )
        return await chosen.sign_in(flow, params, verifier)

    async def _sign_out(self, ctx: Any) -> None:
        session_id = get_auth_session_id(ctx)
        if session_id is not None:
            await SignInFlow(ctx, self).store("signOut", sessionId=session_id)

    def _store(self, ctx: Any, op: str, args: Any) -> Any:
        return run_operation(Store(ctx, self.lifetimes, self.rate_limit), op, dict(args))

    def _is_authenticated(self, ctx: Any) -> bool:
        return get_auth_user_id(ctx) is not None

    # -- HTTP routes -------------------------------------------------------

    def add_http_routes(self, http: HttpRouter) -> None:
        """Serve the issuer's discovery documents and the OAuth routes on ``http``."""
        from syncline.accounts.routes import add_routes

        add_routes(self, http)


def convex_auth(
    *,
    providers: Sequence[Provider],
    access_token_ttl_s: float = SessionLifetimes.access_token_s,
    session_ttl_s: float = SessionLifetimes.session_s,
    session_inactive_ttl_s: float = SessionLifetimes.session_inactive_s,
    max_failed_attempts: int = RateLimit.max_attempts,
    max_failed_attempts_per_address: int = RateLimit.max_attempts_per_address,
    failed_attempts_window_s: float = RateLimit.window_s,
) -> ConvexAuth:
    """Built-in authentication with ``providers`` (see the module docstring).

    ``access_token_ttl_s``: lifetime of access tokens (JWTs); ``session_ttl_s``:
    a session ends this long after sign-in; ``session_inactive_ttl_s``: a
    refresh token unused this long expires. ``max_failed_attempts`` (per
    account or email) and ``max_failed_attempts_per_address`` (per client
    address) per ``failed_attempts_window_s``: failed sign-ins allowed before
    further attempts are refused.
    """
    for name, value in (
        ("access_token_ttl_s", access_token_ttl_s),
        ("session_ttl_s", session_ttl_s),
        ("session_inactive_ttl_s", session_inactive_ttl_s),
        ("failed_attempts_window_s", failed_attempts_window_s),
    ):
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise FunctionDefinitionError(
                f"convex_auth: {name} must be a positive number, got {value!r}"
            )
    for name, count in (
        ("max_failed_attempts", max_failed_attempts),
        ("max_failed_attempts_per_address", max_failed_attempts_per_address),
    ):
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FunctionDefinitionError(
                f"convex_auth: {name} must be a positive integer, got {count!r}"
            )
    caller = sys._getframe(1).f_globals.get("__name__", __name__)
    return ConvexAuth(
        providers,
        lifetimes=SessionLifetimes(access_token_ttl_s, session_ttl_s, session_inactive_ttl_s),
        rate_limit=RateLimit(
            max_failed_attempts, failed_attempts_window_s, max_failed_attempts_per_address
        ),
        module=caller,
    )


def find_convex_auth(functions: Any) -> ConvexAuth | None:
    """The :class:`ConvexAuth` whose ``signIn`` is among ``functions`` (a registry's values)."""
    for fn in functions:
        auth = getattr(fn, MARKER, None)
        if isinstance(auth, ConvexAuth):
            return auth
    return None
