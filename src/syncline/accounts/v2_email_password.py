"""The email + password functions ``@convex-dev/auth`` 2.x calls (``methods/email-password``).

In ``functions/auth.py``::

    auth = convex_auth(providers=[Password()])
    refreshSession, signOut, isAuthenticated = auth.v2.session()
    (
        signUpWithEmailPassword,
        completeSignUpWithEmailPassword,
        signInWithEmailPassword,
        changePassword,
        startPasswordRecovery,
        checkPasswordRecovery,
        completePasswordRecovery,
        startChangeEmail,
        completeChangeEmail,
    ) = auth.v2.email_password()
    authMail = auth.v2.mail  # the internal action that sends the mails

A sign-up creates no account: it records a challenge
(:mod:`syncline.accounts.challenges`) holding the password hash and mails a
link; the account, its verified email and the first session appear when the
link is opened in the browser that signed up. Mails are sent by ``auth.v2.mail``,
scheduled by the mutations (so a mutation never waits for a mail server), through
the deployment's SMTP settings (:mod:`syncline.accounts.mail`; without
``SMTP_HOST`` the link is written to the server log).

No answer tells whether an email has an account: a sign-up with a taken email
and a recovery for an unknown one answer as the others do, after the same
work, and the mail (to the address's owner) says what happened instead of
carrying a link. A change to a taken address is refused only when its link is
opened (``EMAIL_TAKEN``). 2.x's own backend answers ``EMAIL_TAKEN`` and
``EMAIL_NOT_FOUND`` at the start; the client takes either answer.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syncline.accounts.challenges import ChallengeProblem, create_challenge, find_challenge
from syncline.accounts.errors import auth_error
from syncline.accounts.helpers import get_auth_session_id, get_auth_user_id
from syncline.accounts.passwords import (
    MAX_PASSWORD_BYTES,
    dummy_verify,
    hash_password,
    verify_password,
)
from syncline.accounts.providers import MAX_EMAIL_LENGTH, rate_keys
from syncline.accounts.redirects import redirect_target, with_query_param
from syncline.accounts.store import Store
from syncline.accounts.tables import ACCOUNTS, SESSIONS
from syncline.accounts.user_errors import password_problem
from syncline.errors import FunctionDefinitionError
from syncline.functions.registration import FunctionKind, RegisteredFunction
from syncline.values.validators import v

if TYPE_CHECKING:
    from syncline.accounts.v2 import ConvexAuthV2

__all__ = ["RECOVERY_LIFETIME_S", "SIGN_UP_LIFETIME_S", "email_password_functions"]

#: how long links stay valid (recovery: OWASP ASVS 6.5.5's ten minutes at most)
SIGN_UP_LIFETIME_S = 60 * 60
CHANGE_EMAIL_LIFETIME_S = 60 * 60
RECOVERY_LIFETIME_S = 10 * 60

_SIGN_UP, _RECOVERY, _CHANGE_EMAIL = "signUp", "recovery", "changeEmail"


def normal_email(email: str) -> str | None:
    """``email`` trimmed, NFC-normalised and lower-cased, or None when it is not an address."""
    address = unicodedata.normalize("NFC", email.strip()).lower()
    local, at, domain = address.partition("@")
    if (
        len(address) > MAX_EMAIL_LENGTH
        or not at
        or not local
        or "." not in domain.strip(".")
        or any(c.isspace() or unicodedata.category(c).startswith("C") for c in address)
        or "@" in domain
    ):
        return None
    return address


def _failed(user_error: dict[str, Any]) -> dict[str, Any]:
    return {"success": False, "userError": user_error}


def _sign_in_error(user_error: dict[str, Any]) -> dict[str, Any]:
    return {"status": "error", "userError": user_error}


class _Method:
    """The functions of one email + password method (provider id ``id``)."""

    def __init__(
        self,
        v2: ConvexAuthV2,
        id: str,
        min_length: int,
        urls: dict[str, str],
    ) -> None:
        self.v2 = v2
        self.id = id
        self.min_length = min_length
        self.urls = urls

    # -- shared steps --------------------------------------------------------

    def _rate_limited(self) -> dict[str, Any]:
        limit = self.v2.auth.rate_limit
        return {"error": "RATE_LIMITED", "retryAfterMs": limit.window_s * 1000 / limit.max_attempts}

    def _spend_mail(self, store: Store, email: str) -> bool:
        """Count a mailed message against the address and the client; False past the limit."""
        keys = rate_keys(f"{self.id}:mail:{email}")
        if any(store.is_blocked(key) for key in keys):
            return False
        for key in keys:
            store.record_failure(key)
        return True

    def _mail(self, ctx: Any, to: str, subject: str, text: str, link: str = "") -> None:
        mailer = self.v2.mail
        if mailer.path is None:
            raise auth_error(
                "AuthNotConfigured",
                "The email + password method sends mail through an internal action: bind it "
                "in functions/auth.py (authMail = auth.v2.mail)",
            )
        ctx.scheduler.run_after(
            0, mailer, {"to": to, "subject": subject, "text": text, "link": link}
        )

    def _link(self, ctx: Any, kind: str, email_code: str) -> str:
        return with_query_param(redirect_target(ctx.env, self.urls[kind]), "code", email_code)

    def _account_of_user(self, store: Store, user_id: str) -> dict[str, Any] | None:
        return (
            store.db.query(ACCOUNTS)
            .with_index(
                "userIdAndProvider", lambda q: q.eq("userId", user_id).eq("provider", self.id)
            )
            .first()
        )

    def _end_sessions(self, store: Store, user_id: str, *, keep: str | None = None) -> None:
        for session in (
            store.db.query(SESSIONS)
            .with_index("userId", lambda q: q.eq("userId", user_id))
            .collect()
        ):
            if session["_id"] != keep:
                store.end_session(session["_id"])

    def _complete(self, ctx: Any, store: Store, user_id: str) -> dict[str, Any]:
        return {"status": "complete", "tokens": self.v2.bundle(ctx, store.create_session(user_id))}

    # -- sign-up and sign-in ---------------------------------------------------

    def sign_up(self, ctx: Any, email: str, password: str) -> dict[str, Any]:
        address = normal_email(email)
        if address is None:
            return _failed({"error": "INVALID_EMAIL"})
        problem = password_problem(password, self.min_length)
        if problem is not None:
            return _failed(problem)
        store = self.v2.store(ctx)
        if not self._spend_mail(store, address):
            return _failed(self._rate_limited())
        # Hashed whether or not the address is taken: the same work either way.
        challenge = create_challenge(
            ctx,
            _SIGN_UP,
            self.id,
            address,
            SIGN_UP_LIFETIME_S,
            password_hash=hash_password(password),
        )
        if store.account(self.id, address) is None:
            link = self._link(ctx, _SIGN_UP, challenge.email_code)
            text = (
                "Open this link in the browser where you signed up, to confirm your email "
                f"address and sign in:\n\n{link}\n\nIt expires in "
                f"{SIGN_UP_LIFETIME_S // 60} minutes. If you did not sign up, ignore this mail."
            )
            self._mail(ctx, address, "Confirm your email address", text, link)
        else:
            text = (
                "Someone tried to create an account with this email address, which already "
                "has one. If it was you, sign in, or reset your password. If not, ignore this mail."
            )
            self._mail(ctx, address, "Sign-up attempt", text)
        return {"success": True, "browserSecret": challenge.browser_secret}

    def complete_sign_up(self, ctx: Any, emailCode: str, browserSecret: str) -> dict[str, Any]:
        found = find_challenge(ctx, _SIGN_UP, self.id, emailCode, browserSecret)
        if isinstance(found, ChallengeProblem):
            return _sign_in_error(found.user_error())
        ctx.db.delete(found["_id"])
        store = self.v2.store(ctx)
        if store.account(self.id, found["email"]) is not None:
            return _sign_in_error({"error": "EMAIL_TAKEN"})
        account = store.create_account(
            self.id,
            found["email"],
            {"email": found["email"]},
            secret=found["passwordHash"],
            email_verified=True,
        )
        return self._complete(ctx, store, account["userId"])

    def sign_in(self, ctx: Any, email: str, password: str) -> dict[str, Any]:
        store = self.v2.store(ctx)
        address = normal_email(email) or ""
        account_key = f"{self.id}:{address or email[:MAX_EMAIL_LENGTH]}"
        keys = rate_keys(account_key)
        if any(store.is_blocked(key) for key in keys):
            return _sign_in_error(self._rate_limited())
        account = None
        if address and len(password) <= MAX_PASSWORD_BYTES:
            account = store.account(self.id, address)
        secret = None if account is None else account.get("secret")
        # An unknown email costs the same scrypt run as a wrong password.
        ok = dummy_verify(password) if secret is None else verify_password(password, secret)
        if not ok or account is None:
            for key in keys:
                store.record_failure(key)
            return _sign_in_error({"error": "INVALID_CREDENTIALS"})
        store.clear_failures(account_key)
        return self._complete(ctx, store, account["userId"])

    def _check_current_password(
        self, store: Store, account: dict[str, Any], password: str
    ) -> dict[str, Any] | None:
        """None when ``password`` is the account's; else the error (and the failure counted)."""
        keys = rate_keys(f"{self.id}:{account['providerAccountId']}")
        if any(store.is_blocked(key) for key in keys):
            return self._rate_limited()
        secret = account.get("secret")
        ok = (
            len(password) <= MAX_PASSWORD_BYTES
            and secret is not None
            and verify_password(password, secret)
        )
        if not ok:
            for key in keys:
                store.record_failure(key)
            return {"error": "INVALID_CREDENTIALS"}
        return None

    def change_password(
        self,
        ctx: Any,
        currentPassword: str,
        newPassword: str,
        signOutOtherSessions: bool | None = None,
    ) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed({"error": "NOT_LOGGED_IN"})
        store = self.v2.store(ctx)
        account = self._account_of_user(store, user_id)
        if account is None:
            return _failed({"error": "INVALID_CREDENTIALS"})
        problem = password_problem(newPassword, self.min_length)
        if problem is not None:
            return _failed(problem)
        wrong = self._check_current_password(store, account, currentPassword)
        if wrong is not None:
            return _failed(wrong)
        store.set_secret(account["_id"], hash_password(newPassword))
        if signOutOtherSessions:
            self._end_sessions(store, user_id, keep=get_auth_session_id(ctx))
        text = (
            "The password of your account was changed. If you did not change it, reset "
            "your password now."
        )
        self._mail(ctx, account["providerAccountId"], "Your password was changed", text)
        return {"success": True}

    # -- password recovery ---------------------------------------------------

    def start_recovery(self, ctx: Any, email: str) -> dict[str, Any]:
        address = normal_email(email)
        if address is None:
            return _failed({"error": "INVALID_EMAIL"})
        store = self.v2.store(ctx)
        if not self._spend_mail(store, address):
            return _failed(self._rate_limited())
        account = store.account(self.id, address)
        challenge = create_challenge(
            ctx,
            _RECOVERY,
            self.id,
            address,
            RECOVERY_LIFETIME_S,
            user_id=None if account is None else account["userId"],
        )
        if account is not None:
            link = self._link(ctx, _RECOVERY, challenge.email_code)
            text = (
                "Open this link in the browser where you asked for it, to choose a new "
                f"password:\n\n{link}\n\nIt expires in {RECOVERY_LIFETIME_S // 60} minutes. "
                "If you did not ask, ignore this mail."
            )
            self._mail(ctx, address, "Reset your password", text, link)
        else:
            text = (
                "Someone asked to reset the password of an account with this email address, "
                "but no account uses it. If it was not you, ignore this mail."
            )
            self._mail(ctx, address, "Password reset requested", text)
        return {"success": True, "browserSecret": challenge.browser_secret, "sentTo": address}

    def _recovery(
        self, ctx: Any, emailCode: str, browserSecret: str
    ) -> dict[str, Any] | ChallengeProblem:
        found = find_challenge(ctx, _RECOVERY, self.id, emailCode, browserSecret)
        if not isinstance(found, ChallengeProblem) and found.get("userId") is None:
            # No account had the address: no link was sent, so no code can be right.
            return ChallengeProblem("INCORRECT_CODE")
        return found

    def check_recovery(self, ctx: Any, emailCode: str, browserSecret: str) -> dict[str, Any]:
        found = self._recovery(ctx, emailCode, browserSecret)
        if isinstance(found, ChallengeProblem):
            return _failed(found.user_error())
        return {"success": True}

    def complete_recovery(
        self, ctx: Any, emailCode: str, browserSecret: str, newPassword: str
    ) -> dict[str, Any]:
        found = self._recovery(ctx, emailCode, browserSecret)
        if isinstance(found, ChallengeProblem):
            return _sign_in_error(found.user_error())
        problem = password_problem(newPassword, self.min_length)
        if problem is not None:
            return _sign_in_error(problem)  # the link stays usable
        ctx.db.delete(found["_id"])
        store = self.v2.store(ctx)
        account = store.account(self.id, found["email"])
        if account is None or account["userId"] != found["userId"]:
            return _sign_in_error({"error": "INVALID_CHALLENGE"})
        store.set_secret(account["_id"], hash_password(newPassword))
        # Whoever knew the old password is signed out everywhere.
        self._end_sessions(store, account["userId"])
        store.clear_failures(f"{self.id}:{found['email']}")
        self._mail(
            ctx,
            found["email"],
            "Your password was reset",
            "The password of your account was reset with a link sent to this address.",
        )
        return self._complete(ctx, store, account["userId"])

    # -- email change ----------------------------------------------------------

    def start_change_email(self, ctx: Any, newEmail: str, currentPassword: str) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed({"error": "NOT_LOGGED_IN"})
        store = self.v2.store(ctx)
        account = self._account_of_user(store, user_id)
        if account is None:
            return _failed({"error": "INVALID_CREDENTIALS"})
        address = normal_email(newEmail)
        if address is None:
            return _failed({"error": "INVALID_EMAIL"})
        wrong = self._check_current_password(store, account, currentPassword)
        if wrong is not None:
            return _failed(wrong)
        if not self._spend_mail(store, address):
            return _failed(self._rate_limited())
        challenge = create_challenge(
            ctx, _CHANGE_EMAIL, self.id, address, CHANGE_EMAIL_LIFETIME_S, user_id=user_id
        )
        if store.account(self.id, address) is None:
            link = self._link(ctx, _CHANGE_EMAIL, challenge.email_code)
            text = (
                "Open this link in the browser where you asked for it, to make this address "
                f"your account's email:\n\n{link}\n\nIt expires in "
                f"{CHANGE_EMAIL_LIFETIME_S // 60} minutes. If you did not ask, ignore this mail."
            )
            self._mail(ctx, address, "Confirm your new email address", text, link)
        else:
            text = (
                "Someone asked to move their account to this email address, which already has "
                "an account. If it was not you, ignore this mail."
            )
            self._mail(ctx, address, "Email change attempt", text)
        return {"success": True, "browserSecret": challenge.browser_secret}

    def complete_change_email(self, ctx: Any, emailCode: str, browserSecret: str) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed({"error": "NOT_LOGGED_IN"})
        found = find_challenge(ctx, _CHANGE_EMAIL, self.id, emailCode, browserSecret)
        if isinstance(found, ChallengeProblem):
            return _failed(found.user_error())
        if found.get("userId") != user_id:
            return _failed({"error": "WRONG_USER"})  # the challenge stays for its user
        ctx.db.delete(found["_id"])
        store = self.v2.store(ctx)
        address = found["email"]
        account = self._account_of_user(store, user_id)
        if account is None:
            return _failed({"error": "INVALID_CHALLENGE"})
        if store.account(self.id, address) is not None:
            return _failed({"error": "EMAIL_TAKEN"})
        old = account["providerAccountId"]
        store.db.patch(account["_id"], {"providerAccountId": address, "emailVerified": address})
        if store.db.get(user_id) is not None:
            store.db.patch(user_id, {"email": address, "emailVerificationTime": store.now})
        text = (
            f"The email address of your account was changed to {address}. If you did not "
            "change it, contact the site's support."
        )
        self._mail(ctx, old, "Your email address was changed", text)
        return {"success": True}


