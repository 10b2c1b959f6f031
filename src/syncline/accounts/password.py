"""The Password provider: sign up and sign in with an email and a password.

``signIn("password", {"email", "password", "flow"})``, flows as Convex Auth's:

| flow | params | answer |
|---|---|---|
| ``signUp`` | email, password, name? | tokens (or ``started`` when ``verify`` is set: a code was mailed) |
| ``signIn`` | email, password | tokens (``started`` when the email still needs verifying) |
| ``reset`` | email | ``started`` (a code was mailed if the account exists; the answer is the same either way) |
| ``reset-verification`` | email, code, newPassword | tokens |
| ``email-verification`` | email, code | tokens |

Failed sign-ins count against the email and are refused past the rate limit
(:class:`~syncline.accounts.store.RateLimit`); an unknown email and a wrong
password give the same error after the same work (a dummy scrypt run). A
sign-up with a taken email never says so: with ``verify`` it answers as a
fresh sign-up does (and mails the owner a notice), without it it answers
``SignUpRefused``, which names no account (see docs/built-in-auth.md,
security notes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline.accounts.codes import mail_code, sign_in_with_code
from syncline.accounts.errors import (
    INVALID_CREDENTIALS,
    SIGN_UP_REFUSED,
    TOO_MANY_ATTEMPTS,
    auth_error,
)
from syncline.accounts.mail import Message, numeric_code, send_message
from syncline.accounts.passwords import (
    MAX_PASSWORD_BYTES,
    hash_password_async,
    verify_password_async,
)
from syncline.accounts.providers import email_param, rate_keys, string_param
from syncline.accounts.store import ADDRESS_PREFIX
from syncline.errors import FunctionDefinitionError

if TYPE_CHECKING:
    from syncline.accounts.setup import SignInFlow

__all__ = ["Password"]

_CODE_LIFETIME_S = 15 * 60
_FLOWS = ("signUp", "signIn", "reset", "reset-verification", "email-verification")


@dataclass(frozen=True)
class Password:
    """Email and password accounts.

    ``verify``: mail a code at sign-up and require it before the first
    session. ``reset``: allow password reset by a mailed code.
    ``min_length``: the shortest password accepted at sign-up and reset.
    """

    id: str = "password"
    verify: bool = False
    reset: bool = False
    min_length: int = 8
    code_length: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.min_length, int) or not 1 <= self.min_length <= 256:
            raise FunctionDefinitionError(
                f"Password(min_length=...) must be an integer from 1 to 256, got {self.min_length!r}"
            )
        if not isinstance(self.code_length, int) or not 6 <= self.code_length <= 32:
            raise FunctionDefinitionError(
                f"Password(code_length=...) must be an integer from 6 to 32, got {self.code_length!r}"
            )

    async def sign_in(
        self, flow: SignInFlow, params: dict[str, Any], verifier: str | None
    ) -> dict[str, Any]:
        kind = params.get("flow")
        email = email_param(params)
        if kind == "signUp":
            return await self._sign_up(flow, email, params)
        if kind == "signIn":
            return await self._sign_in(flow, email, params)
        if kind == "reset" and self.reset:
            return await self._send_reset(flow, email)
        if kind == "reset-verification" and self.reset:
            secret = await hash_password_async(self._new_password(params, "newPassword"))
            return await sign_in_with_code(flow, self.id, params, email, secret=secret)
        if kind == "email-verification" and self.verify:
            return await sign_in_with_code(flow, self.id, params, email)
        enabled = [f for f in _FLOWS if self._enabled(f)]
        raise auth_error(
            "InvalidFlow",
            f"params.flow must be one of {', '.join(enabled)} for this app, got {kind!r}",
        )

    def _enabled(self, kind: str) -> bool:
        if kind.startswith("reset"):
            return self.reset
        if kind == "email-verification":
            return self.verify
        return True

    def _new_password(self, params: dict[str, Any], name: str) -> str:
        password = string_param(params, name, max_length=MAX_PASSWORD_BYTES)
        if len(password) < self.min_length:
            raise auth_error(
                "WeakPassword", f"The password must have at least {self.min_length} characters"
            )
        return password

    async def _sign_up(
        self, flow: SignInFlow, email: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        secret = await hash_password_async(self._new_password(params, "password"))
        name = params.get("name")
        profile = {"email": email, "name": name if isinstance(name, str) and name else None}
        created = await flow.store(
            "signUpPassword", provider=self.id, email=email, secret=secret, profile=profile
        )
        if created is None:
            return await self._sign_up_taken(flow, email)
        if self.verify:
            await self._send_code(flow, created["accountId"], email, "Verify your email")
            return {"started": True}
        return flow.tokens(await flow.store("session", userId=created["userId"]))

    async def _sign_up_taken(self, flow: SignInFlow, email: str) -> dict[str, Any]:
        """A sign-up with an email that has an account: say nothing the owner's answer would not.

        With ``verify`` the answer is the fresh sign-up's (``started``) and the
        owner gets a notice instead of a code. Without it a fresh sign-up gets
        a session, so the answer cannot be the same: it is a refusal that names
        no account, and it counts against the client address's rate limit so
        that addresses cannot be probed in bulk.
        """
        if self.verify:
            text = (
                "Someone tried to create an account with this email address, which already "
                "has one. If it was you, sign in, or reset your password. If not, ignore this mail."
            )
            await send_message(flow.ctx.env, Message(email, "Sign-up attempt", text, code=""))
            return {"started": True}
        address_keys = [k for k in rate_keys(f"{self.id}:{email}") if k.startswith(ADDRESS_PREFIX)]
        if address_keys:
            await flow.store("failure", rateKeys=address_keys)
        raise auth_error(*SIGN_UP_REFUSED)

    async def _sign_in(
        self, flow: SignInFlow, email: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        password = string_param(params, "password", max_length=MAX_PASSWORD_BYTES)
        account_key = f"{self.id}:{email}"
        keys = rate_keys(account_key)
        account = await flow.store("readAccount", provider=self.id, email=email, rateKeys=keys)
        if account["blocked"]:
            raise auth_error(*TOO_MANY_ATTEMPTS)
        if not await verify_password_async(password, account["secret"]):
            await flow.store("failure", rateKeys=keys)
            raise auth_error(*INVALID_CREDENTIALS)
        if self.verify and not account["emailVerified"]:
            await self._send_code(flow, account["accountId"], email, "Verify your email")
            return {"started": True}
        return flow.tokens(
            await flow.store("session", userId=account["userId"], clearKeys=[account_key])
        )

    async def _send_reset(self, flow: SignInFlow, email: str) -> dict[str, Any]:
        account = await flow.store("emailAccount", provider=self.id, email=email, create=False)
        if account is not None:
            await self._send_code(flow, account["accountId"], email, "Reset your password")
        return {"started": True}

    async def _send_code(self, flow: SignInFlow, account_id: str, email: str, subject: str) -> None:
        code = numeric_code(self.code_length)
        text = f"Your code is {code}. It expires in {_CODE_LIFETIME_S // 60} minutes."
        await mail_code(flow, self.id, account_id, email, code, _CODE_LIFETIME_S, (subject, text))
