"""Token verification against real keys and a real JWKS/OIDC HTTP server; admin keys; headers.

Keys are generated per test session; a stdlib HTTP server on 127.0.0.1 serves
JWKS and discovery documents and counts requests, so caching and refetch rules
are observed, not mocked. Time comes from a ManualClock.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import json
import re
import stat
import threading
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from syncline._devtools import free_port
from syncline.auth.admin_key import (
    ADMIN_KEY_FILE,
    check_admin_key,
    generate_admin_key,
    load_or_create_admin_key,
)
from syncline.auth.credentials import (
    identity_from_credentials,
    parse_authorization_header,
    require_admin,
)
from syncline.auth.providers import ProviderConfig, normalize_issuer, parse_providers
from syncline.auth.verifier import AuthVerifier, is_expired
from syncline.clock import ManualClock
from syncline.errors import AuthError, Forbidden, FunctionDefinitionError, InternalError
from syncline.identity import ANONYMOUS, Admin, User

NOW_S = 1_700_000_000
ISS = "https://issuer.example.com"
APP = "my-app"

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Keys and tokens


@dataclass(frozen=True)
class Keys:
    rsa: rsa.RSAPrivateKey
    rsa_other: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    ed: ed25519.Ed25519PrivateKey


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa_other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        ed=ed25519.Ed25519PrivateKey.generate(),
    )


def jwk(private_key: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        data["kid"] = kid
    data["use"] = "sig"
    data.update(extra)
    return data


def jwks(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(entries)}


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "sub": "user_1",
        "aud": APP,
        "iat": NOW_S,
        "exp": NOW_S + 600,
        "email": "ada@example.com",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(private_key: Any, alg: str, payload: Mapping[str, Any], kid: str | None = "k1") -> str:
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(dict(payload), private_key, algorithm=alg, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:
    return ".".join(
        [
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(payload).encode()),
            b64url(signature),
        ]
    )


def public_pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---------------------------------------------------------------------------
# A real HTTP server for JWKS and discovery documents


@dataclass
class DocServer:
    base: str
    routes: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve_json(self, path: str, doc: Any, status: int = 200) -> str:
        self.routes[path] = (status, json.dumps(doc).encode(), "application/json")
        return self.base + path

    def serve_raw(self, path: str, body: bytes, status: int, content_type: str) -> str:
        self.routes[path] = (status, body, content_type)
        return self.base + path


@pytest.fixture
def server() -> Iterator[DocServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.hits[self.path] += 1
            if state.delay_s:
                time.sleep(state.delay_s)
            status, body, content_type = state.routes.get(
                self.path, (404, b"not found", "text/plain")
            )
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state = DocServer(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=NOW_S * 1000)


def custom(jwks_value: Any, algorithm: str = "RS256", **extra: Any) -> dict[str, Any]:
    return {
        "type": "custom_jwt",
        "issuer": ISS,
        "jwks": jwks_value,
        "algorithm": algorithm,
        **extra,
    }


async def verify_all(
    providers: Sequence[Mapping[str, Any]],
    tokens: Sequence[str],
    clock: ManualClock,
    **options: Any,
) -> list[User | AuthError]:
    """Verify tokens in order with one verifier; rejections are returned, not raised."""
    out: list[User | AuthError] = []
    async with AuthVerifier(providers, clock=clock, **options) as verifier:
        for token in tokens:
            try:
                out.append(await verifier.verify(token))
            except AuthError as e:
                out.append(e)
    return out


def verify(providers: Sequence[Mapping[str, Any]], token: str, clock: ManualClock) -> User:
    (result,) = run(verify_all(providers, [token], clock))
    if isinstance(result, AuthError):
        raise result
    return result


def rejection(providers: Sequence[Mapping[str, Any]], token: str, clock: ManualClock) -> AuthError:
    (result,) = run(verify_all(providers, [token], clock))
    assert isinstance(result, AuthError), f"token was accepted: {result!r}"
    return result


# ---------------------------------------------------------------------------
# Valid tokens


def test_custom_rs256_with_jwks_url(server: DocServer, keys: Keys, clock: ManualClock) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1")))
    token = sign(keys.rsa, "RS256", claims(given_name="Ada", picture="https://p/a.png"))

    user = verify([custom(url, application_id=APP)], token, clock)

    assert user.user.token_identifier == f"{ISS}|user_1"
    assert user.user.email == "ada@example.com"
    assert user.user["givenName"] == "Ada"
    assert user.user["pictureUrl"] == "https://p/a.png"
    assert user.expires_at_ms == (NOW_S + 600) * 1000
    assert user.token == token
    assert server.hits["/jwks.json"] == 1


def test_custom_rs256_with_inline_jwks_dict(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa, "RS256", claims())
    user = verify([custom(jwks(jwk(keys.rsa, "k1")))], token, clock)
    assert user.user.subject == "user_1"


def test_custom_rs256_with_data_uri(keys: Keys, clock: ManualClock) -> None:
    encoded = base64.b64encode(json.dumps(jwks(jwk(keys.rsa, "k1"))).encode()).decode()
    token = sign(keys.rsa, "RS256", claims())
    user = verify([custom(f"data:application/json;base64,{encoded}")], token, clock)
    assert user.user.subject == "user_1"


def test_custom_es256(server: DocServer, keys: Keys, clock: ManualClock) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.ec, "ec1")))
    token = sign(keys.ec, "ES256", claims(), kid="ec1")
    user = verify([custom(url, algorithm="ES256")], token, clock)
    assert user.user.token_identifier == f"{ISS}|user_1"


def test_single_key_jwks_needs_no_kid(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa, "RS256", claims(), kid=None)
    user = verify([custom(jwks(jwk(keys.rsa, None)))], token, clock)
    assert user.user.subject == "user_1"


def test_several_keys_require_a_kid(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa, "RS256", claims(), kid=None)
    provider = custom(jwks(jwk(keys.rsa, "k1"), jwk(keys.rsa_other, "k2")))
    error = rejection([provider], token, clock)
    assert "token header has no 'kid'" in error.message
    assert "holds 2 keys (key ids 'k1', 'k2')" in error.message


def test_oidc_discovery_flow(server: DocServer, keys: Keys, clock: ManualClock) -> None:
    domain = f"{server.base}/tenant"
    jwks_url = server.serve_json(
        "/tenant/keys",
        jwks(jwk(keys.rsa, "r1"), jwk(keys.ec, "e1"), jwk(keys.ed, "d1")),
    )
    server.serve_json(
        "/tenant/.well-known/openid-configuration", {"issuer": domain, "jwks_uri": jwks_url}
    )
    tokens = [
        sign(keys.rsa, "RS256", claims(iss=domain), kid="r1"),
        sign(keys.ec, "ES256", claims(iss=domain, aud=[APP]), kid="e1"),
        sign(keys.ed, "EdDSA", claims(iss=domain + "/"), kid="d1"),
    ]
    providers = [{"domain": domain, "application_id": APP}]

    results = run(verify_all(providers, tokens, clock))

    assert all(isinstance(r, User) for r in results), results
    # The configured domain, not each token's spelling of it: one user, one identity.
    assert [r.user.issuer for r in results] == [domain, domain, domain]  # type: ignore[union-attr]
    assert server.hits["/tenant/.well-known/openid-configuration"] == 1
    assert server.hits["/tenant/keys"] == 1


def test_oidc_rejects_several_audiences(server: DocServer, keys: Keys, clock: ManualClock) -> None:
    domain = server.base
    jwks_url = server.serve_json("/keys", jwks(jwk(keys.rsa, "k1")))
    server.serve_json("/.well-known/openid-configuration", {"issuer": domain, "jwks_uri": jwks_url})
    token = sign(keys.rsa, "RS256", claims(iss=domain, aud=[APP, "other"]))
    error = rejection([{"domain": domain, "applicationID": APP}], token, clock)
    assert "OIDC tokens must have exactly one audience; got ['my-app', 'other']" in error.message


def test_oidc_discovery_issuer_must_match(
    server: DocServer, keys: Keys, clock: ManualClock
) -> None:
    domain = server.base
    jwks_url = server.serve_json("/keys", jwks(jwk(keys.rsa, "k1")))
    server.serve_json(
        "/.well-known/openid-configuration",
        {"issuer": "https://elsewhere.example.com", "jwks_uri": jwks_url},
    )
    token = sign(keys.rsa, "RS256", claims(iss=domain))
    error = rejection([{"domain": domain, "application_id": APP}], token, clock)
    assert f"token issuer {domain!r} does not match the issuer 'https://elsewhere.example.com'" in (
        error.message
    )


def test_oidc_discovery_without_jwks_uri(server: DocServer, keys: Keys, clock: ManualClock) -> None:
    domain = server.base
    server.serve_json("/.well-known/openid-configuration", {"issuer": domain})
    token = sign(keys.rsa, "RS256", claims(iss=domain))
    error = rejection([{"domain": domain, "application_id": APP}], token, clock)
    assert "has no usable 'jwks_uri' (got None)" in error.message


# ---------------------------------------------------------------------------
# Issuer, audience and provider selection


def test_issuer_without_scheme_and_trailing_slash_match(keys: Keys, clock: ManualClock) -> None:
    provider = {**custom(jwks(jwk(keys.rsa, "k1"))), "issuer": ISS + "/"}
    token = sign(keys.rsa, "RS256", claims(iss="issuer.example.com"))
    user = verify([provider], token, clock)
    assert user.user.token_identifier == f"{ISS}/|user_1"


@pytest.mark.parametrize(
    "configured", ["issuer.test", "https://issuer.test", "https://issuer.test/"]
)
def test_issuer_spellings_give_one_identity(
    keys: Keys, clock: ManualClock, configured: str
) -> None:
    """One user, one identity: the provider's issuer as configured, whatever the token spells."""
    provider = {**custom(jwks(jwk(keys.rsa, "k1"))), "issuer": configured}
    users = [
        verify([provider], sign(keys.rsa, "RS256", claims(iss=iss)), clock).user
        for iss in ("issuer.test", "https://issuer.test", "https://issuer.test/")
    ]
    assert {u.token_identifier for u in users} == {f"{configured}|user_1"}
    assert {u.issuer for u in users} == {configured}


