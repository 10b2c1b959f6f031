"""OAuth and OpenID Connect sign-in: GitHub, Google, and any OIDC provider.

The flow, as Convex Auth runs it (authorization code with PKCE and state):

1. ``signIn("github", {"redirectTo"?})``: ``auth:signIn`` records the sign-in
   (an ``authVerifiers`` document, valid 15 minutes) and answers
   ``{"redirect": <site>/api/auth/signin/github?code=<verifier>, "verifier"}``;
   the client keeps the verifier and goes there.
2. ``GET /api/auth/signin/<id>``: a random ``state`` (prefixed by the
   verifier id) and PKCE ``code_verifier`` are bound to the sign-in, once;
   the browser is sent to the provider's authorization page.
3. ``GET /api/auth/callback/<id>?code&state``: the state is checked against
   the stored digest (constant time) and spent, the provider's code is
   exchanged (with the PKCE verifier and the client secret), the profile read
   (OIDC: the ID token's signature, issuer, audience and nonce are verified),
   the user and account created or updated, and the browser sent to the app's
   ``SITE_URL`` (or ``redirectTo``) with ``?code=<one-time code>``.
4. The client finds ``?code=`` and calls ``signIn`` with it and its verifier:
   the code is single-use, expires after a minute and only works with the
   verifier of the browser that started the sign-in.

Client credentials come from deployment environment variables
``AUTH_<ID>_ID`` and ``AUTH_<ID>_SECRET`` (``AUTH_GITHUB_ID``, ...); an OIDC
provider built without ``issuer`` reads ``AUTH_<ID>_ISSUER``. The callback
URL to register with the provider is ``<site URL>/api/auth/callback/<id>``.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import json
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncline.accounts.errors import auth_error
from syncline.accounts.mail import random_code
from syncline.accounts.redirects import redirect_target, with_query_param
from syncline.errors import FunctionDefinitionError, SynclineError
from syncline.functions.http.request import HttpBodyError
from syncline.functions.http.response import HttpResponse

if TYPE_CHECKING:
    from syncline.accounts.setup import ConvexAuth, SignInFlow
    from syncline.functions.http.request import HttpRequest
    from syncline.functions.http.router import HttpRouter

__all__ = ["OIDC", "Apple", "GitHub", "Google", "OAuthError", "OAuthProvider", "add_oauth_routes"]

log = logging.getLogger("syncline.accounts")

SIGN_IN_LIFETIME_S = 15 * 60
_CODE_LIFETIME_S = 60
_HTTP_TIMEOUT_S = 10.0
_ID = re.compile(r"[a-z][a-z0-9-]{0,63}")


class OAuthError(SynclineError):
    """The provider refused, or answered something unusable; the sign-in fails."""

    code = "OAuthFailed"
    http_status = 400


def _env_name(provider_id: str, suffix: str) -> str:
    return f"AUTH_{re.sub(r'[^A-Z0-9]', '_', provider_id.upper())}_{suffix}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _challenge(code_verifier: str) -> str:
    return _b64url(hashlib.sha256(code_verifier.encode()).digest())


def _nonce(code_verifier: str) -> str:
    """The OIDC nonce of a sign-in: derived from its PKCE verifier, which only we know."""
    return _b64url(hashlib.sha256(b"nonce:" + code_verifier.encode()).digest())


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    userinfo: str | None = None
    jwks: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class OAuthProvider(abc.ABC):
    """An OAuth 2 provider. Subclasses say where its endpoints are and how to read a profile."""

    id: str
    scopes: tuple[str, ...] = ()
    extra_authorization_params: dict[str, str] = field(default_factory=dict)
    #: how the provider delivers its answer to the callback: a redirect (GET) or a form POST
    callback_method: str = "GET"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise FunctionDefinitionError(
                f"OAuth provider id must be lower-case letters, digits and '-' (it is in URLs), "
                f"got {self.id!r}"
            )

    # -- what subclasses provide -------------------------------------------

    @abc.abstractmethod
    async def endpoints(self, env: Any) -> Endpoints:
        """Where the provider's authorization and token endpoints are."""

    @abc.abstractmethod
    async def profile(
        self,
        client: Any,
        endpoints: Endpoints,
        tokens: dict[str, Any],
        code_verifier: str,
        env: Any,
        callback: Mapping[str, str],
    ) -> tuple[str, dict[str, Any]]:
        """The provider's account id and the ``users`` fields (name, email, image).

        ``callback`` holds the parameters of the provider's answer (Apple sends
        the user's name there).
        """

    # -- the flow ------------------------------------------------------------

    def credentials(self, env: Any) -> tuple[str, str]:
        client_id = env.get(_env_name(self.id, "ID"))
        secret = env.get(_env_name(self.id, "SECRET"))
        if not client_id or not secret:
            raise auth_error(
                "OAuthNotConfigured",
                f"Set the environment variables {_env_name(self.id, 'ID')} and "
                f"{_env_name(self.id, 'SECRET')} to the client id and secret of the "
                f"{self.id!r} OAuth app",
            )
        return client_id, secret

    async def sign_in(
        self, flow: SignInFlow, params: dict[str, Any], verifier: str | None
    ) -> dict[str, Any]:
        self.credentials(flow.ctx.env)  # fail here, not on the provider's page
        target = redirect_target(flow.ctx.env, params.get("redirectTo"))
        verifier_id = await flow.store(
            "createVerifier", provider=self.id, redirectTo=target, lifetimeS=SIGN_IN_LIFETIME_S
        )
        start = f"{flow.issuer.issuer}/api/auth/signin/{self.id}"
        return {"redirect": with_query_param(start, "code", verifier_id), "verifier": verifier_id}

    def callback_url(self, flow: SignInFlow) -> str:
        return f"{flow.issuer.issuer}/api/auth/callback/{self.id}"

    async def authorization_redirect(self, flow: SignInFlow, verifier_id: str) -> HttpResponse:
        env = flow.ctx.env
        client_id, _ = self.credentials(env)
        state = f"{verifier_id}.{secrets.token_urlsafe(32)}"
        code_verifier = secrets.token_urlsafe(48)
        started = await flow.store(
            "startOAuth",
            verifier=verifier_id,
            provider=self.id,
            state=state,
            codeVerifier=code_verifier,
        )
        if not started:
            return _refuse("This sign-in link is invalid, expired or was already used")
        try:
            endpoints = await self.endpoints(env)
        except OAuthError as e:
            return _refuse(f"Could not start the sign-in with {self.id}: {e}", status=502)
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": self.callback_url(flow),
            "state": state,
            "code_challenge": _challenge(code_verifier),
            "code_challenge_method": "S256",
            **self.extra_authorization_params,
        }
        if self.scopes:
            query["scope"] = " ".join(self.scopes)
        if endpoints.jwks is not None:
            query["nonce"] = _nonce(code_verifier)
        separator = "&" if "?" in endpoints.authorization else "?"
        return HttpResponse.redirect(
            endpoints.authorization + separator + urllib.parse.urlencode(query)
        )

    async def complete(self, flow: SignInFlow, request: HttpRequest) -> HttpResponse:
        import httpx

        params = await _callback_params(request)
        state, code, refusal = params.get("state"), params.get("code"), params.get("error")
        if refusal and not state:
            return _refuse(f"The provider refused the sign-in: {refusal}")
        if not state or (not code and not refusal):
            return _refuse("The provider's answer has no state or no code")
        verifier_id = state.partition(".")[0]
        taken = await flow.store(
            "takeOAuthState", verifier=verifier_id, provider=self.id, state=state
        )
        if taken is None:
            return _refuse("The sign-in state is invalid, expired or was already used")
        back = _Back(taken["redirectTo"], v2=bool(taken.get("v2")))
        if taken.get("expired"):
            return back.error("expired", "The sign-in expired; start again")
        if refusal:
            reason = "access_denied" if refusal == "access_denied" else "oauth_error"
            return back.error(reason, f"The provider refused the sign-in: {refusal}")
        env = flow.ctx.env
        client_id, secret = self.credentials(env)
        async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client:
            try:
                endpoints = await self.endpoints(env)
                tokens = await _post_json(
                    client,
                    endpoints.token,
                    {
                        "grant_type": "authorization_code",
                        "code": str(code),
                        "redirect_uri": self.callback_url(flow),
                        "client_id": client_id,
                        "client_secret": secret,
                        "code_verifier": taken["codeVerifier"],
                    },
                )
                account_id, profile = await self.profile(
                    client, endpoints, tokens, taken["codeVerifier"], env, params
                )
            except (OAuthError, httpx.HTTPError) as e:
                return back.error(
                    "oauth_error", f"Could not complete the sign-in with {self.id}: {e}"
                )
        one_time = random_code(32)
        completed = await flow.store(
            "completeOAuth",
            verifier=verifier_id,
            provider=self.id,
            providerAccountId=account_id,
            profile=profile,
            code=one_time,
            lifetimeS=_CODE_LIFETIME_S,
        )
        if not completed:
            return back.error("expired", "The sign-in expired; start again")
        return back.code(one_time)


