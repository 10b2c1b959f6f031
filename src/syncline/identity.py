"""Who is calling a function: the identity kinds the engine passes around.

Contracts
---------
* :class:`UserIdentity` is what ``ctx.auth.get_user_identity()`` returns. It is
  immutable and hashable; two identities are equal when everything user code
  can observe about them is equal (:meth:`UserIdentity.cache_key`).
  Housekeeping claims that change on every token refresh (``exp``, ``iat``,
  ``nbf``, ``jti``, ``fva``) and ``aud`` never reach it, so refreshed tokens of
  one user share a cache key and therefore share live query results.
* Attributes are snake_case; ``identity["camelCaseName"]`` and
  :meth:`UserIdentity.to_json` use Convex's wire names, so code ported from
  Convex (``identity["email"]``, ``identity["properties.email"]``) works.
  Custom claims keep their JSON values; nested objects are flattened to dotted
  keys in the wire view (Convex semantics §11). :attr:`UserIdentity.claims`
  holds the custom claims as they arrived, unflattened.
* A custom claim can never shadow ``tokenIdentifier``, ``subject``,
  ``issuer`` or a standard field: such claims are dropped, so a token issuer
  cannot forge the identifier that apps key their users on.
* Identity kinds: :data:`ANONYMOUS`, :class:`User` (a verified token),
  :class:`Admin` (the deployment's admin key, optionally acting as a user) and
  :data:`SYSTEM` (scheduler and crons). :func:`user_identity_of` is the single
  rule for what ``get_user_identity()`` returns for each kind.

Malformed claims or impersonation attributes raise :class:`AuthError` naming
the offending key, the expected type and what arrived.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from syncline.errors import AuthError

__all__ = [
    "ANONYMOUS",
    "SYSTEM",
    "Admin",
    "Anonymous",
    "Identity",
    "System",
    "User",
    "UserIdentity",
    "is_admin",
    "user_identity_of",
]


# ---------------------------------------------------------------------------
# Standard claims: attribute name, wire (camelCase) name, JWT claim name, coercion


def _as_str(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    raise AuthError(f"claim '{key}' must be a string, got {_show(value)}")


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    # Some providers (AWS Cognito) send the OIDC booleans as strings.
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise AuthError(f"claim '{key}' must be a boolean, got {_show(value)}")


def _as_address(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    # OIDC's `address` is an object; Convex's field is a string. Prefer the
    # provider's own one-line rendering and keep everything otherwise.
    if isinstance(value, dict):
        formatted = value.get("formatted")
        if isinstance(formatted, str):
            return formatted
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raise AuthError(f"claim '{key}' must be a string or an object, got {_show(value)}")


def _as_rfc3339(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    # JWTs carry `updated_at` as seconds since the epoch; Convex exposes RFC 3339.
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC).isoformat()
        except (OverflowError, ValueError, OSError):
            raise AuthError(f"claim '{key}' is not a representable timestamp: {value!r}") from None
    raise AuthError(
        f"claim '{key}' must be seconds since the epoch or an RFC 3339 string, got {_show(value)}"
    )


class _Field(NamedTuple):
    attr: str
    wire: str
    claim: str
    coerce: Callable[[Any, str], Any]


_FIELDS: tuple[_Field, ...] = (
    _Field("name", "name", "name", _as_str),
    _Field("given_name", "givenName", "given_name", _as_str),
    _Field("family_name", "familyName", "family_name", _as_str),
    _Field("nickname", "nickname", "nickname", _as_str),
    _Field("preferred_username", "preferredUsername", "preferred_username", _as_str),
    _Field("profile_url", "profileUrl", "profile", _as_str),
    _Field("picture_url", "pictureUrl", "picture", _as_str),
    _Field("website_url", "websiteUrl", "website", _as_str),
    _Field("email", "email", "email", _as_str),
    _Field("email_verified", "emailVerified", "email_verified", _as_bool),
    _Field("gender", "gender", "gender", _as_str),
    _Field("birthday", "birthday", "birthdate", _as_str),
    _Field("timezone", "timezone", "zoneinfo", _as_str),
    _Field("language", "language", "locale", _as_str),
    _Field("phone_number", "phoneNumber", "phone_number", _as_str),
    _Field("phone_number_verified", "phoneNumberVerified", "phone_number_verified", _as_bool),
    _Field("address", "address", "address", _as_address),
    _Field("updated_at", "updatedAt", "updated_at", _as_rfc3339),
)
_BY_CLAIM = {f.claim: f for f in _FIELDS}
_BY_WIRE = {f.wire: f for f in _FIELDS}

_IDENTITY_KEYS = frozenset({"tokenIdentifier", "subject", "issuer"})
# Names a custom claim may not take: they would shadow identity fields.
_RESERVED_WIRE = _IDENTITY_KEYS | _BY_WIRE.keys()
# Registered claims that are consumed (iss, sub) or are per-token housekeeping.
_DROPPED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "fva"})


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _flatten(claims: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in claims.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(value, f"{dotted}.", out)
        else:
            out[dotted] = value


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------
# UserIdentity


@dataclass(frozen=True, eq=False, kw_only=True, slots=True)
class UserIdentity:
    """A verified user, as ``ctx.auth.get_user_identity()`` returns it.

    Standard OIDC claims are attributes (``None`` when absent); custom claims
    are in :attr:`claims` and reachable by wire name through ``identity[key]``.
    Build one with :meth:`from_claims` (a verified JWT) or
    :meth:`from_attributes` (admin "act as user").
    """

    token_identifier: str
    subject: str
    issuer: str
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    nickname: str | None = None
    preferred_username: str | None = None
    profile_url: str | None = None
    picture_url: str | None = None
    website_url: str | None = None
    email: str | None = None
    email_verified: bool | None = None
    gender: str | None = None
    birthday: str | None = None
    timezone: str | None = None
    language: str | None = None
    phone_number: str | None = None
    phone_number_verified: bool | None = None
    address: str | None = None
    updated_at: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    # Derived once: the wire view and the cache key (both read on hot paths).
    _wire: dict[str, Any] = field(init=False, repr=False)
    _key: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        raw = dict(self.claims)
        claims = MappingProxyType(raw)
        object.__setattr__(self, "claims", claims)
        wire: dict[str, Any] = {
            "tokenIdentifier": self.token_identifier,
            "subject": self.subject,
            "issuer": self.issuer,
        }
        for f in _FIELDS:
            value = getattr(self, f.attr)
            if value is not None:
                wire[f.wire] = value
        flat: dict[str, Any] = {}
        _flatten(claims, "", flat)
        for key, value in flat.items():
            wire.setdefault(key, value)
        object.__setattr__(self, "_wire", wire)
        standard = _canonical_json([getattr(self, f.attr) for f in _FIELDS])
        # Raw claims (not the flattened view) so that `claims` itself is covered.
        object.__setattr__(
            self,
            "_key",
            (self.token_identifier, self.subject, self.issuer, standard, _canonical_json(raw)),
        )

    # -- construction -------------------------------------------------------

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], issuer: str) -> UserIdentity:
        """Build the identity of a verified JWT.

        ``issuer`` is the issuer of the provider that verified the token, as
        configured (it becomes :attr:`issuer` and the first half of
        :attr:`token_identifier`, so the spellings of one issuer that a token's
        ``iss`` may use give one identity); ``sub`` must be a non-empty
        string. OIDC claim names map to Convex's (``picture`` ->
        ``pictureUrl``, ``zoneinfo`` -> ``timezone``, ``locale`` ->
        ``language``, ``birthdate`` -> ``birthday``, ``updated_at`` seconds ->
        RFC 3339); every other claim except the dropped housekeeping ones is a
        custom claim.
        """
        if not isinstance(issuer, str) or not issuer:
            raise AuthError(f"token issuer must be a non-empty string, got {_show(issuer)}")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError(
                "token has no 'sub' claim"
                if subject is None
                else f"claim 'sub' must be a non-empty string, got {_show(subject)}"
            )
        standard: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for key, value in claims.items():
            f = _BY_CLAIM.get(key)
            if f is not None:
                if value is not None:
                    standard[f.attr] = f.coerce(value, key)
            elif key not in _DROPPED_CLAIMS and key not in _RESERVED_WIRE:
                custom[key] = value
        return cls(
            token_identifier=f"{issuer}|{subject}",
            subject=subject,
            issuer=issuer,
            claims=custom,
            **standard,
        )

    @classmethod
    def from_attributes(cls, attrs: Mapping[str, Any]) -> UserIdentity:
        """Build the identity an admin acts as (protocol §2.5, UserIdentityAttributes).

        Needs ``issuer`` and ``subject``, or a ``tokenIdentifier`` of the form
        ``"<issuer>|<subject>"`` (split at the first ``|``), or all three
        agreeing. Standard fields use their camelCase wire names; every other
        key is a custom claim.
        """
        if not isinstance(attrs, Mapping):
            raise AuthError(f"identity attributes must be a JSON object, got {_show(attrs)}")
        for key in _IDENTITY_KEYS:
            value = attrs.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise AuthError(
                    f"identity attribute '{key}' must be a non-empty string, got {_show(value)}"
                )
        token_identifier: str | None = attrs.get("tokenIdentifier")
        issuer: str | None = attrs.get("issuer")
        subject: str | None = attrs.get("subject")
        if issuer is not None and subject is not None:
            expected = f"{issuer}|{subject}"
            if token_identifier is not None and token_identifier != expected:
                raise AuthError(
                    f"identity attribute 'tokenIdentifier' is {token_identifier!r} but "
                    f"issuer and subject give {expected!r}"
                )
            token_identifier = expected
        elif token_identifier is not None and issuer is None and subject is None:
            issuer, sep, subject = token_identifier.partition("|")
            if not sep or not issuer or not subject:
                raise AuthError(
                    "identity attribute 'tokenIdentifier' must look like "
                    f"'<issuer>|<subject>', got {token_identifier!r}"
                )
        else:
            raise AuthError(
                "identity attributes need 'issuer' and 'subject' (or a 'tokenIdentifier'), "
                f"got keys {sorted(attrs)}"
            )
        standard: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for key, value in attrs.items():
            if key in _IDENTITY_KEYS:
                continue
            f = _BY_WIRE.get(key)
            if f is None:
                custom[key] = value
            elif value is not None:
                standard[f.attr] = f.coerce(value, key)
        return cls(
            token_identifier=token_identifier,
            subject=subject,
            issuer=issuer,
            claims=custom,
            **standard,
        )

    # -- wire view ----------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The camelCase object Convex's ``ctx.auth.getUserIdentity()`` returns.

        Absent standard claims are left out; nested custom objects appear as
        dotted keys. The result is a fresh copy the caller may mutate.
        """
        return copy.deepcopy(self._wire)

    def __getitem__(self, key: str) -> Any:
        """Look up by wire name: ``identity["email"]``, ``identity["properties.email"]``."""
        return self._wire[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._wire.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._wire

    # -- identity of the identity ---------------------------------------------

    def cache_key(self) -> tuple[str, ...]:
        """A hashable value equal for identities that user code cannot tell apart."""
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserIdentity):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


# ---------------------------------------------------------------------------
# Identity kinds


@dataclass(frozen=True, slots=True)
class Anonymous:
    """No credentials were presented."""


@dataclass(frozen=True, slots=True)
class User:
    """A caller holding a verified user token.

    ``expires_at_ms`` is the token's ``exp`` in ms so the sync layer can
    re-check expiry before later work; ``token`` is the raw JWT (kept out of
    ``repr`` so it never lands in logs).
    """

    user: UserIdentity
    expires_at_ms: float | None
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Admin:
    """A caller holding the deployment's admin key, optionally acting as a user."""

    acting_as: UserIdentity | None = None


@dataclass(frozen=True, slots=True)
class System:
    """The deployment itself: scheduled functions and crons."""


ANONYMOUS = Anonymous()
SYSTEM = System()

Identity = Anonymous | User | Admin | System


def user_identity_of(identity: Identity) -> UserIdentity | None:
    """What ``ctx.auth.get_user_identity()`` returns for a caller of this kind."""
    if isinstance(identity, User):
        return identity.user
    if isinstance(identity, Admin):
        return identity.acting_as
    return None


def is_admin(identity: Identity) -> bool:
    """True for holders of the admin key (whether or not acting as a user)."""
    return isinstance(identity, Admin)
