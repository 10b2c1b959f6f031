"""Verifying user tokens and admin keys: credentials in, :mod:`syncline.identity` out.

::

    Authorization header / Authenticate message
        |  parse_authorization_header          -> ("none" | "bearer" | "admin", value, acting-as attrs)
        v
    identity_from_credentials
        |-- bearer -> AuthVerifier.verify        -> User
        |-- admin  -> check_admin_key            -> Admin(acting_as=UserIdentity.from_attributes(...))
        '-- none                                 -> ANONYMOUS

Provider configuration
    ``auth_config.py`` declares ``providers = [...]``; :func:`parse_providers`
    turns the dicts into :class:`ProviderConfig` values or raises
    :class:`FunctionDefinitionError` naming the provider index and the problem.
    OIDC: ``{"domain", "application_id"}``. Custom JWT: ``{"type": "custom_jwt",
    "issuer", "jwks", "algorithm", "application_id"?}``. Convex's spellings
    (``applicationID``, ``"customJwt"``) are accepted too.

Verification contract (:meth:`AuthVerifier.verify`)
    * Issuer matching: ``https://`` is prepended to an ``iss`` without a
      scheme, and one trailing ``/`` is ignored on both sides.
    * Provider selection: the first provider whose issuer matches and whose
      ``application_id`` (when it has one) is in ``aud``.
    * Algorithms: OIDC accepts RS256, ES256 and EdDSA; a custom JWT provider
      only its configured one. The algorithm list given to PyJWT comes from the
      provider, never from the token, so an HS256 token signed with a public
      key as HMAC secret is refused before any key is touched.
    * Keys: ``kid`` picks the key; without ``kid`` the JWKS must hold exactly
      one signing key. An unknown ``kid`` forces one JWKS refetch (at most one
      forced refetch per URL per :data:`FORCED_REFETCH_INTERVAL_S`).
    * Claims: ``sub``, ``iss`` and ``exp`` are required; ``exp <= now - leeway``,
      ``nbf > now + leeway`` and ``iat > now + leeway`` are rejected, with
      ``now`` from the injected clock.
    * Every rejection is an :class:`AuthError` whose message says what was
      expected and what arrived. Codes: ``Unauthenticated`` (default),
      ``NoAuthProvider`` (no provider for the issuer/audience),
      ``InvalidAuthHeader`` (unparseable header), ``BadAdminKey``.

JWKS and discovery documents are fetched with httpx, cached per URL for
``jwks_ttl_s``, and shared: concurrent verifications wait on one in-flight
fetch. When a refresh fails and an older copy exists, the older copy keeps
serving (retried after :data:`FORCED_REFETCH_INTERVAL_S`) so that a blip at
the identity provider does not log every user out. An :class:`AuthVerifier`
belongs to one event loop.

Admin keys: ``syncline-admin:<43 url-safe chars>``, stored in ``<data dir>/admin_key``
(mode 0600), compared in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hmac
import json
import logging
import math
import os
import re
import secrets
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import jwt

from syncline.clock import Clock
from syncline.errors import (
    AuthError,
    Forbidden,
    FunctionDefinitionError,
    InternalError,
)
from syncline.identity import ANONYMOUS, Admin, Identity, User, UserIdentity

__all__ = [
    "ADMIN_KEY_FILE",
    "CUSTOM_JWT_ALGORITHMS",
    "FORCED_REFETCH_INTERVAL_S",
    "OIDC_ALGORITHMS",
    "AuthHeaderKind",
    "AuthVerifier",
    "ProviderConfig",
    "check_admin_key",
    "generate_admin_key",
    "identity_from_credentials",
    "is_expired",
    "load_or_create_admin_key",
    "normalize_issuer",
    "parse_authorization_header",
    "parse_providers",
    "require_admin",
]

logger = logging.getLogger(__name__)

OIDC_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
CUSTOM_JWT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
FORCED_REFETCH_INTERVAL_S = 30.0
ADMIN_KEY_FILE = "admin_key"
_ADMIN_KEY_PREFIX = "syncline-admin"
_HTTP_TIMEOUT_S = 10.0

# Which JWK can verify which algorithm: (kty, required crv or None).
_KEY_TYPE_FOR_ALG: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", None),
}
# Signature only: every claim check is ours, against the injected clock.
_SIGNATURE_ONLY: dict[str, Any] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

T = TypeVar("T")


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def normalize_issuer(issuer: str) -> str:
    """The form issuers are compared in: a scheme (``https://`` if none) and no trailing ``/``."""
    if not _SCHEME.match(issuer):
        issuer = f"https://{issuer}"
    return issuer.removesuffix("/")


def _is_http_url(value: str) -> bool:
    parsed = urllib.parse.urlsplit(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


# ---------------------------------------------------------------------------
# Key sets


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any  # a cryptography public key object


@dataclass(frozen=True, slots=True)
class _KeySet:
    source: str  # how messages name it: "the JWKS at <url>"
    keys: tuple[_Key, ...]

    @classmethod
    def parse(cls, doc: Any, source: str) -> _KeySet:
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise AuthError(f'{source} is not a JWKS: expected {{"keys": [...]}}, got {_show(doc)}')
        keys: list[_Key] = []
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
                _Key(
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

    def find(self, kid: str | None) -> _Key | None:
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
        return any(_incompatibility(k, alg) is None for k in self.keys)


def _incompatibility(key: _Key, alg: str) -> str | None:
    kty, crv = _KEY_TYPE_FOR_ALG[alg]
    if key.kty != kty or (crv is not None and key.crv != crv):
        shape = key.kty if key.crv is None else f"{key.kty} {key.crv}"
        return f"is a {shape} key, which cannot verify {alg} signatures"
    if key.alg is not None and key.alg != alg:
        return f"is declared for {key.alg} but the token is signed with {alg}"
    return None


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
    JWKS dict; ``algorithm`` (custom JWT only) is RS256 or ES256.
    """

    kind: Literal["oidc", "custom_jwt"]
    issuer: str
    application_id: str | None = None
    jwks: str | Mapping[str, Any] | None = None
    algorithm: str | None = None
    _issuer_key: str = field(init=False, repr=False, compare=False)
    _jwks_url: str | None = field(init=False, repr=False, compare=False)
    _inline_keys: _KeySet | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.application_id is not None and (
            not isinstance(self.application_id, str) or not self.application_id
        ):
            raise FunctionDefinitionError(
                f"'application_id' must be a non-empty string, got {_show(self.application_id)}"
            )
        if self.kind == "oidc":
            self._check_oidc()
            jwks_url, inline = None, None
        elif self.kind == "custom_jwt":
            jwks_url, inline = self._check_custom_jwt()
        else:
            raise FunctionDefinitionError(
                f"provider kind must be 'oidc' or 'custom_jwt', got {_show(self.kind)}"
            )
        object.__setattr__(self, "_issuer_key", normalize_issuer(self.issuer))
        object.__setattr__(self, "_jwks_url", jwks_url)
        object.__setattr__(self, "_inline_keys", inline)

    def _check_oidc(self) -> None:
        if not isinstance(self.issuer, str) or not _is_http_url(self.issuer):
            raise FunctionDefinitionError(
                f"'domain' must be an https:// URL, got {_show(self.issuer)}"
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

    def _check_custom_jwt(self) -> tuple[str | None, _KeySet | None]:
        """Validate a custom JWT entry; return its JWKS URL or its parsed inline keys."""
        if not isinstance(self.issuer, str) or not self.issuer:
            raise FunctionDefinitionError(
                f"'issuer' must be a non-empty string, got {_show(self.issuer)}"
            )
        if self.algorithm not in CUSTOM_JWT_ALGORITHMS:
            raise FunctionDefinitionError(
                f"'algorithm' must be one of {', '.join(map(repr, CUSTOM_JWT_ALGORITHMS))}, "
                f"got {_show(self.algorithm)}"
            )
        jwks = self.jwks
        if isinstance(jwks, str) and jwks.startswith("data:"):
            try:
                doc = _parse_data_uri(jwks)
            except ValueError as e:
                raise FunctionDefinitionError(f"'jwks' is a data: URI but {e}") from None
        elif isinstance(jwks, str) and _is_http_url(jwks):
            return jwks, None
        elif isinstance(jwks, Mapping):
            doc = dict(jwks)
        else:
            raise FunctionDefinitionError(
                f"'jwks' must be an https:// URL, a data: URI or a JWKS dict, got {_show(jwks)}"
            )
        try:
            inline = _KeySet.parse(doc, f"the inline JWKS of provider {self.issuer!r}")
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
            raise FunctionDefinitionError(f"{where}: expected a dict, got {_show(raw)}")
        kind_raw = raw.get("type")
        if kind_raw in (None, "oidc"):
            kind: Literal["oidc", "custom_jwt"] = "oidc"
            allowed = cls._OIDC_KEYS
        elif kind_raw in ("custom_jwt", "customJwt"):
            kind = "custom_jwt"
            allowed = cls._CUSTOM_KEYS
        else:
            raise FunctionDefinitionError(
                f"{where}: 'type' must be 'custom_jwt' (or absent for OIDC), got {_show(kind_raw)}"
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
            f"auth_config.py 'providers' must be a list, got {_show(providers)}"
        )
    return tuple(
        p if isinstance(p, ProviderConfig) else ProviderConfig.from_dict(p, i)
        for i, p in enumerate(providers)
    )


# ---------------------------------------------------------------------------
# The verifier


@dataclass(slots=True)
class _Entry:
    value: Any
    fetched_at: float  # clock.monotonic()


@dataclass(frozen=True, slots=True)
class _Discovery:
    issuer: str | None
    jwks_uri: str


def _parse_discovery(doc: Any, url: str) -> _Discovery:
    if not isinstance(doc, dict):
        raise AuthError(f"the OpenID configuration at {url} is not a JSON object, got {_show(doc)}")
    jwks_uri = doc.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not _is_http_url(jwks_uri):
        raise AuthError(
            f"the OpenID configuration at {url} has no usable 'jwks_uri' (got {jwks_uri!r})"
        )
    issuer = doc.get("issuer")
    return _Discovery(issuer=issuer if isinstance(issuer, str) else None, jwks_uri=jwks_uri)


def _parse_jwks(doc: Any, url: str) -> _KeySet:
    return _KeySet.parse(doc, f"the JWKS at {url}")


def _iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{seconds!r} s since the epoch"


def _numeric_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthError(
            f"claim '{name}' must be a number of seconds since the epoch, got {_show(value)}"
        )
    return float(value)


def _audiences(claims: Mapping[str, Any]) -> list[str] | None:
    aud = claims.get("aud")
    if aud is None:
        return None
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return aud
    raise AuthError(f"claim 'aud' must be a string or a list of strings, got {_show(aud)}")


def _decode_unverified(token: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(token, str) or not token:
        raise AuthError(f"malformed token: expected a JWT string, got {_show(token)[:80]}")
    segments = token.count(".") + 1
    if segments != 3:
        raise AuthError(
            "malformed token: expected a JWT of three base64url segments separated by '.', "
            f"got {segments} segment{'s' if segments != 1 else ''}"
        )
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise AuthError(f"malformed token: {e}") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise AuthError(f"malformed token: header has no 'alg' (header: {header!r})")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AuthError(f"malformed token: header 'kid' must be a string, got {_show(kid)}")
    return header, claims


def _describe_http_error(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class AuthVerifier:
    """Verifies user JWTs against the configured providers.

    ``clock`` supplies ``now`` for temporal checks and the monotonic time for
    cache ages. ``http_client`` is used for discovery and JWKS fetches; when
    omitted the verifier creates one and closes it in :meth:`aclose`.
    ``leeway_s`` widens the ``exp``/``nbf``/``iat`` checks; ``jwks_ttl_s`` is
    how long a fetched JWKS or discovery document is trusted.
    """

    def __init__(
        self,
        providers: Sequence[ProviderConfig | Mapping[str, Any]],
        *,
        clock: Clock,
        http_client: httpx.AsyncClient | None = None,
        leeway_s: float = 5.0,
        jwks_ttl_s: float = 600.0,
    ) -> None:
        self._providers = parse_providers(list(providers))
        self._clock = clock
        self._client = http_client
        self._owns_client = http_client is None
        self._leeway_s = leeway_s
        self._ttl_s = jwks_ttl_s
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._last_forced: dict[str, float] = {}

    @property
    def providers(self) -> tuple[ProviderConfig, ...]:
        return self._providers

    async def __aenter__(self) -> AuthVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel in-flight fetches and close the HTTP client if this verifier made it."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, AuthError):
                await task
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- verification -----------------------------------------------------

    async def verify(self, token: str) -> User:
        """Verify ``token`` and return the caller's identity, or raise :class:`AuthError`."""
        try:
            return await self._verify(token)
        except AuthError as e:
            logger.info("rejected token: %s", e.message)
            raise

    async def _verify(self, token: str) -> User:
        header, unverified = _decode_unverified(token)
        iss = unverified.get("iss")
        if iss is None:
            raise AuthError("token has no 'iss' claim")
        if not isinstance(iss, str) or not iss:
            raise AuthError(f"claim 'iss' must be a non-empty string, got {_show(iss)}")
        audiences = _audiences(unverified)
        provider = self._select_provider(iss, audiences)
        if provider.kind == "oidc" and audiences is not None and len(audiences) > 1:
            raise AuthError(
                f"OIDC tokens must have exactly one audience; got {audiences} "
                f"(expected [{provider.application_id!r}])"
            )
        alg: str = header["alg"]
        if alg not in provider.algorithms:
            raise AuthError(
                f"unsupported algorithm {alg!r}: {provider.describe()} accepts "
                f"{', '.join(provider.algorithms)}"
            )
        kid: str | None = header.get("kid")
        key, source = await self._signing_key(provider, iss, kid, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], options=_SIGNATURE_ONLY
            )
        except jwt.InvalidSignatureError:
            raise AuthError(
                f"bad signature: the token is not signed by key {key.kid!r} of {source}"
            ) from None
        except jwt.PyJWTError as e:
            raise AuthError(f"malformed token: {e}") from None
        if claims.get("sub") is None:
            raise AuthError("token has no 'sub' claim")
        expires_at_s = self._check_times(claims)
        user = UserIdentity.from_claims(claims, iss)
        return User(user=user, expires_at_ms=expires_at_s * 1000, token=token)

    def _select_provider(self, iss: str, audiences: list[str] | None) -> ProviderConfig:
        matching = [p for p in self._providers if p.matches_issuer(iss)]
        if not matching:
            if not self._providers:
                raise AuthError(
                    f"no auth provider is configured, so a token from issuer {iss!r} cannot be "
                    "verified; declare one in auth_config.py",
                    code="NoAuthProvider",
                )
            raise AuthError(
                f"no auth provider matches the token issuer {iss!r}; configured issuers: "
                f"{', '.join(repr(p.issuer) for p in self._providers)}",
                code="NoAuthProvider",
            )
        for provider in matching:
            if provider.application_id is None or (
                audiences is not None and provider.application_id in audiences
            ):
                return provider
        expected = ", ".join(repr(p.application_id) for p in matching)
        if audiences is None:
            raise AuthError(
                f"token has no 'aud' claim; providers for issuer {iss!r} expect audience {expected}",
                code="NoAuthProvider",
            )
        raise AuthError(
            f"wrong audience: token 'aud' is {audiences}, expected {expected} for issuer {iss!r}",
            code="NoAuthProvider",
        )

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        now = self._clock.now_ms() / 1000
        leeway = self._leeway_s
        when = f"server time is {_iso(now)}, leeway {leeway:g} s"
        exp = _numeric_claim(claims, "exp")
        if exp is None:
            raise AuthError("token has no 'exp' claim")
        if exp <= now - leeway:
            raise AuthError(f"token expired at {_iso(exp)} (exp={claims['exp']!r}); {when}")
        nbf = _numeric_claim(claims, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise AuthError(
                f"token is not valid before {_iso(nbf)} (nbf={claims['nbf']!r}); {when}"
            )
        iat = _numeric_claim(claims, "iat")
        if iat is not None and iat > now + leeway:
            raise AuthError(
                f"token is issued in the future, at {_iso(iat)} (iat={claims['iat']!r}); {when}"
            )
        return exp

    async def _signing_key(
        self, provider: ProviderConfig, iss: str, kid: str | None, alg: str
    ) -> tuple[_Key, str]:
        keyset = provider._inline_keys
        if keyset is not None:
            key = keyset.find(kid)
        else:
            url = provider._jwks_url or await self._jwks_uri(provider, iss)
            keyset, fresh = await self._cached(url, "JWKS", _parse_jwks, force=False)
            key = keyset.find(kid)
            # A kid we do not know usually means the provider rotated its keys
            # since we cached them; a fetch made for this very call is already current.
            if key is None and not fresh and self._may_force_refetch(url):
                keyset, _ = await self._cached(url, "JWKS", _parse_jwks, force=True)
                key = keyset.find(kid)
        if key is None:
            raise AuthError(f"unknown key id {kid!r}: {keyset.source} has {keyset.describe_kids()}")
        problem = _incompatibility(key, alg)
        if problem is not None:
            raise AuthError(f"key {key.kid!r} of {keyset.source} {problem}")
        return key, keyset.source

    async def _jwks_uri(self, provider: ProviderConfig, iss: str) -> str:
        url = provider.discovery_url
        assert url is not None  # only OIDC providers have no configured JWKS
        discovery, _ = await self._cached(
            url, "OpenID configuration", _parse_discovery, force=False
        )
        announced = discovery.issuer
        if announced is not None and normalize_issuer(announced) != normalize_issuer(iss):
            raise AuthError(
                f"token issuer {iss!r} does not match the issuer {announced!r} announced by {url}"
            )
        return discovery.jwks_uri

    def _may_force_refetch(self, url: str) -> bool:
        now = self._clock.monotonic()
        last = self._last_forced.get(url)
        if last is not None and now - last < FORCED_REFETCH_INTERVAL_S:
            return False
        self._last_forced[url] = now
        return True

    # -- fetching and caching ---------------------------------------------

    async def _cached(
        self, url: str, what: str, parse: Callable[[Any, str], T], *, force: bool
    ) -> tuple[T, bool]:
        """The parsed document at ``url`` and whether it was fetched for this call.

        ``what`` names the document in errors ("could not fetch JWKS from ...").
        """
        entry = self._cache.get(url)
        if (
            entry is not None
            and not force
            and self._clock.monotonic() - entry.fetched_at < self._ttl_s
        ):
            return entry.value, False
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.create_task(
                self._fetch(url, what, parse), name=f"syncline-auth-fetch {url}"
            )
            self._inflight[url] = task
            task.add_done_callback(functools.partial(self._fetch_done, url))
        try:
            # Shielded: one caller giving up must not cancel the fetch others wait on.
            value = await asyncio.shield(task)
        except AuthError:
            if entry is None:
                raise
            return entry.value, False
        return value, True

    def _fetch_done(self, url: str, task: asyncio.Task[Any]) -> None:
        if self._inflight.get(url) is task:
            del self._inflight[url]
        if not task.cancelled():
            # Awaiters re-raise it; this only stops asyncio reporting it as never retrieved.
            task.exception()

    async def _fetch(self, url: str, what: str, parse: Callable[[Any, str], T]) -> T:
        try:
            value = parse(await self._get_json(url, what), url)
        except AuthError as e:
            stale = self._cache.get(url)
            if stale is not None:
                logger.warning("%s; still using the copy fetched earlier", e.message)
                # Keep serving the old copy for a while instead of retrying on every token.
                stale.fetched_at = max(
                    stale.fetched_at,
                    self._clock.monotonic() - self._ttl_s + FORCED_REFETCH_INTERVAL_S,
                )
            raise
        self._cache[url] = _Entry(value, self._clock.monotonic())
        return value

    async def _get_json(self, url: str, what: str) -> Any:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S, follow_redirects=True)
        try:
            response = await self._client.get(
                url, headers={"Accept": "application/json, application/jwk-set+json"}
            )
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise AuthError(
                f"could not fetch {what} from {url}: {_describe_http_error(e)}"
            ) from None
        if response.status_code != 200:
            raise AuthError(
                f"could not fetch {what} from {url}: HTTP {response.status_code} "
                f"{response.reason_phrase}".rstrip()
            )
        try:
            return response.json()
        except (UnicodeDecodeError, json.JSONDecodeError):
            content_type = response.headers.get("content-type", "none")
            raise AuthError(
                f"could not fetch {what} from {url}: the response is not JSON "
                f"(content-type {content_type!r})"
            ) from None


def is_expired(identity: Identity, now_ms: float, leeway_s: float = 0) -> bool:
    """Whether a previously verified user token has expired by ``now_ms``.

    Uses the same boundary as verification (``exp <= now - leeway``); identities
    without a token never expire.
    """
    if not isinstance(identity, User) or identity.expires_at_ms is None:
        return False
    return identity.expires_at_ms <= now_ms - leeway_s * 1000


# ---------------------------------------------------------------------------
# Admin keys


def generate_admin_key() -> str:
    """A new admin key: ``syncline-admin:`` and 256 random bits, url-safe base64.

    The random part never contains ``:``, so a key followed by an acting-as
    suffix (``<key>:<base64 JSON>``) splits unambiguously.
    """
    return f"{_ADMIN_KEY_PREFIX}:{secrets.token_urlsafe(32)}"


def _read_admin_key(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    key = text.strip()
    if not key:
        raise InternalError(
            f"admin key file {path} is empty; delete it to have a new key generated"
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning(
            "admin key file %s is accessible to other users (mode %03o); run `chmod 600` on it",
            path,
            mode,
        )
    return key


def load_or_create_admin_key(data_dir: Path) -> str:
    """The deployment's admin key, read from ``data_dir/admin_key`` or created there.

    A new key is written to a private temporary file (mode 0600), flushed, and
    then hard-linked into place, so readers never see a partial file and two
    processes starting at once agree on a single key.
    """
    path = data_dir / ADMIN_KEY_FILE
    existing = _read_admin_key(path)
    if existing is not None:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_admin_key()
    tmp = data_dir / f".{ADMIN_KEY_FILE}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may only narrow the mode; make it exact
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            winner = _read_admin_key(path)
            if winner is None:
                raise InternalError(f"admin key file {path} vanished while being created") from None
            return winner
        except OSError:
            # Filesystems without hard links: an atomic rename is the next best thing.
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key


def check_admin_key(presented: str, expected: str) -> bool:
    """Constant-time comparison of a presented key with the deployment's key.

    Surrounding whitespace is ignored on both; an empty expected key matches nothing.
    """
    want = expected.strip().encode()
    if not want:
        return False
    return hmac.compare_digest(presented.strip().encode(), want)


# ---------------------------------------------------------------------------
# Authorization header and credentials -> identity

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