def test_normalize_issuer() -> None:
    assert normalize_issuer("issuer.example.com") == "https://issuer.example.com"
    assert normalize_issuer("https://issuer.example.com/") == "https://issuer.example.com"
    assert normalize_issuer("http://127.0.0.1:8080/t/") == "http://127.0.0.1:8080/t"


def test_wrong_issuer_lists_configured_issuers(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa, "RS256", claims(iss="https://other.example.com"))
    providers = [
        custom(jwks(jwk(keys.rsa, "k1"))),
        {"domain": "https://login.example.org", "application_id": APP},
    ]
    error = rejection(providers, token, clock)
    assert error.code == "NoAuthProvider"
    assert error.message == (
        "no auth provider matches the token issuer 'https://other.example.com'; "
        "configured issuers: 'https://issuer.example.com', 'https://login.example.org'"
    )


def test_no_providers_configured(keys: Keys, clock: ManualClock) -> None:
    error = rejection([], sign(keys.rsa, "RS256", claims()), clock)
    assert error.code == "NoAuthProvider"
    assert "no auth provider is configured" in error.message


def test_wrong_audience_says_expected_and_got(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa, "RS256", claims(aud="someone-else"))
    error = rejection([custom(jwks(jwk(keys.rsa, "k1")), application_id=APP)], token, clock)
    assert error.code == "NoAuthProvider"
    assert error.message == (
        "wrong audience: token 'aud' is ['someone-else'], expected 'my-app' "
        "for issuer 'https://issuer.example.com'"
    )