@dataclass(frozen=True)
class _Back:
    """The way back to the app from the callback, as the client that started expects it.

    0.0.x clients get ``?code=`` and an error page; 2.x clients get
    ``?convexAuthCode=`` or ``?convexAuthError=access_denied|expired|oauth_error``
    (their hooks report the error as ``flowError``).
    """

    redirect_to: str
    v2: bool

    def code(self, one_time: str) -> HttpResponse:
        name = "convexAuthCode" if self.v2 else "code"
        return HttpResponse.redirect(with_query_param(self.redirect_to, name, one_time))

    def error(self, reason: str, message: str) -> HttpResponse:
        if not self.v2:
            return _refuse(message)
        log.info("OAuth sign-in failed (%s): %s", reason, message)
        return HttpResponse.redirect(with_query_param(self.redirect_to, "convexAuthError", reason))


async def _callback_params(request: HttpRequest) -> dict[str, str]:
    """The provider's answer: the query of a redirect, or the fields of a form POST."""
    if request.method == "POST":
        try:
            form = await request.form()
        except HttpBodyError:  # not a form: an answer without state
            return {}
        return {k: v for k, v in form.multi_items() if isinstance(v, str)}
    return {k: v for k, v in request.query.multi_items() if isinstance(v, str)}


def _refuse(message: str, *, status: int = 400) -> HttpResponse:
    return HttpResponse(message, status=status, headers={"Cache-Control": "no-store"})


