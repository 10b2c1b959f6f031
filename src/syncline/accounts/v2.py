"""The functions ``@convex-dev/auth`` 2.x calls: session mutations, and each sign-in method's.

Convex Auth 2 changed the wire contract of 0.0.x (``auth:signIn`` and
``auth:signOut`` actions): its ``ConvexAuthProvider`` takes
``api={{refreshSession, signOut, isAuthenticated}}`` references and each
sign-in method's hooks call mutations of their own. In ``functions/auth.py``
of an app whose page uses 2.x::

    from syncline.accounts import Password, convex_auth

    auth = convex_auth(providers=[Password()])
    refreshSession, signOut, isAuthenticated = auth.v2.session()
    signUpWithUsernamePassword, signInWithUsernamePassword = auth.v2.username_password()

The other methods, each in its module:

* OAuth (GitHub, Google, Apple, OIDC): ``auth.v2.oauth(id)``,
  :mod:`syncline.accounts.v2_oauth`;
* email + password with mailed links: ``auth.v2.email_password()`` (and
  ``auth.v2.mail``), :mod:`syncline.accounts.v2_email_password`;
* username + passkey: ``auth.v2.username_passkey()`` and
  ``auth.v2.passkey_management()``, :mod:`syncline.accounts.v2_passkey` and
  :mod:`syncline.accounts.v2_passkey_management`.

| function | kind, args | answer |
|---|---|---|
| ``refreshSession`` | mutation ``{refreshToken}`` | ``{kind: "rotated", tokens}`` or ``{kind: "noSession"}`` |
| ``signOut`` | mutation ``{refreshToken}`` | null; the token's session ends |
| ``isAuthenticated`` | query ``{}`` | whether the caller's session is live |
| ``signUpWithUsernamePassword`` | mutation ``{username, password}`` | ``{status: "complete", tokens}`` or ``{status: "error", userError}`` |
| ``signInWithUsernamePassword`` | mutation ``{username, password}`` | the same |

``tokens`` is ``{accessToken, refreshToken, refreshTokenExpiresAt, userId}``.
The tables, the token format, rotation and the rate limits are 0.0.x's, so
one deployment's users can move from one client major to the other. The
names ``signOut`` (an action in 0.0.x, a mutation in 2.x) collide, so an app
binds one set or the other.

Sign-in failures answer ``INVALID_CREDENTIALS`` for an unknown username and
a wrong password alike, after the same scrypt work (2.x's own backend answers
``USER_NOT_FOUND``; the client accepts either). Hashing runs inside the
mutation, as it does in Convex: each sign-in holds the database writer for
one scrypt run (about 50-100 ms on an idle core, within the 1 s mutation
limit of ``--function-timeout``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from syncline.accounts.issuer import CTX_MEMBER, TokenIssuer
from syncline.accounts.mail import Message, send_message
from syncline.accounts.passwords import (
    MAX_PASSWORD_BYTES,
    dummy_verify,
    hash_password,
    verify_password,
)
from syncline.accounts.providers import rate_keys
from syncline.accounts.store import Store
from syncline.accounts.user_errors import MAX_USERNAME_LENGTH, invalid_username, password_problem
from syncline.accounts.v2_email_password import email_password_functions
from syncline.accounts.v2_oauth import oauth_functions
from syncline.accounts.v2_passkey import passkey_functions, passkey_method
from syncline.accounts.v2_passkey_management import management_functions
from syncline.errors import FunctionDefinitionError, InternalError
from syncline.functions.registration import FunctionKind, RegisteredFunction, Visibility
from syncline.values.validators import v

if TYPE_CHECKING:
    from syncline.accounts.setup import ConvexAuth

__all__ = ["ConvexAuthV2"]


async def _send_mail(ctx: Any, to: str, subject: str, text: str, link: str) -> None:
    await send_message(ctx.env, Message(to, subject, text, code=link, kind="Link"))


def _error(user_error: dict[str, Any]) -> dict[str, Any]:
    return {"status": "error", "userError": user_error}


class ConvexAuthV2:
    """Builds the 2.x functions of one :class:`~syncline.accounts.ConvexAuth` (``auth.v2``)."""

    def __init__(self, auth: ConvexAuth, module: str) -> None:
        self.auth = auth
        self.module = module
        #: the internal action that sends the email + password method's mails (scheduled by
        #: its mutations); bind it in functions/auth.py (``authMail = auth.v2.mail``)
        self.mail = auth._function(
            _send_mail,
            FunctionKind.ACTION,
            {"to": v.string(), "subject": v.string(), "text": v.string(), "link": v.string()},
            module,
            visibility=Visibility.INTERNAL,
        )

    def function(
        self, handler: Any, kind: FunctionKind, args: dict[str, Any]
    ) -> RegisteredFunction:
        """A public function of the app's auth module, which installs the token issuer."""
        from syncline.accounts.setup import MARKER

        fn = self.auth._function(handler, kind, args, self.module)
        # The application installs the issuer when it finds this marker.
        setattr(fn, MARKER, self.auth)
        return fn

    def store(self, ctx: Any) -> Store:
        """The auth tables, inside this mutation."""
        return Store(ctx, self.auth.lifetimes, self.auth.rate_limit)

    def issuer(self, ctx: Any) -> TokenIssuer:
        issuer = getattr(ctx, CTX_MEMBER, None)
        if not isinstance(issuer, TokenIssuer):
            raise InternalError(
                "Built-in auth has no token issuer in this mutation", code="AuthNotConfigured"
            )
        return issuer

    def bundle(self, ctx: Any, session: dict[str, str]) -> dict[str, Any]:
        """The 2.x ``tokens`` of a new or rotated session."""
        issuer = self.issuer(ctx)
        lifetimes = self.auth.lifetimes
        # The refresh token dies when unused for session_inactive_s, or with its session.
        expires = float(ctx.now) + lifetimes.session_inactive_s * 1000
        doc = ctx.db.get(session["sessionId"])
        if doc is not None:
            expires = min(expires, float(doc["expirationTime"]))
        return {
            "accessToken": issuer.sign(
                session["userId"], session["sessionId"], lifetimes.access_token_s
            ),
            "refreshToken": session["refreshToken"],
            "refreshTokenExpiresAt": expires,
            "userId": session["userId"],
        }

    # -- the session functions --------------------------------------------

    def session(self) -> tuple[RegisteredFunction, RegisteredFunction, RegisteredFunction]:
        """``refreshSession, signOut, isAuthenticated`` (``ConvexAuthProvider``'s ``api``)."""

        def refresh_session(ctx: Any, refreshToken: str) -> dict[str, Any]:
            session = self.store(ctx).refresh(refreshToken)
            if session is None:
                return {"kind": "noSession"}
            return {"kind": "rotated", "tokens": self.bundle(ctx, session)}

        def sign_out(ctx: Any, refreshToken: str) -> None:
            store = self.store(ctx)
            doc = store.refresh_token(refreshToken)
            if doc is not None:
                store.end_session(doc["sessionId"])

        token_args = {"refreshToken": v.string()}
        return (
            self.function(refresh_session, FunctionKind.MUTATION, token_args),
            self.function(sign_out, FunctionKind.MUTATION, token_args),
            self.auth.is_authenticated,  # the same query as 0.0.x's
        )

    # -- username + password --------------------------------------------

    def username_password(
        self, *, id: str = "usernamePassword", min_length: int = 8
    ) -> tuple[RegisteredFunction, RegisteredFunction]:
        """``signUpWithUsernamePassword, signInWithUsernamePassword``.

        Accounts have provider ``id`` and the username as ``providerAccountId``;
        the user's ``name`` is the username.
        """
        if not isinstance(min_length, int) or not 1 <= min_length <= 256:
            raise FunctionDefinitionError(
                f"username_password(min_length=...) must be an integer from 1 to 256, "
                f"got {min_length!r}"
            )

        def sign_up(ctx: Any, username: str, password: str) -> dict[str, Any]:
            problem = invalid_username(username) or password_problem(password, min_length)
            if problem is not None:
                return _error(problem)
            store = self.store(ctx)
            if store.account(id, username) is not None:
                return _error({"error": "USERNAME_TAKEN"})
            account = store.create_account(
                id, username, {"name": username}, secret=hash_password(password)
            )
            return {
                "status": "complete",
                "tokens": self.bundle(ctx, store.create_session(account["userId"])),
            }

        def sign_in(ctx: Any, username: str, password: str) -> dict[str, Any]:
            store = self.store(ctx)
            account_key = f"{id}:{username[:MAX_USERNAME_LENGTH]}"
            keys = rate_keys(account_key)
            if any(store.is_blocked(key) for key in keys):
                window_ms = self.auth.rate_limit.window_s * 1000
                retry_ms = window_ms / self.auth.rate_limit.max_attempts
                return _error({"error": "RATE_LIMITED", "retryAfterMs": retry_ms})
            account = None if len(password) > MAX_PASSWORD_BYTES else store.account(id, username)
            secret = None if account is None else account.get("secret")
            # An unknown username costs the same scrypt run as a wrong password.
            ok = dummy_verify(password) if secret is None else verify_password(password, secret)
            if not ok or account is None:
                for key in keys:
                    store.record_failure(key)
                return _error({"error": "INVALID_CREDENTIALS"})
            store.clear_failures(account_key)
            return {
                "status": "complete",
                "tokens": self.bundle(ctx, store.create_session(account["userId"])),
            }

        credentials = {"username": v.string(), "password": v.string()}
        return (
            self.function(sign_up, FunctionKind.MUTATION, credentials),
            self.function(sign_in, FunctionKind.MUTATION, credentials),
        )

    # -- OAuth -------------------------------------------------------------

    def oauth(self, provider: str) -> tuple[RegisteredFunction, RegisteredFunction]:
        """``startSignInWith<X>, completeSignInWith<X>`` for OAuth provider ``provider``.

        See :mod:`syncline.accounts.v2_oauth`.
        """
        return oauth_functions(self, provider)

    # -- email + password ------------------------------------------------------

    def email_password(
        self,
        *,
        id: str = "emailPassword",
        min_length: int = 8,
        sign_up_url: str = "/validate-email",
        recovery_url: str = "/reset-password",
        change_email_url: str = "/confirm-email-change",
    ) -> tuple[RegisteredFunction, ...]:
        """The nine functions of the 2.x email + password method (see
        :mod:`syncline.accounts.v2_email_password` for their names, in order).

        Accounts have provider ``id`` and the email (lower-cased) as
        ``providerAccountId``. The ``*_url`` are the app's landing pages for
        the mailed links (``?code=`` is added): paths joined to ``SITE_URL``,
        or URLs under it.
        """
        return email_password_functions(
            self,
            id=id,
            min_length=min_length,
            sign_up_url=sign_up_url,
            recovery_url=recovery_url,
            change_email_url=change_email_url,
        )

    # -- username + passkey ----------------------------------------------------

    def username_passkey(
        self,
        *,
        id: str = "usernamePasskey",
        rp_id: str | None = None,
        origins: Sequence[str] | None = None,
        rp_name: str | None = None,
    ) -> tuple[RegisteredFunction, ...]:
        """The four functions of the 2.x username + passkey method (see
        :mod:`syncline.accounts.v2_passkey` for their names, in order).

        Accounts have provider ``id`` and the username as ``providerAccountId``
        (the user's ``name`` too). ``rp_id`` (default: ``SITE_URL``'s host
        name) owns the passkeys; ``origins`` (default: ``SITE_URL``'s origin)
        are the pages allowed to use them; ``rp_name`` is shown by the
        browser's dialog (default: the RP ID).
        """
        method = passkey_method(self, id=id, rp_id=rp_id, origins=origins, rp_name=rp_name)
        return passkey_functions(self, method)

    def passkey_management(
        self,
        *,
        id: str = "usernamePasskey",
        rp_id: str | None = None,
        origins: Sequence[str] | None = None,
        rp_name: str | None = None,
    ) -> tuple[RegisteredFunction, ...]:
        """The seven functions of ``useAddPasskey``, ``useRemovePasskey``, listing and
        renaming (see :mod:`syncline.accounts.v2_passkey_management`); the arguments are
        :meth:`username_passkey`'s."""
        method = passkey_method(self, id=id, rp_id=rp_id, origins=origins, rp_name=rp_name)
        return management_functions(self, method)