def test_missing_audience_when_application_id_set(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa, "RS256", claims(aud=None))
    error = rejection([custom(jwks(jwk(keys.rsa, "k1")), application_id=APP)], token, clock)
    assert "token has no 'aud' claim" in error.message
    assert "expect audience 'my-app'" in error.message


def test_audience_unchecked_without_application_id(keys: Keys, clock: ManualClock) -> None:
    provider = custom(jwks(jwk(keys.rsa, "k1")))
    for aud in (None, "anything", ["a", "b"]):
        assert verify([provider], sign(keys.rsa, "RS256", claims(aud=aud)), clock)


def test_first_provider_matching_issuer_and_audience_wins(keys: Keys, clock: ManualClock) -> None:
    providers = [
        custom(jwks(jwk(keys.ec, "e1")), algorithm="ES256", application_id="app-a"),
        custom(jwks(jwk(keys.rsa, "k1")), application_id="app-b"),
    ]
    user = verify(providers, sign(keys.rsa, "RS256", claims(aud="app-b")), clock)
    assert user.user.subject == "user_1"


# ---------------------------------------------------------------------------
# Time


def test_expiry_respects_leeway(keys: Keys, clock: ManualClock) -> None:
    provider = custom(jwks(jwk(keys.rsa, "k1")))
    assert verify([provider], sign(keys.rsa, "RS256", claims(exp=NOW_S - 4)), clock)
    error = rejection([provider], sign(keys.rsa, "RS256", claims(exp=NOW_S - 5)), clock)
    assert error.code == "Unauthenticated"
    assert error.message == (
        "token expired at 2023-11-14T22:13:15Z (exp=1699999995); "
        "server time is 2023-11-14T22:13:20Z, leeway 5 s"
    )


