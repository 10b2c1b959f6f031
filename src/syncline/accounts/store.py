"""What built-in authentication reads and writes, inside one mutation each.

The ``store`` internal mutation of :func:`~syncline.accounts.convex_auth`
dispatches here on its ``type``; each operation is one transaction, so a
session and its first refresh token appear together, and spending a refresh
token and issuing its successor cannot be split by a crash.

Secrets never stored in clear: refresh tokens and verification codes are
kept as SHA-256 digests (they are long random strings, so a fast hash is
enough), passwords as scrypt hashes (:mod:`syncline.accounts.passwords`).
Comparisons of secrets use :func:`hmac.compare_digest`.

Refresh tokens are ``<authRefreshTokens id>|<secret>``. Each works once: using
it marks it spent and issues its successor; presenting a spent one again is
taken as theft (an attacker and the user both hold it) and ends the session,
so neither can refresh any more.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from syncline.accounts.tables import (
    ACCOUNTS,
    RATE_LIMITS,
    REFRESH_TOKENS,
    SESSIONS,
    USERS,
    VERIFICATION_CODES,
    VERIFIERS,
)

__all__ = ["ADDRESS_PREFIX", "RateLimit", "SessionLifetimes", "Store", "digest"]


#: expired OAuth sign-ins deleted by each new one
_SWEEP = 8


def digest(secret: str) -> str:
    """The stored form of a random secret (refresh token, code, verifier)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class SessionLifetimes:
    """How long things live, in seconds (Convex Auth's defaults)."""

    access_token_s: float = 60 * 60
    session_s: float = 30 * 24 * 60 * 60
    session_inactive_s: float = 30 * 24 * 60 * 60


@dataclass(frozen=True)
class RateLimit:
    """Failed attempts allowed per identifier per window.

    A token bucket: ``max_attempts`` (per account or email) or
    ``max_attempts_per_address`` (per client address, identifiers starting
    with :data:`ADDRESS_PREFIX`) to start with, refilled at that many per
    ``window_s``. A success clears the account's record, never the address's
    (an attacker signing in to an account of their own must not refill it).
    """

    max_attempts: int = 10
    window_s: float = 60 * 60
    max_attempts_per_address: int = 100

    def max_for(self, identifier: str) -> int:
        if identifier.startswith(ADDRESS_PREFIX):
            return self.max_attempts_per_address
        return self.max_attempts


#: the prefix of rate-limit identifiers that are client addresses
ADDRESS_PREFIX = "address:"