def email_password_functions(
    v2: ConvexAuthV2,
    *,
    id: str,
    min_length: int,
    sign_up_url: str,
    recovery_url: str,
    change_email_url: str,
) -> tuple[RegisteredFunction, ...]:
    """The nine functions, in the order of the module docstring."""
    if not isinstance(min_length, int) or not 1 <= min_length <= 256:
        raise FunctionDefinitionError(
            f"email_password(min_length=...) must be an integer from 1 to 256, got {min_length!r}"
        )
    for name, url in (
        ("sign_up_url", sign_up_url),
        ("recovery_url", recovery_url),
        ("change_email_url", change_email_url),
    ):
        if not isinstance(url, str) or not url:
            raise FunctionDefinitionError(
                f"email_password({name}=...) must be a path (joined to SITE_URL) or a URL "
                f"under SITE_URL, got {url!r}"
            )
    method = _Method(
        v2,
        id,
        min_length,
        {_SIGN_UP: sign_up_url, _RECOVERY: recovery_url, _CHANGE_EMAIL: change_email_url},
    )
    s = v.string()
    mutation, query = FunctionKind.MUTATION, FunctionKind.QUERY
    link = {"emailCode": s, "browserSecret": s}
    table: list[tuple[Callable[..., Any], FunctionKind, dict[str, Any]]] = [
        (method.sign_up, mutation, {"email": s, "password": s}),
        (method.complete_sign_up, mutation, link),
        (method.sign_in, mutation, {"email": s, "password": s}),
        (
            method.change_password,
            mutation,
            {
                "currentPassword": s,
                "newPassword": s,
                "signOutOtherSessions": v.optional(v.boolean()),
            },
        ),
        (method.start_recovery, mutation, {"email": s}),
        (method.check_recovery, query, link),
        (method.complete_recovery, mutation, {**link, "newPassword": s}),
        (method.start_change_email, mutation, {"newEmail": s, "currentPassword": s}),
        (method.complete_change_email, mutation, link),
    ]
    return tuple(v2.function(handler, kind, args) for handler, kind, args in table)