async def _post_json(client: Any, url: str, form: dict[str, str]) -> dict[str, Any]:
    response = await client.post(url, data=form, headers={"Accept": "application/json"})
    return _json_object(response, url)


async def _get_json(client: Any, url: str, access_token: str | None = None) -> Any:
    headers = {"Accept": "application/json"}
    if access_token is not None:
        headers["Authorization"] = f"Bearer {access_token}"
    response = await client.get(url, headers=headers)
    return _json_object(response, url, allow_list=True)


def _json_object(response: Any, url: str, *, allow_list: bool = False) -> Any:
    if response.status_code != 200:
        raise OAuthError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        body = response.json()
    except ValueError:
        raise OAuthError(f"{url} did not answer JSON") from None
    if isinstance(body, dict) and body.get("error"):
        raise OAuthError(f"{url} answered error {body.get('error')!r}")
    if not isinstance(body, dict) and not (allow_list and isinstance(body, list)):
        raise OAuthError(f"{url} answered {type(body).__name__}, expected a JSON object")
    return body


def _access_token(tokens: dict[str, Any]) -> str:
    token = tokens.get("access_token")
    if not isinstance(token, str) or not token:
        raise OAuthError("the token endpoint's answer has no access_token")
    return token


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class OIDC(OAuthProvider):
    """Any OpenID Connect provider, found by discovery at ``issuer``.

    Without ``issuer``, the ``AUTH_<ID>_ISSUER`` environment variable is used.
    """

    id: str = "oidc"
    issuer: str | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")

    def issuer_url(self, env: Any) -> str:
        issuer = self.issuer or env.get(_env_name(self.id, "ISSUER"))
        if not issuer:
            raise auth_error(
                "OAuthNotConfigured",
                f"Give OIDC(issuer=...) or set {_env_name(self.id, 'ISSUER')} for provider {self.id!r}",
            )
        return str(issuer).rstrip("/")

    async def endpoints(self, env: Any) -> Endpoints:
        import httpx

        issuer = self.issuer_url(env)
        url = f"{issuer}/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client:
                doc = await _get_json(client, url)
        except httpx.HTTPError as e:
            raise OAuthError(f"could not read {url}: {e}") from e
        try:
            return Endpoints(
                authorization=str(doc["authorization_endpoint"]),
                token=str(doc["token_endpoint"]),
                userinfo=_optional_str(doc.get("userinfo_endpoint")),
                jwks=str(doc["jwks_uri"]),
                issuer=str(doc.get("issuer") or issuer),
            )
        except (KeyError, TypeError) as e:
            raise OAuthError(f"{url} lacks {e}") from None

    async def profile(
        self,
        client: Any,
        endpoints: Endpoints,
        tokens: dict[str, Any],
        code_verifier: str,
        env: Any,
        callback: Mapping[str, str],
    ) -> tuple[str, dict[str, Any]]:
        import jwt

        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OAuthError("the token endpoint's answer has no id_token")
        assert endpoints.jwks is not None
        jwks = await _get_json(client, endpoints.jwks)
        client_id, _ = self.credentials(env)
        try:
            keys = jwt.PyJWKSet.from_dict(jwks)
            kid = jwt.get_unverified_header(id_token).get("kid")
            key = next(k for k in keys.keys if kid is None or k.key_id == kid)
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=["RS256", "ES256"],
                audience=client_id,
                issuer=endpoints.issuer,
                leeway=60,
            )
        except (jwt.PyJWTError, StopIteration) as e:
            raise OAuthError(f"the ID token is not valid: {type(e).__name__}: {e}") from None
        if claims.get("nonce") != _nonce(code_verifier):
            raise OAuthError("the ID token's nonce does not match this sign-in")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise OAuthError("the ID token has no subject")
        # Apple sends email_verified as the string "true"; anything else is not verified.
        verified = claims.get("email_verified") in (True, "true")
        email = _optional_str(claims.get("email")) if verified else None
        return subject, {
            "name": _optional_str(claims.get("name")),
            "email": email,
            "image": _optional_str(claims.get("picture")),
        }


