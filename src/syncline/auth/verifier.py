"""Verifying user JWTs against the configured providers (:class:`AuthVerifier`).

Verification contract (:meth:`AuthVerifier.verify`)
    * Issuer matching: ``https://`` is prepended to an ``iss`` without a
      scheme, and one trailing ``/`` is ignored on both sides.
    * Identity: the user's ``issuer`` and ``tokenIdentifier`` use the matched
      provider's issuer as configured, so the spellings of one issuer give
      one identity.
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
      ``NoAuthProvider`` (no provider for the issuer/audience).

PyJWT (with ``cryptography``) and httpx are imported on first use: a server
whose clients send no user token never loads them (about 20 MiB resident).

JWKS and discovery documents are fetched with httpx, cached per URL for
``jwks_ttl_s``, and shared: concurrent verifications wait on one in-flight
fetch. When a refresh fails and an older copy exists, the older copy keeps
serving (retried after :data:`FORCED_REFETCH_INTERVAL_S`) so that a blip at
the identity provider does not log every user out. An :class:`AuthVerifier`
belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from syncline.auth.jwks import KeySet, SigningKey, incompatibility, show_value
from syncline.auth.providers import (
    ProviderConfig,
    is_http_url,
    normalize_issuer,
    parse_providers,
)
from syncline.clock import Clock
from syncline.errors import AuthError
from syncline.identity import Identity, User, UserIdentity

if TYPE_CHECKING:
    import httpx
    from jwt.types import Options

__all__ = ["FORCED_REFETCH_INTERVAL_S", "AuthVerifier", "is_expired"]

logger = logging.getLogger(__name__)

FORCED_REFETCH_INTERVAL_S = 30.0
_HTTP_TIMEOUT_S = 10.0

# Signature only: every claim check is ours, against the injected clock.
_SIGNATURE_ONLY: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}

T = TypeVar("T")


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
        raise AuthError(
            f"the OpenID configuration at {url} is not a JSON object, got {show_value(doc)}"
        )
    jwks_uri = doc.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not is_http_url(jwks_uri):
        raise AuthError(
            f"the OpenID configuration at {url} has no usable 'jwks_uri' (got {jwks_uri!r})"
        )
    issuer = doc.get("issuer")
    return _Discovery(issuer=issuer if isinstance(issuer, str) else None, jwks_uri=jwks_uri)


def _parse_jwks(doc: Any, url: str) -> KeySet:
    return KeySet.parse(doc, f"the JWKS at {url}")


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
            f"claim '{name}' must be a number of seconds since the epoch, got {show_value(value)}"
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
    raise AuthError(f"claim 'aud' must be a string or a list of strings, got {show_value(aud)}")


def _decode_unverified(token: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(token, str) or not token:
        raise AuthError(f"malformed token: expected a JWT string, got {show_value(token)[:80]}")
    segments = token.count(".") + 1
    if segments != 3:
        raise AuthError(
            "malformed token: expected a JWT of three base64url segments separated by '.', "
            f"got {segments} segment{'s' if segments != 1 else ''}"
        )
    import jwt

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
        raise AuthError(f"malformed token: header 'kid' must be a string, got {show_value(kid)}")
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
            raise AuthError(f"claim 'iss' must be a non-empty string, got {show_value(iss)}")
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
        import jwt

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
        # The configured issuer, not the token's spelling of it: one user, one identity.
        user = UserIdentity.from_claims(claims, provider.issuer)
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
    ) -> tuple[SigningKey, str]:
        inline = provider.inline_keys
        if inline is not None:
            keyset = inline
            key = keyset.find(kid)
        else:
            url = provider.jwks_url or await self._jwks_uri(provider, iss)
            keyset, fresh = await self._cached(url, "JWKS", _parse_jwks, force=False)
            key = keyset.find(kid)
            # A kid we do not know usually means the provider rotated its keys
            # since we cached them; a fetch made for this very call is already current.
            if key is None and not fresh and self._may_force_refetch(url):
                keyset, _ = await self._cached(url, "JWKS", _parse_jwks, force=True)
                key = keyset.find(kid)
        if key is None:
            raise AuthError(f"unknown key id {kid!r}: {keyset.source} has {keyset.describe_kids()}")
        problem = incompatibility(key, alg)
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
        import httpx

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
