"""The Anonymous provider: a session for a new user with no credentials.

``signIn("anonymous")`` creates a user (``isAnonymous: true``) with an
account of provider ``anonymous`` and answers ``{"tokens"}``, as Convex
Auth's ``Anonymous`` provider does. There is no way back into an anonymous
user once its session ends: the app may later link a real sign-in to it.

Each sign-in creates a user, so sign-ins are limited per client address
(``max_per_address`` per ``convex_auth(failed_attempts_window_s=)``, a token
bucket like the failed-attempt limits); past it the answer is
``TooManyFailedAttempts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncline.accounts.errors import TOO_MANY_ATTEMPTS, auth_error
from syncline.errors import FunctionDefinitionError
from syncline.functions.caller import client_address

if TYPE_CHECKING:
    from syncline.accounts.setup import SignInFlow

__all__ = ["Anonymous"]


@dataclass(frozen=True)
class Anonymous:
    id: str = "anonymous"
    #: anonymous sign-ins per client address per rate-limit window
    max_per_address: int = 100

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_per_address, int)
            or isinstance(self.max_per_address, bool)
            or self.max_per_address < 1
        ):
            raise FunctionDefinitionError(
                f"Anonymous(max_per_address=...) must be a positive integer, "
                f"got {self.max_per_address!r}"
            )

    async def sign_in(
        self, flow: SignInFlow, params: dict[str, Any], verifier: str | None
    ) -> dict[str, Any]:
        session = await flow.store(
            "signInAnonymous",
            provider=self.id,
            address=client_address.get(),
            most=self.max_per_address,
        )
        if session is None:
            raise auth_error(*TOO_MANY_ATTEMPTS)
        return flow.tokens(session)