def Google(id: str = "google") -> OIDC:
    """Google accounts (OIDC at https://accounts.google.com)."""
    return OIDC(id=id, issuer="https://accounts.google.com")


_APPLE_ISSUER = "https://appleid.apple.com"
_APPLE_SECRET_LIFETIME_S = 300


@dataclass(frozen=True)
class Apple(OIDC):
    """Sign in with Apple (OIDC at https://appleid.apple.com, answering by form POST).

    ``AUTH_APPLE_ID`` is the Services ID. The client secret is an ES256 JWT:
    minted for each sign-in (valid five minutes) from ``AUTH_APPLE_TEAM_ID``,
    ``AUTH_APPLE_KEY_ID`` and ``AUTH_APPLE_PRIVATE_KEY`` (the PEM text of the
    ``.p8`` key), or, when those are unset, ``AUTH_APPLE_SECRET``, a secret JWT
    made beforehand (Apple accepts them for six months at most). Apple sends
    the user's name only on the first sign-in, in the form it posts back.
    """

    id: str = "apple"
    issuer: str | None = _APPLE_ISSUER
    scopes: tuple[str, ...] = ("name", "email")
    extra_authorization_params: dict[str, str] = field(
        default_factory=lambda: {"response_mode": "form_post"}
    )
    callback_method: str = "POST"

    def credentials(self, env: Any) -> tuple[str, str]:
        import jwt

        client_id = env.get(_env_name(self.id, "ID"))
        team, key_id, key = (
            env.get(_env_name(self.id, n)) for n in ("TEAM_ID", "KEY_ID", "PRIVATE_KEY")
        )
        if client_id and team and key_id and key:
            now = int(time.time())
            claims = {
                "iss": team,
                "sub": client_id,
                "aud": self.issuer_url(env),
                "iat": now,
                "exp": now + _APPLE_SECRET_LIFETIME_S,
            }
            try:
                secret = jwt.encode(claims, key, algorithm="ES256", headers={"kid": key_id})
            except (ValueError, TypeError, jwt.PyJWTError) as e:
                raise auth_error(
                    "OAuthNotConfigured",
                    f"{_env_name(self.id, 'PRIVATE_KEY')} is not an EC private key in PEM "
                    f"form (the .p8 file from Apple): {type(e).__name__}",
                ) from None
            return client_id, secret
        secret = env.get(_env_name(self.id, "SECRET"))
        if not client_id or not secret:
            raise auth_error(
                "OAuthNotConfigured",
                f"Set {_env_name(self.id, 'ID')} (the Services ID) and either "
                f"{_env_name(self.id, 'TEAM_ID')}, {_env_name(self.id, 'KEY_ID')} and "
                f"{_env_name(self.id, 'PRIVATE_KEY')}, or {_env_name(self.id, 'SECRET')} "
                f"(a client secret JWT) for provider {self.id!r}",
            )
        return client_id, secret

    async def profile(
        self,
        client: Any,
        endpoints: Endpoints,
        tokens: dict[str, Any],
        code_verifier: str,
        env: Any,
        callback: Mapping[str, str],
    ) -> tuple[str, dict[str, Any]]:
        subject, profile = await super().profile(
            client, endpoints, tokens, code_verifier, env, callback
        )
        return subject, {**profile, "name": _apple_name(callback.get("user"))}


