"""Codes by email, shared by the providers that send them (Password, Email)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncline.accounts.errors import INVALID_CODE, auth_error
from syncline.accounts.mail import Message, send_message
from syncline.accounts.providers import rate_keys, string_param

if TYPE_CHECKING:
    from syncline.accounts.setup import SignInFlow

__all__ = ["mail_code", "sign_in_with_code"]

_MAX_CODE_LENGTH = 64


async def mail_code(
    flow: SignInFlow,
    provider: str,
    account_id: str,
    email: str,
    code: str,
    lifetime_s: float,
    message: tuple[str, str],
) -> None:
    """Store ``code`` for the account (verifying ``email`` when used) and mail it.

    ``message`` is the mail's (subject, text).
    """
    await flow.store(
        "createCode",
        accountId=account_id,
        provider=provider,
        code=code,
        lifetimeS=lifetime_s,
        emailVerified=email,
    )
    subject, text = message
    await send_message(flow.ctx.env, Message(email, subject, text, code))


async def sign_in_with_code(
    flow: SignInFlow,
    provider: str,
    params: dict[str, Any],
    email: str | None,
    *,
    secret: str | None = None,
) -> dict[str, Any]:
    """Spend ``params.code`` of ``provider`` (and ``email``): tokens, or ``InvalidCode``.

    Wrong codes count against the email and the client address. ``secret``
    (a new password hash) is set on the account when the code is right.
    """
    code = string_param(params, "code", max_length=_MAX_CODE_LENGTH)
    session = await flow.store(
        "signInWithCode",
        code=code,
        provider=provider,
        email=email,
        secret=secret,
        rateKeys=[] if email is None else rate_keys(f"{provider}-code:{email}"),
    )
    if session is None:
        raise auth_error(*INVALID_CODE)
    return flow.tokens(session)
