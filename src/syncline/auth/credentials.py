"""Credentials in, :mod:`syncline.identity` out.

::

    Authorization header / Authenticate message
        |  parse_authorization_header          -> ("none" | "bearer" | "admin", value, acting-as attrs)
        v
    identity_from_credentials
        |-- bearer -> AuthVerifier.verify        -> User
        |-- admin  -> check_admin_key            -> Admin(acting_as=UserIdentity.from_attributes(...))
        '-- none                                 -> ANONYMOUS

Codes of the :class:`AuthError` raised here: ``InvalidAuthHeader``
(unparseable header) and ``BadAdminKey``; token problems are the verifier's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Literal

from syncline.auth.admin_key import check_admin_key
from syncline.auth.verifier import AuthVerifier
from syncline.errors import AuthError, Forbidden
from syncline.identity import ANONYMOUS, Admin, Identity, UserIdentity

__all__ = [
    "AuthHeaderKind",
    "identity_from_credentials",
    "parse_authorization_header",
    "require_admin",
]

AuthHeaderKind = Literal["none", "bearer", "admin"]


def _decode_acting_as(text: str) -> Any:
    """The JSON value base64-encoded in ``text``, or ``None`` if ``text`` is not such a value."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        return None


def parse_authorization_header(
    value: str | None,
) -> tuple[AuthHeaderKind, str | None, dict[str, Any] | None]:
    """Split an ``Authorization`` header into (kind, credential, acting-as attributes).

    * absent or blank -> ``("none", None, None)``
    * ``Bearer <jwt>`` -> ``("bearer", jwt, None)``
    * ``Convex <admin key>`` -> ``("admin", key, None)``
    * ``Convex <admin key>:<base64 JSON object>`` -> ``("admin", key, attributes)``

    Schemes are case-insensitive. The acting-as suffix is recognised only when
    the text after the last ``:`` decodes as base64 JSON, so a key that itself
    contains ``:`` stays whole. Anything else raises :class:`AuthError` with
    code ``InvalidAuthHeader`` (the message never echoes the credential).
    """
    if value is None or not value.strip():
        return "none", None, None
    parts = value.strip().split(None, 1)
    scheme = parts[0]
    credential = parts[1].strip() if len(parts) == 2 else ""
    if scheme.lower() == "bearer":
        if not credential:
            raise AuthError(
                "Authorization header 'Bearer' carries no token", code="InvalidAuthHeader"
            )
        return "bearer", credential, None
    if scheme.lower() == "convex":
        if not credential:
            raise AuthError(
                "Authorization header 'Convex' carries no admin key", code="InvalidAuthHeader"
            )
        key, sep, suffix = credential.rpartition(":")
        if sep and key and suffix:
            attributes = _decode_acting_as(suffix)
            if attributes is not None:
                if not isinstance(attributes, dict):
                    raise AuthError(
                        "the acting-as identity after the admin key must be a base64-encoded "
                        f"JSON object, got a JSON {type(attributes).__name__}",
                        code="InvalidAuthHeader",
                    )
                return "admin", key, attributes
        return "admin", credential, None
    raise AuthError(
        f"Authorization header must be 'Bearer <token>' or 'Convex <admin key>', "
        f"got scheme {scheme[:20]!r}",
        code="InvalidAuthHeader",
    )


async def identity_from_credentials(
    kind: AuthHeaderKind,
    value: str | None,
    acting_as: Mapping[str, Any] | None = None,
    *,
    verifier: AuthVerifier,
    admin_key: str,
) -> Identity:
    """Turn parsed credentials (an HTTP header or a sync ``Authenticate``) into an identity.

    A wrong admin key raises :class:`AuthError` with code ``BadAdminKey``;
    token problems raise whatever :meth:`AuthVerifier.verify` raises.
    """
    if kind == "none":
        return ANONYMOUS
    if value is None:
        raise AuthError(f"{kind} credentials carry no value", code="InvalidAuthHeader")
    if kind == "bearer":
        return await verifier.verify(value)
    if not check_admin_key(value, admin_key):
        raise AuthError(
            "the admin key is not valid for this deployment (`syncline admin-key` prints it)",
            code="BadAdminKey",
        )
    return Admin(acting_as=None if acting_as is None else UserIdentity.from_attributes(acting_as))


def require_admin(identity: Identity, what: str) -> None:
    """Raise :class:`Forbidden` unless ``identity`` holds the admin key; ``what`` names the operation."""
    if not isinstance(identity, Admin):
        raise Forbidden(f"{what} requires the admin key")
