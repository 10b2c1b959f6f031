"""Provider configuration: ``auth_config.py``'s ``providers`` as validated values.

``auth_config.py`` declares ``providers = [...]``; :func:`parse_providers`
turns the dicts into :class:`ProviderConfig` values or raises
:class:`FunctionDefinitionError` naming the provider index and the problem.
OIDC: ``{"domain", "application_id"}``. Custom JWT: ``{"type": "custom_jwt",
"issuer", "jwks", "algorithm", "application_id"?}``. Convex's spellings
(``applicationID``, ``"customJwt"``) are accepted too.

Issuers are compared in :func:`normalize_issuer` form (``https://`` prepended
when there is no scheme, one trailing ``/`` ignored), so ``issuer.test``,
``https://issuer.test`` and ``https://issuer.test/`` name one provider. The
identity a token yields carries the provider's issuer *as configured*
(:attr:`ProviderConfig.issuer`), never the token's spelling of it, so one user
has one ``tokenIdentifier`` whichever variant a token carries.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from syncline.auth.jwks import KeySet, show_value
from syncline.errors import AuthError, FunctionDefinitionError

__all__ = [
    "CUSTOM_JWT_ALGORITHMS",
    "OIDC_ALGORITHMS",
    "ProviderConfig",
    "is_http_url",
    "normalize_issuer",
    "parse_providers",
]

OIDC_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
CUSTOM_JWT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def normalize_issuer(issuer: str) -> str:
    """The form issuers are compared in: a scheme (``https://`` if none) and no trailing ``/``."""
    if not _SCHEME.match(issuer):
        issuer = f"https://{issuer}"
    return issuer.removesuffix("/")


def is_http_url(value: str) -> bool:
    """Whether ``value`` is an absolute http(s) URL."""
    parsed = urllib.parse.urlsplit(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _parse_data_uri(uri: str) -> Any:
    meta, sep, payload = uri.removeprefix("data:").partition(",")
    if not sep:
        raise ValueError("a data: URI needs a ',' before its payload")
    if meta.endswith(";base64"):
        try:
            raw = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
        except binascii.Error as e:
            raise ValueError(f"its payload is not base64 ({e})") from None
    else:
        raw = urllib.parse.unquote_to_bytes(payload)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"its payload is not JSON ({e})") from None


# ---------------------------------------------------------------------------
# Provider configuration


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One entry of ``auth_config.py``'s ``providers``, validated on construction.

    ``issuer`` is the OIDC ``domain`` or the custom JWT ``issuer`` as
    configured. ``jwks`` (custom JWT only) is a URL, a ``data:`` URI or a
    JWKS dict; ``algorithm`` (custom JWT only) is RS256 or ES256. Derived on
    construction: ``jwks_url`` (where the custom JWT keys are fetched from) or
    ``inline_keys`` (the keys given in the configuration itself).
    """

    kind: Literal["oidc", "custom_jwt"]
    issuer: str
    application_id: str | None = None
    jwks: str | Mapping[str, Any] | None = None
    algorithm: str | None = None
    _issuer_key: str = field(init=False, repr=False, compare=False)
    jwks_url: str | None = field(init=False, repr=False, compare=False)
    inline_keys: KeySet | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.application_id is not None and (
            not isinstance(self.application_id, str) or not self.application_id
        ):
            raise FunctionDefinitionError(
                f"'application_id' must be a non-empty string, got {show_value(self.application_id)}"
            )
        if self.kind == "oidc":
            self._check_oidc()
            jwks_url, inline = None, None
        elif self.kind == "custom_jwt":
            jwks_url, inline = self._check_custom_jwt()
        else:
            raise FunctionDefinitionError(
                f"provider kind must be 'oidc' or 'custom_jwt', got {show_value(self.kind)}"
            )
        object.__setattr__(self, "_issuer_key", normalize_issuer(self.issuer))
        object.__setattr__(self, "jwks_url", jwks_url)
        object.__setattr__(self, "inline_keys", inline)

    def _check_oidc(self) -> None:
        if not isinstance(self.issuer, str) or not is_http_url(self.issuer):
            raise FunctionDefinitionError(
                f"'domain' must be an https:// URL, got {show_value(self.issuer)}"
            )
        if self.application_id is None:
            raise FunctionDefinitionError(
                "'application_id' is required for an OIDC provider "
                "(the audience its tokens are issued for)"
            )
        for name in ("jwks", "algorithm"):
            if getattr(self, name) is not None:
                raise FunctionDefinitionError(
                    f"'{name}' is only for custom_jwt providers; OIDC finds its keys by discovery"
                )

    def _check_custom_jwt(self) -> tuple[str | None, KeySet | None]:
        """Validate a custom JWT entry; return its JWKS URL or its parsed inline keys."""
        if not isinstance(self.issuer, str) or not self.issuer:
            raise FunctionDefinitionError(
                f"'issuer' must be a non-empty string, got {show_value(self.issuer)}"
            )
        if self.algorithm not in CUSTOM_JWT_ALGORITHMS:
            raise FunctionDefinitionError(
                f"'algorithm' must be one of {', '.join(map(repr, CUSTOM_JWT_ALGORITHMS))}, "
                f"got {show_value(self.algorithm)}"
            )
        jwks = self.jwks
        if isinstance(jwks, str) and jwks.startswith("data:"):
            try:
                doc = _parse_data_uri(jwks)
            except ValueError as e:
                raise FunctionDefinitionError(f"'jwks' is a data: URI but {e}") from None
        elif isinstance(jwks, str) and is_http_url(jwks):
            return jwks, None
        elif isinstance(jwks, Mapping):
            doc = dict(jwks)
        else:
            raise FunctionDefinitionError(
                f"'jwks' must be an https:// URL, a data: URI or a JWKS dict, got {show_value(jwks)}"
            )
        try:
            inline = KeySet.parse(doc, f"the inline JWKS of provider {self.issuer!r}")
        except AuthError as e:
            raise FunctionDefinitionError(f"'jwks': {e.message}") from None
        if not inline.can_verify(self.algorithm):
            kinds = ", ".join(sorted({k.kty for k in inline.keys}))
            raise FunctionDefinitionError(
                f"'jwks' holds no key for {self.algorithm} (key types: {kinds})"
            )
        return None, inline

    _OIDC_KEYS = frozenset({"domain", "application_id", "applicationID", "type"})
    _CUSTOM_KEYS = frozenset(
        {"type", "issuer", "jwks", "algorithm", "application_id", "applicationID"}
    )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], index: int = 0) -> ProviderConfig:
        """Parse one ``providers`` entry; errors name ``providers[index]``."""
        where = f"auth_config.py providers[{index}]"
        if not isinstance(raw, Mapping):
            raise FunctionDefinitionError(f"{where}: expected a dict, got {show_value(raw)}")
        kind_raw = raw.get("type")
        if kind_raw in (None, "oidc"):
            kind: Literal["oidc", "custom_jwt"] = "oidc"
            allowed = cls._OIDC_KEYS
        elif kind_raw in ("custom_jwt", "customJwt"):
            kind = "custom_jwt"
            allowed = cls._CUSTOM_KEYS
        else:
            raise FunctionDefinitionError(
                f"{where}: 'type' must be 'custom_jwt' (or absent for OIDC), got {show_value(kind_raw)}"
            )
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise FunctionDefinitionError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for "
                f"{'an OIDC' if kind == 'oidc' else 'a custom_jwt'} provider; "
                f"expected {', '.join(sorted(allowed - {'applicationID'}))}"
            )
        if "application_id" in raw and "applicationID" in raw:
            raise FunctionDefinitionError(
                f"{where}: give 'application_id' or 'applicationID', not both"
            )
        application_id = raw.get("application_id", raw.get("applicationID"))
        try:
            if kind == "oidc":
                if "domain" not in raw:
                    raise FunctionDefinitionError("'domain' is required for an OIDC provider")
                return cls(kind="oidc", issuer=raw["domain"], application_id=application_id)
            for name in ("issuer", "jwks", "algorithm"):
                if name not in raw:
                    raise FunctionDefinitionError(f"'{name}' is required for a custom_jwt provider")
            return cls(
                kind="custom_jwt",
                issuer=raw["issuer"],
                application_id=application_id,
                jwks=raw["jwks"],
                algorithm=raw["algorithm"],
            )
        except FunctionDefinitionError as e:
            raise FunctionDefinitionError(f"{where}: {e.message}") from None

    @property
    def algorithms(self) -> tuple[str, ...]:
        if self.kind == "oidc":
            return OIDC_ALGORITHMS
        assert self.algorithm is not None  # checked in __post_init__
        return (self.algorithm,)

    @property
    def discovery_url(self) -> str | None:
        """OIDC only: where the provider's configuration (and so its ``jwks_uri``) lives."""
        if self.kind != "oidc":
            return None
        return f"{self.issuer.removesuffix('/')}/.well-known/openid-configuration"

    def matches_issuer(self, iss: str) -> bool:
        return normalize_issuer(iss) == self._issuer_key

    def describe(self) -> str:
        return f"{'OIDC' if self.kind == 'oidc' else 'custom JWT'} provider {self.issuer!r}"


def parse_providers(providers: Any) -> tuple[ProviderConfig, ...]:
    """Validate ``auth_config.py``'s ``providers`` (dicts or :class:`ProviderConfig`)."""
    if not isinstance(providers, list | tuple):
        raise FunctionDefinitionError(
            f"auth_config.py 'providers' must be a list, got {show_value(providers)}"
        )
    return tuple(
        p if isinstance(p, ProviderConfig) else ProviderConfig.from_dict(p, i)
        for i, p in enumerate(providers)
    )


# ---------------------------------------------------------------------------
# The verifier