class Store:
    """The operations of the ``store`` mutation, over one mutation's ``ctx``."""

    def __init__(self, ctx: Any, lifetimes: SessionLifetimes, rate_limit: RateLimit) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.now = float(ctx.now)
        self.lifetimes = lifetimes
        self.rate_limit = rate_limit

    # -- users and accounts -------------------------------------------------

    def account(self, provider: str, provider_account_id: str) -> dict[str, Any] | None:
        return (
            self.db.query(ACCOUNTS)
            .with_index(
                "providerAndAccountId",
                lambda q: q.eq("provider", provider).eq("providerAccountId", provider_account_id),
            )
            .unique()
        )

    def create_account(
        self,
        provider: str,
        provider_account_id: str,
        profile: dict[str, Any],
        *,
        secret: str | None = None,
        email_verified: bool = False,
    ) -> dict[str, Any]:
        """A new user and its first account; ``profile`` holds the users fields to set."""
        user = {k: v for k, v in profile.items() if v is not None}
        if email_verified and user.get("email"):
            user["emailVerificationTime"] = self.now
        user_id = self.db.insert(USERS, user)
        account: dict[str, Any] = {
            "userId": user_id,
            "provider": provider,
            "providerAccountId": provider_account_id,
        }
        if secret is not None:
            account["secret"] = secret
        if email_verified and user.get("email"):
            account["emailVerified"] = user["email"]
        account_id = self.db.insert(ACCOUNTS, account)
        return {**account, "_id": account_id}

    def upsert_oauth_account(
        self, provider: str, provider_account_id: str, profile: dict[str, Any]
    ) -> dict[str, Any]:
        """The account for an OAuth identity, created with its user on first sign-in."""
        existing = self.account(provider, provider_account_id)
        if existing is not None:
            user_fields = {k: v for k, v in profile.items() if v is not None}
            if user_fields and self.db.get(existing["userId"]) is not None:
                self.db.patch(existing["userId"], user_fields)
            return existing
        return self.create_account(provider, provider_account_id, profile, email_verified=False)

    def set_secret(self, account_id: str, secret: str) -> None:
        self.db.patch(account_id, {"secret": secret})

    def mark_email_verified(self, account: dict[str, Any], email: str) -> None:
        self.db.patch(account["_id"], {"emailVerified": email})
        if self.db.get(account["userId"]) is not None:
            self.db.patch(account["userId"], {"emailVerificationTime": self.now})

    # -- sessions and refresh tokens ---------------------------------------

    def create_session(self, user_id: str) -> dict[str, str]:
        """A new session of ``user_id`` and its first refresh token."""
        session_id = self.db.insert(
            SESSIONS,
            {"userId": user_id, "expirationTime": self.now + self.lifetimes.session_s * 1000},
        )
        return {
            "userId": user_id,
            "sessionId": session_id,
            "refreshToken": self._new_refresh_token(session_id, parent=None),
        }

    def _new_refresh_token(self, session_id: str, parent: str | None) -> str:
        secret = secrets.token_urlsafe(32)
        doc: dict[str, Any] = {
            "sessionId": session_id,
            "expirationTime": self.now + self.lifetimes.session_inactive_s * 1000,
            "tokenHash": digest(secret),
        }
        if parent is not None:
            doc["parentRefreshToken"] = parent
        token_id = self.db.insert(REFRESH_TOKENS, doc)
        return f"{token_id}|{secret}"

    def refresh_token(self, refresh_token: str) -> dict[str, Any] | None:
        """The record of ``refresh_token`` (spent or not), or None when it is not one of ours."""
        token_id, sep, secret = refresh_token.partition("|")
        if not sep or self.db.normalize_id(REFRESH_TOKENS, token_id) is None:
            return None
        doc = self.db.get(token_id)
        if doc is None or not _same(doc["tokenHash"], digest(secret)):
            return None
        return dict(doc)

    def refresh(self, refresh_token: str) -> dict[str, str] | None:
        """Spend ``refresh_token``: the session and a new token, or None (sign the client out)."""
        doc = self.refresh_token(refresh_token)
        if doc is None:
            return None
        token_id = doc["_id"]
        session = self.db.get(doc["sessionId"])
        if session is None or session["expirationTime"] <= self.now:
            self.end_session(doc["sessionId"])
            return None
        if doc.get("firstUsedTime") is not None:
            # Spent already: someone else holds a copy. End the session for both.
            self.end_session(doc["sessionId"])
            return None
        if doc["expirationTime"] <= self.now:
            return None
        self.db.patch(token_id, {"firstUsedTime": self.now})
        return {
            "userId": session["userId"],
            "sessionId": session["_id"],
            "refreshToken": self._new_refresh_token(session["_id"], parent=token_id),
        }

    def end_session(self, session_id: str) -> None:
        """Delete the session and every refresh token of it (a no-op when already gone)."""
        if self.db.normalize_id(SESSIONS, session_id) is None:
            return
        for token in (
            self.db.query(REFRESH_TOKENS)
            .with_index("sessionId", lambda q: q.eq("sessionId", session_id))
            .collect()
        ):
            self.db.delete(token["_id"])
        if self.db.get(session_id) is not None:
            self.db.delete(session_id)

    # -- verification codes ------------------------------------------------

    def create_code(
        self,
        account_id: str,
        provider: str,
        code: str,
        lifetime_s: float,
        *,
        verifier: str | None = None,
        verifier_digest: str | None = None,
        email_verified: str | None = None,
    ) -> None:
        """Store ``code`` for ``account_id``, replacing any earlier code of the account.

        ``verifier`` (or its :func:`digest`, ``verifier_digest``) binds the
        code to the browser that holds it (see :meth:`take_code`).
        """
        for old in (
            self.db.query(VERIFICATION_CODES)
            .with_index("accountId", lambda q: q.eq("accountId", account_id))
            .collect()
        ):
            self.db.delete(old["_id"])
        doc: dict[str, Any] = {
            "accountId": account_id,
            "provider": provider,
            "code": digest(code),
            "expirationTime": self.now + lifetime_s * 1000,
        }
        if verifier is not None:
            doc["verifier"] = digest(verifier)
        elif verifier_digest is not None:
            doc["verifier"] = verifier_digest
        if email_verified is not None:
            doc["emailVerified"] = email_verified
        self.db.insert(VERIFICATION_CODES, doc)

    def take_code(
        self, code: str, *, provider: str | None = None, verifier: str | None = None
    ) -> dict[str, Any] | None:
        """The code's record, deleted (codes are single-use); None if absent, expired or mismatched.

        A code bound to a verifier (OAuth) is only accepted with that verifier.
        """
        doc = (
            self.db.query(VERIFICATION_CODES)
            .with_index("code", lambda q: q.eq("code", digest(code)))
            .unique()
        )
        if doc is None:
            return None
        self.db.delete(doc["_id"])
        if doc["expirationTime"] <= self.now:
            return None
        if provider is not None and doc["provider"] != provider:
            return None
        bound = doc.get("verifier")
        if bound is not None and (verifier is None or not _same(bound, digest(verifier))):
            return None
        return doc

    # -- OAuth sign-ins in progress ---------------------------------------

    def create_verifier(
        self,
        provider: str,
        redirect_to: str,
        lifetime_s: float,
        *,
        client_state: str | None = None,
    ) -> str:
        """An OAuth sign-in in progress; its id is the 0.0.x client's ``verifier``.

        ``client_state`` (2.x clients) is the secret the browser keeps and
        presents with the one-time code; it is stored as its digest.
        """
        # Abandoned sign-ins are removed a few at a time by the new ones.
        for old in (
            self.db.query(VERIFIERS)
            .with_index("expirationTime", lambda q: q.lt("expirationTime", self.now))
            .take(_SWEEP)
        ):
            self.db.delete(old["_id"])
        doc = {
            "provider": provider,
            "redirectTo": redirect_to,
            "expirationTime": self.now + lifetime_s * 1000,
        }
        if client_state is not None:
            doc["clientState"] = digest(client_state)
        return str(self.db.insert(VERIFIERS, doc))

    def _verifier(self, verifier_id: str) -> dict[str, Any] | None:
        if self.db.normalize_id(VERIFIERS, verifier_id) is None:
            return None
        doc = self.db.get(verifier_id)
        if doc is None or doc.get("expirationTime", 0) <= self.now:
            return None
        return doc

    def start_oauth(self, verifier_id: str, provider: str, state: str, code_verifier: str) -> bool:
        """Bind the provider's ``state`` (and the PKCE verifier) to a sign-in; only once."""
        doc = self._verifier(verifier_id)
        if doc is None or doc.get("provider") != provider or "codeVerifier" in doc:
            return False
        self.db.patch(verifier_id, {"signature": digest(state), "codeVerifier": code_verifier})
        return True

    def take_oauth_state(
        self, verifier_id: str, provider: str, state: str
    ) -> dict[str, Any] | None:
        """The sign-in whose ``state`` the provider sent back, which can then not be used again.

        A sign-in that expired (its state right) is deleted and returned with
        ``expired`` set, so that the browser can be sent back to say so.
        """
        if self.db.normalize_id(VERIFIERS, verifier_id) is None:
            return None
        doc = self.db.get(verifier_id)
        signature = None if doc is None else doc.get("signature")
        if doc is None or signature is None or not _same(signature, digest(state)):
            return None
        if doc.get("provider") != provider:
            return None
        if doc.get("expirationTime", 0) <= self.now:
            self.db.delete(verifier_id)
            return {**doc, "expired": True}
        fields = {k: val for k, val in doc.items() if not k.startswith("_") and k != "signature"}
        self.db.replace(verifier_id, fields)
        return doc

    def take_verifier(self, verifier_id: str) -> dict[str, Any] | None:
        """Consume an OAuth sign-in (single use): its record, or None if gone or expired."""
        doc = self._verifier(verifier_id)
        if doc is None:
            return None
        self.db.delete(verifier_id)
        return doc

    # -- rate limits -------------------------------------------------------

    def _bucket(
        self, identifier: str, most_attempts: int | None = None
    ) -> tuple[dict[str, Any] | None, float]:
        doc = (
            self.db.query(RATE_LIMITS)
            .with_index("identifier", lambda q: q.eq("identifier", identifier))
            .unique()
        )
        most = float(
            self.rate_limit.max_for(identifier) if most_attempts is None else most_attempts
        )
        if doc is None:
            return None, most
        refill = (self.now - doc["lastAttemptTime"]) / (self.rate_limit.window_s * 1000) * most
        return doc, min(most, doc["attemptsLeft"] + refill)

    def is_blocked(self, identifier: str) -> bool:
        """Whether ``identifier`` used up its failed attempts (no attempt is spent by asking)."""
        return self._bucket(identifier)[1] < 1

    def spend(self, identifier: str, most_attempts: int) -> bool:
        """Take one attempt from ``identifier``'s bucket of ``most_attempts``; False when empty."""
        doc, left = self._bucket(identifier, most_attempts)
        if left < 1:
            return False
        fields = {"lastAttemptTime": self.now, "attemptsLeft": left - 1}
        if doc is None:
            self.db.insert(RATE_LIMITS, {"identifier": identifier, **fields})
        else:
            self.db.patch(doc["_id"], fields)
        return True

    def record_failure(self, identifier: str) -> None:
        doc, left = self._bucket(identifier)
        fields = {"lastAttemptTime": self.now, "attemptsLeft": max(0.0, left - 1)}
        if doc is None:
            self.db.insert(RATE_LIMITS, {"identifier": identifier, **fields})
        else:
            self.db.patch(doc["_id"], fields)

    def clear_failures(self, identifier: str) -> None:
        doc, _ = self._bucket(identifier)
        if doc is not None:
            self.db.delete(doc["_id"])