def test_token_expires_as_the_clock_moves(keys: Keys, clock: ManualClock) -> None:
    provider = custom(jwks(jwk(keys.rsa, "k1")))
    token = sign(keys.rsa, "RS256", claims(exp=NOW_S + 60))
    user = verify([provider], token, clock)
    assert not is_expired(user, clock.now_ms())
    clock.advance(64_000)
    assert verify([provider], token, clock)
    assert is_expired(user, clock.now_ms())
    assert not is_expired(user, clock.now_ms(), leeway_s=5)
    clock.advance(1_000)
    assert "token expired" in rejection([provider], token, clock).message
    assert not is_expired(ANONYMOUS, clock.now_ms())
    assert not is_expired(Admin(), clock.now_ms())


def test_not_yet_valid(keys: Keys, clock: ManualClock) -> None:
    provider = custom(jwks(jwk(keys.rsa, "k1")))
    assert verify([provider], sign(keys.rsa, "RS256", claims(nbf=NOW_S + 5)), clock)
    error = rejection([provider], sign(keys.rsa, "RS256", claims(nbf=NOW_S + 6)), clock)
    assert error.message.startswith(
        "token is not valid before 2023-11-14T22:13:26Z (nbf=1700000006)"
    )


def test_issued_in_the_future(keys: Keys, clock: ManualClock) -> None:
    provider = custom(jwks(jwk(keys.rsa, "k1")))
    error = rejection([provider], sign(keys.rsa, "RS256", claims(iat=NOW_S + 60)), clock)
    assert error.message.startswith("token is issued in the future, at 2023-11-14T22:14:20Z")


# ---------------------------------------------------------------------------
# Malformed tokens, missing claims, algorithms, signatures


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "malformed token: expected a JWT string, got '' (str)"),
        ("garbage", "expected a JWT of three base64url segments separated by '.', got 1 segment"),
        ("a.b.c.d.e", "got 5 segments"),
        ("a.b.c", "malformed token: "),
        ("eyJ0eXAiOiJKV1QifQ.e30.c2ln", "malformed token: header has no 'alg'"),
    ],
)
def test_malformed_tokens(keys: Keys, clock: ManualClock, token: str, message: str) -> None:
    error = rejection([custom(jwks(jwk(keys.rsa, "k1")))], token, clock)
    assert message in error.message


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("iss", "token has no 'iss' claim"),
        ("sub", "token has no 'sub' claim"),
        ("exp", "token has no 'exp' claim"),
    ],
)
def test_required_claims(keys: Keys, clock: ManualClock, missing: str, message: str) -> None:
    token = sign(keys.rsa, "RS256", claims(**{missing: None}))
    assert rejection([custom(jwks(jwk(keys.rsa, "k1")))], token, clock).message == message


def test_non_numeric_exp(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa, "RS256", claims(exp="tomorrow"))
    error = rejection([custom(jwks(jwk(keys.rsa, "k1")))], token, clock)
    assert error.message == (
        "claim 'exp' must be a number of seconds since the epoch, got 'tomorrow' (str)"
    )


def test_hs256_signed_with_the_public_key_is_refused(keys: Keys, clock: ManualClock) -> None:
    # The classic alg-confusion forgery: HMAC keyed with the provider's public key.
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    payload = claims()
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(public_pem(keys.rsa), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(mac)}"
    error = rejection([custom(jwks(jwk(keys.rsa, "k1")))], token, clock)
    assert error.message == (
        "unsupported algorithm 'HS256': custom JWT provider 'https://issuer.example.com' "
        "accepts RS256"
    )


def test_alg_none_is_refused(keys: Keys, clock: ManualClock) -> None:
    token = unsigned_token({"alg": "none", "kid": "k1"}, claims(), b"")
    error = rejection([custom(jwks(jwk(keys.rsa, "k1")))], token, clock)
    assert "unsupported algorithm 'none'" in error.message


def test_custom_provider_accepts_only_its_algorithm(keys: Keys, clock: ManualClock) -> None:
    provider = custom(jwks(jwk(keys.ec, "k1")), algorithm="ES256")
    error = rejection([provider], sign(keys.rsa, "RS256", claims()), clock)
    assert "unsupported algorithm 'RS256'" in error.message
    assert "accepts ES256" in error.message


