"""The errors sign-in answers with: a ConvexError whose data is ``{"code", "message"}``.

They reach the client as ``ConvexError.data`` (never redacted), so an app can
show the message and branch on the code. Messages never say whether an
account exists: a wrong password and an unknown email answer alike.
"""

from __future__ import annotations

from syncline.errors import ConvexError

__all__ = ["auth_error"]


def auth_error(code: str, message: str) -> ConvexError:
    return ConvexError({"code": code, "message": message})


INVALID_CREDENTIALS = ("InvalidCredentials", "The email or password is incorrect")
TOO_MANY_ATTEMPTS = (
    "TooManyFailedAttempts",
    "Too many failed sign-in attempts; wait a while and try again",
)
SIGN_UP_REFUSED = (
    "SignUpRefused",
    "Cannot sign up with this email and password; if you have an account, sign in "
    "or reset your password",
)
INVALID_CODE = ("InvalidCode", "The code is wrong, expired or already used")
