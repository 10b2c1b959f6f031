"""JSON Web Key sets: which keys of a JWKS can verify a token, and how a token names one.

A :class:`KeySet` keeps only signing keys (RSA, EC P-256, Ed25519); encryption
keys and symmetric secrets are dropped because they never verify a token.
:meth:`KeySet.find` picks the key a token's ``kid`` names; without a ``kid``
only a set of exactly one key answers. :func:`incompatibility` says why a key
cannot verify an algorithm (wrong key type or curve, or a key declared for
another algorithm).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from syncline.errors import AuthError

__all__ = ["KEY_TYPE_FOR_ALG", "KeySet", "SigningKey", "incompatibility", "show_value"]

logger = logging.getLogger(__name__)

# Which JWK can verify which algorithm: (kty, required crv or None).
KEY_TYPE_FOR_ALG: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", None),
}


def show_value(value: Any) -> str:
    """A value and its type, for messages that say what arrived."""
    return f"{value!r} ({type(value).__name__})"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any  # a cryptography public key object


@dataclass(frozen=True, slots=True)
class KeySet:
    source: str  # how messages name it: "the JWKS at <url>"
    keys: tuple[SigningKey, ...]

    @classmethod
    def parse(cls, doc: Any, source: str) -> KeySet:
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise AuthError(
                f'{source} is not a JWKS: expected {{"keys": [...]}}, got {show_value(doc)}'
            )
        import jwt  # PyJWT and cryptography load with the first key set, not at start-up

        keys: list[SigningKey] = []
        for raw in doc["keys"]:
            # Encryption keys and symmetric secrets never verify a token.
            if not isinstance(raw, dict) or raw.get("use") == "enc" or raw.get("kty") == "oct":
                continue
            try:
                parsed = jwt.PyJWK(raw)
            except jwt.PyJWTError as e:
                logger.debug("skipping unusable key %r of %s: %s", raw.get("kid"), source, e)
                continue
            kid = raw.get("kid")
            keys.append(
                SigningKey(
                    kid=kid if isinstance(kid, str) else None,
                    kty=raw["kty"],
                    crv=raw.get("crv"),
                    alg=raw.get("alg"),
                    key=parsed.key,
                )
            )
        if not keys:
            raise AuthError(f"{source} contains no usable signing key (RSA, EC P-256 or Ed25519)")
        return cls(source=source, keys=tuple(keys))

    def find(self, kid: str | None) -> SigningKey | None:
        """The key a token names; without a ``kid`` only an unambiguous set answers."""
        if kid is None:
            if len(self.keys) == 1:
                return self.keys[0]
            raise AuthError(
                f"token header has no 'kid' but {self.source} holds {len(self.keys)} keys "
                f"({self.describe_kids()}); the token must name its key"
            )
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    def describe_kids(self) -> str:
        return "key ids " + ", ".join(repr(k.kid) for k in self.keys)

    def can_verify(self, alg: str) -> bool:
        return any(incompatibility(k, alg) is None for k in self.keys)


def incompatibility(key: SigningKey, alg: str) -> str | None:
    kty, crv = KEY_TYPE_FOR_ALG[alg]
    if key.kty != kty or (crv is not None and key.crv != crv):
        shape = key.kty if key.crv is None else f"{key.kty} {key.crv}"
        return f"is a {shape} key, which cannot verify {alg} signatures"
    if key.alg is not None and key.alg != alg:
        return f"is declared for {key.alg} but the token is signed with {alg}"
    return None