def test_key_type_must_fit_the_algorithm(server: DocServer, keys: Keys, clock: ManualClock) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.ec, "k1")))
    error = rejection([custom(url)], sign(keys.rsa, "RS256", claims()), clock)
    assert error.message == (
        f"key 'k1' of the JWKS at {url} is a EC P-256 key, which cannot verify RS256 signatures"
    )


def test_bad_signature_from_another_key_with_same_kid(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa_other, "RS256", claims())
    error = rejection([custom(jwks(jwk(keys.rsa, "k1")))], token, clock)
    assert error.message == (
        "bad signature: the token is not signed by key 'k1' of the inline JWKS of provider "
        "'https://issuer.example.com'"
    )


def test_tampered_payload_is_a_bad_signature(keys: Keys, clock: ManualClock) -> None:
    token = sign(keys.rsa, "RS256", claims())
    header, _, signature = token.split(".")
    forged = f"{header}.{b64url(json.dumps(claims(sub='admin')).encode())}.{signature}"
    assert "bad signature" in rejection([custom(jwks(jwk(keys.rsa, "k1")))], forged, clock).message


# ---------------------------------------------------------------------------
# Key ids, rotation, caching and fetching


def test_unknown_kid_forces_one_refetch_then_rotation_is_picked_up(
    server: DocServer, keys: Keys, clock: ManualClock
) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1")))
    provider = custom(url)

    async def scenario() -> None:
        async with AuthVerifier([provider], clock=clock) as verifier:
            await verifier.verify(sign(keys.rsa, "RS256", claims(), kid="k1"))
            assert server.hits["/jwks.json"] == 1

            # The provider rotates: k2 appears. The cached JWKS does not know it.
            server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1"), jwk(keys.rsa_other, "k2")))
            user = await verifier.verify(sign(keys.rsa_other, "RS256", claims(), kid="k2"))
            assert user.user.subject == "user_1"
            assert server.hits["/jwks.json"] == 2

            # A kid nobody has: the forced refetch is rate-limited...
            with pytest.raises(AuthError) as info:
                await verifier.verify(sign(keys.rsa, "RS256", claims(), kid="k3"))
            assert info.value.message == (
                f"unknown key id 'k3': the JWKS at {url} has key ids 'k1', 'k2'"
            )
            assert server.hits["/jwks.json"] == 2

            # ...to once per 30 s per URL.
            clock.advance(31_000)
            with pytest.raises(AuthError):
                await verifier.verify(sign(keys.rsa, "RS256", claims(), kid="k3"))
            assert server.hits["/jwks.json"] == 3

    run(scenario())


def test_unknown_kid_on_a_fresh_fetch_does_not_refetch(
    server: DocServer, keys: Keys, clock: ManualClock
) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1")))
    error = rejection([custom(url)], sign(keys.rsa, "RS256", claims(), kid="k9"), clock)
    assert error.message == f"unknown key id 'k9': the JWKS at {url} has key ids 'k1'"
    assert server.hits["/jwks.json"] == 1


def test_unknown_kid_in_inline_jwks(keys: Keys, clock: ManualClock) -> None:
    error = rejection(
        [custom(jwks(jwk(keys.rsa, "k1")))], sign(keys.rsa, "RS256", claims(), kid="k2"), clock
    )
    assert error.message.startswith("unknown key id 'k2': the inline JWKS of provider")


def test_jwks_is_cached_for_its_ttl(server: DocServer, keys: Keys, clock: ManualClock) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1")))

    async def scenario() -> None:
        async with AuthVerifier([custom(url)], clock=clock, jwks_ttl_s=600) as verifier:
            for i in range(10):
                await verifier.verify(sign(keys.rsa, "RS256", claims(sub=f"u{i}")))
            assert server.hits["/jwks.json"] == 1
            clock.advance(599_000)
            await verifier.verify(sign(keys.rsa, "RS256", claims(exp=NOW_S + 6000)))
            assert server.hits["/jwks.json"] == 1
            clock.advance(2_000)
            await verifier.verify(sign(keys.rsa, "RS256", claims(exp=NOW_S + 6000)))
            assert server.hits["/jwks.json"] == 2

    run(scenario())


