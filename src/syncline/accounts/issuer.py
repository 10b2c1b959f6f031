"""The deployment as a token issuer: signing access tokens, publishing its keys.

Access tokens are RS256 JWTs, as Convex Auth issues them::

    header  {"alg": "RS256", "kid": <signing key>, "typ": "JWT"}
    claims  {"sub": "<userId>|<sessionId>", "iss": <site URL>, "aud": "convex",
             "iat": now, "exp": now + ttl}

The issuer is the deployment's site URL (where HTTP actions are served, and
so ``/.well-known/openid-configuration`` and ``/.well-known/jwks.json``).
:meth:`TokenIssuer.provider` is the implicit ``auth_config`` entry that makes
the verifier accept these tokens without any configuration.

Actions and mutations reach the issuer as ``ctx.auth_issuer`` (installed by the application
when the functions use :func:`syncline.accounts.convex_auth`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syncline.accounts.keys import ALGORITHM, KeyStore
from syncline.auth.providers import ProviderConfig
from syncline.clock import Clock

if TYPE_CHECKING:
    from syncline.database.transaction import Transaction
    from syncline.functions.executor import Executor
    from syncline.identity import Identity

__all__ = ["AUDIENCE", "CTX_MEMBER", "TokenIssuer", "install_issuer"]

#: the ``aud`` of access tokens (Convex Auth's ``applicationID``)
AUDIENCE = "convex"
CTX_MEMBER = "auth_issuer"


class TokenIssuer:
    """Signs access tokens with the deployment's key; describes itself for verifiers."""

    def __init__(self, keys: KeyStore, site_url: Callable[[], str], clock: Clock) -> None:
        self.keys = keys
        self._site_url = site_url
        self._clock = clock

    @property
    def issuer(self) -> str:
        return self._site_url().rstrip("/")

    def sign(self, user_id: str, session_id: str, ttl_s: float) -> str:
        """An access token for ``user_id`` in ``session_id``, valid ``ttl_s`` seconds from now."""
        import jwt

        now_s = int(self._clock.now_ms() // 1000)
        key = self.keys.signing_key
        claims = {
            "sub": f"{user_id}|{session_id}",
            "iss": self.issuer,
            "aud": AUDIENCE,
            "iat": now_s,
            "exp": now_s + int(ttl_s),
        }
        return jwt.encode(
            claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
        )

    def jwks(self) -> dict[str, Any]:
        return self.keys.jwks()

    def openid_configuration(self) -> dict[str, Any]:
        issuer = self.issuer
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
        }

    def provider(self) -> ProviderConfig:
        """The ``auth_config`` provider that verifies this issuer's tokens (inline keys)."""
        return ProviderConfig(
            kind="custom_jwt",
            issuer=self.issuer,
            application_id=AUDIENCE,
            jwks=self.jwks(),
            algorithm=ALGORITHM,
        )


def install_issuer(executor: Executor, issuer: TokenIssuer) -> None:
    """Give actions (and HTTP actions) and mutations ``ctx.auth_issuer``."""

    def ctx_member(kind: str, tx: Transaction | None, identity: Identity) -> Any:
        # Mutations too: @convex-dev/auth 2.x signs in with mutations (accounts/v2.py).
        return issuer if kind in ("action", "mutation") else None

    executor.register_ctx_member(CTX_MEMBER, ctx_member)
