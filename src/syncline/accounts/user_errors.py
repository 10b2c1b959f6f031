"""The 2.x client's user errors about usernames and new passwords (``{error, ...}`` objects)."""

from __future__ import annotations

import unicodedata
from typing import Any

from syncline.accounts.passwords import MAX_PASSWORD_BYTES

__all__ = ["MAX_USERNAME_LENGTH", "invalid_username", "password_problem"]

MAX_USERNAME_LENGTH = 100


def invalid_username(username: str) -> dict[str, Any] | None:
    """Why ``username`` cannot be taken, or None."""
    if not username:
        return {"error": "USERNAME_TOO_SHORT", "minimumLength": 1}
    if len(username) > MAX_USERNAME_LENGTH:
        return {"error": "USERNAME_TOO_LONG", "maximumLength": MAX_USERNAME_LENGTH}
    if username != username.strip():
        return {"error": "USERNAME_HAS_SURROUNDING_WHITESPACE"}
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in username):
        return {"error": "USERNAME_HAS_INVALID_CHARACTERS"}
    return None


def password_problem(password: str, min_length: int) -> dict[str, Any] | None:
    """Why ``password`` cannot be set, or None."""
    if len(password) < min_length:
        return {"error": "PASSWORD_TOO_SHORT", "minimumLength": min_length}
    if len(password) > MAX_PASSWORD_BYTES:
        return {"error": "PASSWORD_TOO_LONG", "maximumLength": MAX_PASSWORD_BYTES}
    if password != password.strip():
        return {"error": "PASSWORD_HAS_SURROUNDING_WHITESPACE"}
    return None
