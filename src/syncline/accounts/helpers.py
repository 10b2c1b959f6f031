"""Who is signed in: :func:`get_auth_user_id` and :func:`get_auth_session_id`.

Built-in access tokens carry ``sub = "<userId>|<sessionId>"``. In queries and
mutations the helpers also read the session document, so a session that was
signed out (or ended by refresh-token reuse) stops counting at once, even
though its access token has not expired, and a live query that asked re-runs
when it ends. Actions have no database: there the token's claims are used.
"""

from __future__ import annotations

from typing import Any

from syncline.accounts.tables import SESSIONS

__all__ = ["get_auth_session_id", "get_auth_user_id"]


def _claims(ctx: Any) -> tuple[str, str] | None:
    identity = ctx.auth.get_user_identity()
    if identity is None:
        return None
    user_id, sep, session_id = identity.subject.partition("|")
    if not sep or not user_id or not session_id:
        return None
    return user_id, session_id


def _live(ctx: Any, user_id: str, session_id: str) -> bool:
    db = getattr(ctx, "db", None)
    if db is None:
        return True  # an action: no transaction to read the session in
    if db.normalize_id(SESSIONS, session_id) is None:
        return False
    session = db.get(session_id)
    return (
        session is not None
        and session["userId"] == user_id
        and session["expirationTime"] > float(ctx.now)
    )


def get_auth_user_id(ctx: Any) -> str | None:
    """The signed-in user's ``users`` id, or None (signed out, or not a built-in token)."""
    claims = _claims(ctx)
    if claims is None or not _live(ctx, *claims):
        return None
    return claims[0]


def get_auth_session_id(ctx: Any) -> str | None:
    """The caller's ``authSessions`` id, or None."""
    claims = _claims(ctx)
    if claims is None or not _live(ctx, *claims):
        return None
    return claims[1]
