"""Emailed links of the 2.x email flows: a code in the link, a secret in the browser.

A challenge (``authChallenges``) is created when a flow starts (sign-up,
password recovery, email change). The emailed link carries ``emailCode``;
the answer to the browser that started carries ``browserSecret``, which the
2.x client keeps in its storage. Completing needs both, so a link opened in
another browser, or read by whoever sees the mail, is useless alone. Both
are 32+ random characters, stored as SHA-256 digests and compared in
constant time.

Lookups follow the 2.x client's vocabulary: no live challenge for the secret
(unknown, spent or expired) is ``INVALID_CHALLENGE``; a live one with another
code (an older link of the same browser) is ``INCORRECT_CODE``, and the
challenge stays, so the newest link still works.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from syncline.accounts.mail import random_code
from syncline.accounts.store import digest
from syncline.accounts.tables import CHALLENGES

__all__ = ["Challenge", "ChallengeProblem", "create_challenge", "find_challenge"]

#: the longest emailCode or browserSecret looked up (ours are 32 and 43 characters)
_MAX_SECRET_LENGTH = 128


@dataclass(frozen=True)
class Challenge:
    """A new challenge: the code for the mail and the secret for the browser."""

    id: str
    email_code: str
    browser_secret: str


@dataclass(frozen=True)
class ChallengeProblem:
    """Why a challenge cannot be completed: ``INVALID_CHALLENGE`` or ``INCORRECT_CODE``."""

    error: str

    def user_error(self) -> dict[str, str]:
        return {"error": self.error}


def create_challenge(
    ctx: Any,
    kind: str,
    provider: str,
    email: str,
    lifetime_s: float,
    *,
    password_hash: str | None = None,
    user_id: str | None = None,
) -> Challenge:
    """Record a challenge of ``kind`` for ``email`` (expired ones of the address are dropped)."""
    now = float(ctx.now)
    for old in (
        ctx.db.query(CHALLENGES).with_index("email", lambda q: q.eq("email", email)).collect()
    ):
        if old["expirationTime"] <= now:
            ctx.db.delete(old["_id"])
    email_code = random_code(32)
    browser_secret = secrets.token_urlsafe(32)
    doc: dict[str, Any] = {
        "kind": kind,
        "provider": provider,
        "email": email,
        "codeHash": digest(email_code),
        "secretHash": digest(browser_secret),
        "expirationTime": now + lifetime_s * 1000,
    }
    if password_hash is not None:
        doc["passwordHash"] = password_hash
    if user_id is not None:
        doc["userId"] = user_id
    challenge_id = ctx.db.insert(CHALLENGES, doc)
    return Challenge(str(challenge_id), email_code, browser_secret)


def find_challenge(
    ctx: Any, kind: str, provider: str, email_code: str, browser_secret: str
) -> dict[str, Any] | ChallengeProblem:
    """The live challenge of ``browser_secret`` whose code is ``email_code``, or the problem."""
    if len(browser_secret) > _MAX_SECRET_LENGTH or len(email_code) > _MAX_SECRET_LENGTH:
        return ChallengeProblem("INVALID_CHALLENGE")
    doc = (
        ctx.db.query(CHALLENGES)
        .with_index("secretHash", lambda q: q.eq("secretHash", digest(browser_secret)))
        .first()
    )
    if (
        doc is None
        or doc["kind"] != kind
        or doc["provider"] != provider
        or doc["expirationTime"] <= float(ctx.now)
    ):
        return ChallengeProblem("INVALID_CHALLENGE")
    if not hmac.compare_digest(doc["codeHash"].encode(), digest(email_code).encode()):
        return ChallengeProblem("INCORRECT_CODE")
    return dict(doc)