def test_concurrent_verifications_share_one_fetch(
    server: DocServer, keys: Keys, clock: ManualClock
) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1")))
    server.delay_s = 0.2
    tokens = [sign(keys.rsa, "RS256", claims(sub=f"u{i}")) for i in range(20)]

    async def scenario() -> list[User]:
        async with AuthVerifier([custom(url)], clock=clock) as verifier:
            return await asyncio.gather(*(verifier.verify(t) for t in tokens))

    users = run(scenario())
    assert [u.user.subject for u in users] == [f"u{i}" for i in range(20)]
    assert server.hits["/jwks.json"] == 1


def test_cancelled_waiter_does_not_cancel_the_shared_fetch(
    server: DocServer, keys: Keys, clock: ManualClock
) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1")))
    server.delay_s = 0.2
    token = sign(keys.rsa, "RS256", claims())

    async def scenario() -> None:
        async with AuthVerifier([custom(url)], clock=clock) as verifier:
            first = asyncio.create_task(verifier.verify(token))
            second = asyncio.create_task(verifier.verify(token))
            await asyncio.sleep(0.05)
            first.cancel()
            assert (await second).user.subject == "user_1"
            with pytest.raises(asyncio.CancelledError):
                await first

    run(scenario())
    assert server.hits["/jwks.json"] == 1


def test_jwks_server_down_gives_a_clear_error(keys: Keys, clock: ManualClock) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    error = rejection([custom(url)], sign(keys.rsa, "RS256", claims()), clock)
    assert error.message.startswith(f"could not fetch JWKS from {url}: ConnectError")


def test_jwks_http_error_and_non_json(server: DocServer, keys: Keys, clock: ManualClock) -> None:
    url = server.serve_raw("/jwks.json", b"oops", 500, "text/plain")
    error = rejection([custom(url)], sign(keys.rsa, "RS256", claims()), clock)
    assert error.message == f"could not fetch JWKS from {url}: HTTP 500 Internal Server Error"

    url = server.serve_raw("/page", b"<html></html>", 200, "text/html")
    error = rejection([custom(url)], sign(keys.rsa, "RS256", claims()), clock)
    assert error.message == (
        f"could not fetch JWKS from {url}: the response is not JSON (content-type 'text/html')"
    )

    url = server.serve_json("/empty", {"keys": []})
    error = rejection([custom(url)], sign(keys.rsa, "RS256", claims()), clock)
    assert (
        error.message
        == f"the JWKS at {url} contains no usable signing key (RSA, EC P-256 or Ed25519)"
    )


def test_stale_jwks_keeps_serving_when_a_refresh_fails(
    server: DocServer, keys: Keys, clock: ManualClock
) -> None:
    url = server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1")))
    token = sign(keys.rsa, "RS256", claims(exp=NOW_S + 6000))

    async def scenario() -> None:
        async with AuthVerifier([custom(url)], clock=clock, jwks_ttl_s=600) as verifier:
            await verifier.verify(token)
            server.serve_raw("/jwks.json", b"down", 503, "text/plain")
            clock.advance(601_000)
            assert (await verifier.verify(token)).user.subject == "user_1"
            assert server.hits["/jwks.json"] == 2
            # The failed refresh is retried after a pause, not on every token.
            await verifier.verify(token)
            assert server.hits["/jwks.json"] == 2
            clock.advance(31_000)
            await verifier.verify(token)
            assert server.hits["/jwks.json"] == 3

    run(scenario())


def test_verifier_uses_an_injected_http_client(
    server: DocServer, keys: Keys, clock: ManualClock
) -> None:
    import httpx

    url = server.serve_json("/jwks.json", jwks(jwk(keys.rsa, "k1")))

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            async with AuthVerifier([custom(url)], clock=clock, http_client=client) as verifier:
                await verifier.verify(sign(keys.rsa, "RS256", claims()))
            assert not client.is_closed  # not ours to close

    run(scenario())


# ---------------------------------------------------------------------------
# Provider configuration


def test_provider_config_accepts_convex_spellings(keys: Keys) -> None:
    (oidc, custom_jwt) = parse_providers(
        [
            {"domain": "https://login.example.com", "applicationID": "convex"},
            {
                "type": "customJwt",
                "issuer": ISS,
                "jwks": jwks(jwk(keys.ec, "e1")),
                "algorithm": "ES256",
                "applicationID": APP,
            },
        ]
    )
    assert oidc.kind == "oidc"
    assert oidc.application_id == "convex"
    assert oidc.algorithms == ("RS256", "ES256", "EdDSA")
    assert oidc.discovery_url == "https://login.example.com/.well-known/openid-configuration"
    assert custom_jwt.kind == "custom_jwt"
    assert custom_jwt.algorithms == ("ES256",)
    assert custom_jwt.application_id == APP
    assert custom_jwt.discovery_url is None


