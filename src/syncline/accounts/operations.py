"""The operations of the ``store`` internal mutation, by name.

``auth:signIn`` (an action) does the slow or networked parts of a sign-in
(password hashing, sending email, talking to an OAuth provider) and calls
``store`` with ``{"op": <name>, "args": {...}}`` for every read or write, each
one transaction. The operations are composed from :class:`Store`'s methods.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from syncline.accounts.store import ADDRESS_PREFIX, Store
from syncline.errors import InvalidRequest

__all__ = ["OPERATIONS", "run_operation"]


def _sign_up_password(s: Store, a: dict[str, Any]) -> dict[str, Any] | None:
    if s.account(a["provider"], a["email"]) is not None:
        return None
    account = s.create_account(a["provider"], a["email"], a["profile"], secret=a["secret"])
    return {"accountId": account["_id"], "userId": account["userId"]}


def _read_account(s: Store, a: dict[str, Any]) -> dict[str, Any]:
    blocked = any(s.is_blocked(key) for key in a["rateKeys"])
    account = s.account(a["provider"], a["email"])
    if account is None:
        return {"blocked": blocked, "secret": None, "accountId": None, "userId": None}
    return {
        "blocked": blocked,
        "secret": account.get("secret"),
        "accountId": account["_id"],
        "userId": account["userId"],
        "emailVerified": account.get("emailVerified") == a["email"],
    }


def _failure(s: Store, a: dict[str, Any]) -> None:
    for key in a["rateKeys"]:
        s.record_failure(key)


def _session(s: Store, a: dict[str, Any]) -> dict[str, str]:
    for key in a.get("clearKeys", ()):
        s.clear_failures(key)
    return s.create_session(a["userId"])


def _refresh(s: Store, a: dict[str, Any]) -> dict[str, str] | None:
    return s.refresh(a["refreshToken"])


def _sign_out(s: Store, a: dict[str, Any]) -> None:
    s.end_session(a["sessionId"])


def _email_account(s: Store, a: dict[str, Any]) -> dict[str, Any] | None:
    account = s.account(a["provider"], a["email"])
    if account is None and a.get("create"):
        account = s.create_account(a["provider"], a["email"], {"email": a["email"]})
    return None if account is None else {"accountId": account["_id"]}


def _create_code(s: Store, a: dict[str, Any]) -> None:
    s.create_code(
        a["accountId"],
        a["provider"],
        a["code"],
        a["lifetimeS"],
        verifier=a.get("verifier"),
        email_verified=a.get("emailVerified"),
    )


def _sign_in_with_code(s: Store, a: dict[str, Any]) -> dict[str, str] | None:
    """Spend a code; a session for its account, or None (recorded as a failure)."""
    rate_keys = a.get("rateKeys", [])
    if any(s.is_blocked(key) for key in rate_keys):
        return None
    doc = s.take_code(a["code"], provider=a.get("provider"), verifier=a.get("verifier"))
    account = None if doc is None else s.db.get(doc["accountId"])
    email = a.get("email")
    if (
        doc is None
        or account is None
        or (email is not None and account["providerAccountId"] != email)
    ):
        for key in rate_keys:
            s.record_failure(key)
        return None
    if doc.get("emailVerified") is not None:
        s.mark_email_verified(account, doc["emailVerified"])
    if a.get("secret") is not None:
        s.set_secret(account["_id"], a["secret"])
    for key in rate_keys:
        if not key.startswith(ADDRESS_PREFIX):
            s.clear_failures(key)
    return s.create_session(account["userId"])


def _sign_in_anonymous(s: Store, a: dict[str, Any]) -> dict[str, str] | None:
    """A new anonymous user and its session; None past the per-address limit."""
    if a.get("address") is not None and not s.spend(
        f"{a['provider']}:{ADDRESS_PREFIX}{a['address']}", a["most"]
    ):
        return None
    account = s.create_account(a["provider"], secrets.token_hex(16), {"isAnonymous": True})
    return s.create_session(account["userId"])


def _create_verifier(s: Store, a: dict[str, Any]) -> str:
    return s.create_verifier(
        a["provider"], a["redirectTo"], a["lifetimeS"], client_state=a.get("clientState")
    )


def _start_oauth(s: Store, a: dict[str, Any]) -> bool:
    return s.start_oauth(a["verifier"], a["provider"], a["state"], a["codeVerifier"])


def _take_oauth_state(s: Store, a: dict[str, Any]) -> dict[str, Any] | None:
    doc = s.take_oauth_state(a["verifier"], a["provider"], a["state"])
    if doc is None:
        return None
    return {
        "codeVerifier": doc["codeVerifier"],
        "redirectTo": doc["redirectTo"],
        # A 2.x client started it: the code goes back as ?convexAuthCode=, errors too.
        "v2": "clientState" in doc,
        "expired": bool(doc.get("expired")),
    }


def _complete_oauth(s: Store, a: dict[str, Any]) -> bool:
    doc = s.take_verifier(a["verifier"])
    if doc is None:
        return False
    account = s.upsert_oauth_account(a["provider"], a["providerAccountId"], a["profile"])
    # The code works only with the secret of the browser that started: a 2.x
    # client's state, or a 0.0.x client's verifier.
    client_state = doc.get("clientState")
    s.create_code(
        account["_id"],
        a["provider"],
        a["code"],
        a["lifetimeS"],
        verifier=None if client_state is not None else a["verifier"],
        verifier_digest=client_state,
    )
    return True


OPERATIONS: dict[str, Callable[[Store, dict[str, Any]], Any]] = {
    "signUpPassword": _sign_up_password,
    "readAccount": _read_account,
    "failure": _failure,
    "session": _session,
    "refresh": _refresh,
    "signOut": _sign_out,
    "emailAccount": _email_account,
    "createCode": _create_code,
    "signInWithCode": _sign_in_with_code,
    "signInAnonymous": _sign_in_anonymous,
    "createVerifier": _create_verifier,
    "startOAuth": _start_oauth,
    "takeOAuthState": _take_oauth_state,
    "completeOAuth": _complete_oauth,
}


def run_operation(store: Store, op: str, args: dict[str, Any]) -> Any:
    operation = OPERATIONS.get(op)
    if operation is None:
        raise InvalidRequest(
            f"Unknown auth store operation {op!r}; expected one of {', '.join(sorted(OPERATIONS))}"
        )
    return operation(store, args)
