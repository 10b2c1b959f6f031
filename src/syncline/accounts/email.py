"""The Email provider: sign in with a code or link sent to an email address.

``signIn("email", {"email", "redirectTo"?})`` creates the user on first use,
mails a code and answers ``{"started": True}``. Then either:

* magic link (default): the mail holds ``SITE_URL[/redirectTo]?code=<32
  characters>``; the Convex Auth client finds ``?code=`` on load and calls
  ``signIn`` with it;
* one-time code (``Email(magic_link=False)``): the mail holds an 8-digit code
  the user types; the client calls ``signIn("email", {"email", "code"})``.
  Wrong codes count against the address (rate limit), since 8 digits could
  otherwise be guessed.

Codes are single-use and expire after ``max_age_s`` (default 15 minutes);
a new code replaces the previous one of the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline.accounts.codes import mail_code, sign_in_with_code
from syncline.accounts.mail import numeric_code, random_code
from syncline.accounts.providers import email_param
from syncline.accounts.redirects import redirect_target, with_query_param
from syncline.errors import FunctionDefinitionError

if TYPE_CHECKING:
    from syncline.accounts.setup import SignInFlow

__all__ = ["LINK_CODE_LENGTH", "Email"]

#: the length of codes sent in links (and the shortest code accepted without a provider)
LINK_CODE_LENGTH = 32


@dataclass(frozen=True)
class Email:
    id: str = "email"
    magic_link: bool = True
    max_age_s: float = 15 * 60
    code_length: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.max_age_s, int | float) or not 0 < self.max_age_s <= 7 * 24 * 3600:
            raise FunctionDefinitionError(
                f"Email(max_age_s=...) must be a number of seconds up to 7 days, got {self.max_age_s!r}"
            )
        if not isinstance(self.code_length, int) or not 6 <= self.code_length <= 32:
            raise FunctionDefinitionError(
                f"Email(code_length=...) must be an integer from 6 to 32, got {self.code_length!r}"
            )

    async def sign_in(
        self, flow: SignInFlow, params: dict[str, Any], verifier: str | None
    ) -> dict[str, Any]:
        if params.get("code") is not None:
            return await self._verify(flow, params)
        email = email_param(params)
        env = flow.ctx.env
        target = redirect_target(env, params.get("redirectTo")) if self.magic_link else None
        account = await flow.store("emailAccount", provider=self.id, email=email, create=True)
        code = random_code(LINK_CODE_LENGTH) if self.magic_link else numeric_code(self.code_length)
        minutes = max(1, round(self.max_age_s / 60))
        if target is not None:
            link = with_query_param(target, "code", code)
            text = f"Sign in by opening this link (valid {minutes} minutes):\n\n{link}\n"
        else:
            text = f"Your sign-in code is {code}. It expires in {minutes} minutes."
        await mail_code(
            flow, self.id, account["accountId"], email, code, self.max_age_s, ("Sign in", text)
        )
        return {"started": True}

    async def _verify(self, flow: SignInFlow, params: dict[str, Any]) -> dict[str, Any]:
        # A link's 32-character code alone is enough; a typed code needs its email.
        email = None if self.magic_link and params.get("email") is None else email_param(params)
        return await sign_in_with_code(flow, self.id, params, email)