def test_provider_config_passes_config_objects_through() -> None:
    config = ProviderConfig(kind="oidc", issuer="https://a.example.com", application_id="x")
    assert parse_providers([config]) == (config,)


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        ("nope", "auth_config.py 'providers' must be a list, got 'nope' (str)"),
        (["x"], "providers[0]: expected a dict, got 'x' (str)"),
        ([{"application_id": APP}], "providers[0]: 'domain' is required for an OIDC provider"),
        (
            [{"domain": "login.example.com", "application_id": APP}],
            "providers[0]: 'domain' must be an https:// URL, got 'login.example.com' (str)",
        ),
        (
            [{"domain": "https://a.example.com"}],
            "providers[0]: 'application_id' is required for an OIDC provider",
        ),
        (
            [{"domain": "https://a.example.com", "applicationId": APP}],
            "providers[0]: unknown key(s) 'applicationId' for an OIDC provider; "
            "expected application_id, domain, type",
        ),
        (
            [
                {"domain": "https://a.example.com", "application_id": APP},
                {"type": "jwt", "issuer": ISS},
            ],
            "providers[1]: 'type' must be 'custom_jwt' (or absent for OIDC), got 'jwt' (str)",
        ),
        (
            [{"type": "custom_jwt", "issuer": ISS, "algorithm": "RS256"}],
            "providers[0]: 'jwks' is required for a custom_jwt provider",
        ),
        (
            [{"type": "custom_jwt", "issuer": ISS, "jwks": "https://x/j", "algorithm": "HS256"}],
            "providers[0]: 'algorithm' must be one of 'RS256', 'ES256', got 'HS256' (str)",
        ),
        (
            [{"type": "custom_jwt", "issuer": ISS, "jwks": "ftp://x/j", "algorithm": "RS256"}],
            "'jwks' must be an https:// URL, a data: URI or a JWKS dict, got 'ftp://x/j' (str)",
        ),
        (
            [
                {
                    "type": "custom_jwt",
                    "issuer": ISS,
                    "jwks": "data:x;base64,!!",
                    "algorithm": "RS256",
                }
            ],
            "'jwks' is a data: URI but its payload is not base64",
        ),
        (
            [{"type": "custom_jwt", "issuer": ISS, "jwks": {"k": 1}, "algorithm": "RS256"}],
            "providers[0]: 'jwks': the inline JWKS of provider 'https://issuer.example.com' "
            'is not a JWKS: expected {"keys": [...]}',
        ),
        (
            [
                {
                    "type": "custom_jwt",
                    "issuer": ISS,
                    "jwks": "https://x/j",
                    "algorithm": "RS256",
                    "application_id": "",
                }
            ],
            "providers[0]: 'application_id' must be a non-empty string, got '' (str)",
        ),
        (
            [{"domain": "https://a.example.com", "application_id": APP, "applicationID": APP}],
            "give 'application_id' or 'applicationID', not both",
        ),
    ],
)
def test_invalid_provider_config(providers: Any, message: str) -> None:
    with pytest.raises(FunctionDefinitionError) as info:
        parse_providers(providers)
    assert message in info.value.message


def test_inline_jwks_must_hold_a_key_for_the_algorithm(keys: Keys) -> None:
    with pytest.raises(FunctionDefinitionError) as info:
        parse_providers([custom(jwks(jwk(keys.rsa, "k1")), algorithm="ES256")])
    assert info.value.message == (
        "auth_config.py providers[0]: 'jwks' holds no key for ES256 (key types: RSA)"
    )


def test_verifier_rejects_invalid_config() -> None:
    with pytest.raises(FunctionDefinitionError):
        AuthVerifier([{"domain": "https://a.example.com"}], clock=ManualClock())


# ---------------------------------------------------------------------------
# Admin keys


def test_admin_key_is_created_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / ".syncline"
    key = load_or_create_admin_key(data_dir)

    assert re.fullmatch(r"syncline-admin:[A-Za-z0-9_-]{43}", key)
    path = data_dir / ADMIN_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key + "\n"
    assert load_or_create_admin_key(data_dir) == key
    assert [p.name for p in data_dir.iterdir()] == [ADMIN_KEY_FILE]  # no temp files left


def test_admin_key_file_written_by_hand_is_honoured(tmp_path: Path) -> None:
    (tmp_path / ADMIN_KEY_FILE).write_text("  my-own-key\n")
    assert load_or_create_admin_key(tmp_path) == "my-own-key"


