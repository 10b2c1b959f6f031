"""Sign-in providers: what ``auth:signIn`` does for ``{"provider": <id>, "params"}``.

A provider has an ``id`` (the client's ``signIn(<id>, ...)``) and an async
``sign_in(flow, params, verifier)`` returning the action's answer. The
built-in ones: :class:`~syncline.accounts.password.Password`,
:class:`~syncline.accounts.email.Email` and the OAuth providers of
:mod:`syncline.accounts.oauth`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from syncline.accounts.errors import auth_error
from syncline.accounts.store import ADDRESS_PREFIX
from syncline.functions.caller import client_address

if TYPE_CHECKING:
    from syncline.accounts.setup import SignInFlow

__all__ = ["MAX_EMAIL_LENGTH", "Provider", "email_param", "rate_keys", "string_param"]

MAX_EMAIL_LENGTH = 254
_MAX_PARAM_LENGTH = 1024


class Provider(Protocol):
    @property
    def id(self) -> str: ...

    async def sign_in(
        self, flow: SignInFlow, params: dict[str, Any], verifier: str | None
    ) -> dict[str, Any]: ...


def string_param(params: dict[str, Any], name: str, *, max_length: int = _MAX_PARAM_LENGTH) -> str:
    """``params[name]``: a non-empty string of at most ``max_length`` characters."""
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise auth_error(
            "InvalidParams", f"params.{name} must be a non-empty string, got {type(value).__name__}"
        )
    if len(value) > max_length:
        raise auth_error(
            "InvalidParams",
            f"params.{name} is {len(value)} characters long; the limit is {max_length}",
        )
    return value


def email_param(params: dict[str, Any]) -> str:
    """``params.email``, trimmed and lower-cased (one account per address)."""
    email = string_param(params, "email", max_length=MAX_EMAIL_LENGTH).strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or not domain or " " in email:
        raise auth_error("InvalidParams", "params.email must be an email address")
    return email


def rate_keys(account_key: str) -> list[str]:
    """The rate-limit identifiers of an attempt: the account's, and the client address's."""
    address = client_address.get()
    return [account_key] if address is None else [account_key, ADDRESS_PREFIX + address]