def _apple_name(user: str | None) -> str | None:
    """The name in the ``user`` field Apple posts on a first sign-in (JSON), or None."""
    try:
        name = json.loads(user or "null")["name"]
        parts = [name.get("firstName"), name.get("lastName")]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()) or None


@dataclass(frozen=True)
class GitHub(OAuthProvider):
    """GitHub accounts (OAuth apps or GitHub apps)."""

    id: str = "github"
    scopes: tuple[str, ...] = ("read:user", "user:email")

    async def endpoints(self, env: Any) -> Endpoints:
        return Endpoints(
            authorization="https://github.com/login/oauth/authorize",
            token="https://github.com/login/oauth/access_token",
            userinfo="https://api.github.com/user",
        )

    async def profile(
        self,
        client: Any,
        endpoints: Endpoints,
        tokens: dict[str, Any],
        code_verifier: str,
        env: Any,
        callback: Mapping[str, str],
    ) -> tuple[str, dict[str, Any]]:
        access = _access_token(tokens)
        assert endpoints.userinfo is not None
        user = await _get_json(client, endpoints.userinfo, access)
        if not isinstance(user, dict) or user.get("id") is None:
            raise OAuthError("GitHub's /user answer has no id")
        emails = await _get_json(client, f"{endpoints.userinfo}/emails", access)
        primary = next(
            (
                e.get("email")
                for e in emails
                if isinstance(e, dict) and e.get("primary") and e.get("verified")
            ),
            None,
        )
        return str(user["id"]), {
            "name": _optional_str(user.get("name")) or _optional_str(user.get("login")),
            "email": _optional_str(primary),
            "image": _optional_str(user.get("avatar_url")),
        }


def add_oauth_routes(auth: ConvexAuth, provider: OAuthProvider, http: HttpRouter) -> None:
    """``GET /api/auth/signin/<id>`` and ``GET /api/auth/callback/<id>``."""
    from syncline.accounts.setup import SignInFlow

    async def signin(ctx: Any, request: HttpRequest) -> HttpResponse:
        verifier_id = request.query.get("code")
        if not verifier_id:
            return _refuse("This sign-in link has no code; start from the app")
        return await provider.authorization_redirect(SignInFlow(ctx, auth), verifier_id)

    async def callback(ctx: Any, request: HttpRequest) -> HttpResponse:
        return await provider.complete(SignInFlow(ctx, auth), request)

    http.route(path=f"/api/auth/signin/{provider.id}", method="GET", handler=signin)
    http.route(
        path=f"/api/auth/callback/{provider.id}", method=provider.callback_method, handler=callback
    )