def test_empty_admin_key_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / ADMIN_KEY_FILE).write_text("\n")
    with pytest.raises(InternalError, match="is empty; delete it"):
        load_or_create_admin_key(tmp_path)


def test_generated_admin_keys_differ() -> None:
    assert len({generate_admin_key() for _ in range(50)}) == 50


def test_check_admin_key() -> None:
    key = generate_admin_key()
    assert check_admin_key(key, key)
    assert check_admin_key(f"  {key}\n", key)
    assert not check_admin_key(key[:-1], key)
    assert not check_admin_key("", key)
    assert not check_admin_key("", "")


# ---------------------------------------------------------------------------
# Authorization header and credentials


def encode_attrs(attrs: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(attrs).encode()).decode()


def test_parse_authorization_header() -> None:
    key = generate_admin_key()
    attrs = {"issuer": ISS, "subject": "u1", "name": "Ada"}

    assert parse_authorization_header(None) == ("none", None, None)
    assert parse_authorization_header("  ") == ("none", None, None)
    assert parse_authorization_header("Bearer a.b.c") == ("bearer", "a.b.c", None)
    assert parse_authorization_header("bearer   a.b.c ") == ("bearer", "a.b.c", None)
    assert parse_authorization_header(f"Convex {key}") == ("admin", key, None)
    assert parse_authorization_header(f"CONVEX {key}") == ("admin", key, None)
    assert parse_authorization_header(f"Convex {key}:{encode_attrs(attrs)}") == (
        "admin",
        key,
        attrs,
    )
    # A hand-made key containing ':' stays whole when no identity follows.
    assert parse_authorization_header("Convex prod:abc") == ("admin", "prod:abc", None)
    assert parse_authorization_header(f"Convex prod:abc:{encode_attrs(attrs)}") == (
        "admin",
        "prod:abc",
        attrs,
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer", "Authorization header 'Bearer' carries no token"),
        ("Convex ", "Authorization header 'Convex' carries no admin key"),
        (
            "Basic dXNlcjpwYXNz",
            "Authorization header must be 'Bearer <token>' or 'Convex <admin key>', got scheme 'Basic'",
        ),
        (
            f"Convex k:{base64.b64encode(b'[1, 2]').decode()}",
            "must be a base64-encoded JSON object, got a JSON list",
        ),
    ],
)
def test_malformed_authorization_header(header: str, message: str) -> None:
    with pytest.raises(AuthError) as info:
        parse_authorization_header(header)
    assert info.value.code == "InvalidAuthHeader"
    assert message in info.value.message
    assert "dXNlcjpwYXNz" not in info.value.message


def test_identity_from_credentials(keys: Keys, clock: ManualClock) -> None:
    admin_key = generate_admin_key()
    token = sign(keys.rsa, "RS256", claims())
    acting = {"issuer": ISS, "subject": "u7", "email": "u7@example.com"}

    async def scenario() -> None:
        async with AuthVerifier([custom(jwks(jwk(keys.rsa, "k1")))], clock=clock) as verifier:

            async def resolve(header: str | None) -> Any:
                kind, value, attrs = parse_authorization_header(header)
                return await identity_from_credentials(
                    kind, value, attrs, verifier=verifier, admin_key=admin_key
                )

            assert await resolve(None) is ANONYMOUS
            user = await resolve(f"Bearer {token}")
            assert isinstance(user, User)
            assert user.user.subject == "user_1"
            assert await resolve(f"Convex {admin_key}") == Admin()
            admin = await resolve(f"Convex {admin_key}:{encode_attrs(acting)}")
            assert isinstance(admin, Admin)
            assert admin.acting_as is not None
            assert admin.acting_as.token_identifier == f"{ISS}|u7"
            assert admin.acting_as.email == "u7@example.com"
            with pytest.raises(AuthError) as info:
                await resolve(f"Convex {generate_admin_key()}")
            assert info.value.code == "BadAdminKey"

    run(scenario())


def test_require_admin() -> None:
    require_admin(Admin(), "running an internal function")
    with pytest.raises(Forbidden, match="running an internal function requires the admin key"):
        require_admin(ANONYMOUS, "running an internal function")


def test_verify_logs_the_reason(
    keys: Keys, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="syncline.auth")
    rejection([custom(jwks(jwk(keys.rsa, "k1")))], "garbage", clock)
    assert any("rejected token: malformed token" in r.getMessage() for r in caplog.records)
