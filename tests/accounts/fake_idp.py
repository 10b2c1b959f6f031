"""A small OpenID Connect provider for tests, on a real socket (stdlib HTTP server in a thread).

It approves every authorization request at once (no login page) for the one
user it knows, and checks what a real provider checks: the client id, secret
and redirect URI, the PKCE verifier (S256), and that a code is used once.
``FakeIdP.refusals`` records why it refused requests.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "syncline-test-client"
CLIENT_SECRET = "test-secret-" + "x" * 20
APPLE_TEAM_ID = "FAKETEAM01"


def _auto_post(url: str, fields: dict[str, str]) -> str:
    """An HTML page that posts ``fields`` to ``url`` (``response_mode=form_post``)."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return (
        f'<html><body onload="document.forms[0].submit()"><form method="post" '
        f'action="{html.escape(url)}">{inputs}</form></body></html>'
    )


@dataclass
class _Grant:
    redirect_uri: str
    challenge: str
    nonce: str | None


@dataclass
class FakeIdP:
    subject: str = "fake-user-1"
    name: str = "Grace Hopper"
    email: str = "grace@example.com"
    grants: dict[str, _Grant] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    #: answer authorization requests as a user who said no (``error=access_denied``)
    deny: bool = False
    #: behave as Sign in with Apple: the client secret is an ES256 JWT of this team's key,
    #: the name is posted with the answer (first sign-in) instead of being in the ID token
    apple_key: Any = None

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeIdP:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def env(self, provider_id: str = "fake") -> dict[str, str]:
        upper = provider_id.upper()
        return {
            f"AUTH_{upper}_ID": CLIENT_ID,
            f"AUTH_{upper}_SECRET": CLIENT_SECRET,
            f"AUTH_{upper}_ISSUER": self.issuer,
        }

    # -- the endpoints -------------------------------------------------------

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
        }

    def _jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": "fake-1", "alg": "RS256", "use": "sig"}]}

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            self.refusals.append("authorize: bad client or PKCE method")
            return 400, {}, {"error": "invalid_request"}
        if self.deny:
            answer: dict[str, str] = {"error": "access_denied", "state": query["state"]}
            return (
                302,
                {"Location": f"{query['redirect_uri']}?{urllib.parse.urlencode(answer)}"},
                None,
            )
        code = secrets.token_urlsafe(16)
        self.grants[code] = _Grant(
            query["redirect_uri"], query["code_challenge"], query.get("nonce")
        )
        answer = {"code": code, "state": query["state"]}
        if query.get("response_mode") == "form_post":
            if self.apple_key is not None:
                first, _, last = self.name.partition(" ")
                answer["user"] = json.dumps({"name": {"firstName": first, "lastName": last}})
            return 200, {"Content-Type": "text/html"}, _auto_post(query["redirect_uri"], answer)
        target = query["redirect_uri"] + "?" + urllib.parse.urlencode(answer)
        return 302, {"Location": target}, None

    def _client_secret_ok(self, secret: str | None) -> bool:
        if self.apple_key is None:
            return secret == CLIENT_SECRET
        try:
            claims = jwt.decode(
                secret or "",
                self.apple_key.public_key(),
                algorithms=["ES256"],
                audience=self.issuer,
                issuer=APPLE_TEAM_ID,
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("sub") == CLIENT_ID)

    def apple_env(self, provider_id: str = "apple") -> dict[str, str]:
        """The environment of an Apple provider: a team's key instead of a client secret."""
        from cryptography.hazmat.primitives import serialization

        upper = provider_id.upper()
        pem = self.apple_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            f"AUTH_{upper}_ID": CLIENT_ID,
            f"AUTH_{upper}_TEAM_ID": APPLE_TEAM_ID,
            f"AUTH_{upper}_KEY_ID": "fake-key-1",
            f"AUTH_{upper}_PRIVATE_KEY": pem.decode(),
            f"AUTH_{upper}_ISSUER": self.issuer,
        }

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        grant = self.grants.pop(form.get("code", ""), None)
        if grant is None:
            self.refusals.append("token: unknown or used code")
            return 400, {}, {"error": "invalid_grant"}
        if form.get("client_id") != CLIENT_ID or not self._client_secret_ok(
            form.get("client_secret")
        ):
            self.refusals.append("token: bad client credentials")
            return 401, {}, {"error": "invalid_client"}
        if form.get("redirect_uri") != grant.redirect_uri:
            self.refusals.append("token: redirect_uri differs")
            return 400, {}, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        if digest.decode() != grant.challenge:
            self.refusals.append("token: PKCE verifier does not match")
            return 400, {}, {"error": "invalid_grant"}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": self.subject,
            "iat": now,
            "exp": now + 300,
            "email": self.email,
            "email_verified": "true" if self.apple_key is not None else True,
            "nonce": grant.nonce,
        }
        if self.apple_key is None:
            claims["name"] = self.name
        id_token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "fake-1"})
        return (
            200,
            {},
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "id_token": id_token,
            },
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
                if isinstance(body, str):
                    data = body.encode()
                else:
                    data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Type" not in headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    self._answer(200, {}, idp._discovery())
                elif url.path == "/jwks":
                    self._answer(200, {}, idp._jwks())
                elif url.path == "/authorize":
                    self._answer(*idp._authorize(query))
                else:
                    self._answer(404, {}, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if urllib.parse.urlsplit(self.path).path == "/token":
                    self._answer(*idp._token(form))
                else:
                    self._answer(404, {}, {"error": "not_found"})

        return Handler
