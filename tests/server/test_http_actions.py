"""HTTP actions against real ``syncline serve`` / ``syncline dev`` processes, with httpx.

One production server and one dev server (module-scoped) serve the project
below on their site port and under ``/http/`` on their API port. Covered:
routing precedence, methods (HEAD and OPTIONS too), request bodies (bytes,
text, JSON, forms), headers, query parameters, status codes, streaming,
handler errors (message in dev only), Bearer JWT auth, and a webhook whose
mutation reaches a live subscriber.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import write_functions
from syncline._devtools import ServerProcess
from syncline.client import AsyncClient

pytestmark = pytest.mark.slow

ISSUER = "https://issuer.http-actions.test"
AUDIENCE = "http-actions-app"


class Issuer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
        self.jwks = {"keys": [jwk]}

    def token(self, subject: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "aud": AUDIENCE, "iat": now, "exp": now + 600}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})


def project_files(issuer: Issuer) -> dict[str, str]:
    provider = {
        "type": "custom_jwt",
        "issuer": ISSUER,
        "jwks": issuer.jwks,
        "algorithm": "RS256",
        "application_id": AUDIENCE,
    }
    return {
        "auth_config.py": f"providers = [{provider!r}]\n",
        "schema.py": """
            from syncline import define_schema, define_table, v

            schema = define_schema({"events": define_table({"kind": v.string()})})
        """,
        "events.py": """
            from syncline import internal_mutation, query, v

            @query
            def kinds(ctx):
                return [e["kind"] for e in ctx.db.query("events").collect()]

            @internal_mutation(args={"kind": v.string()})
            def record(ctx, kind):
                return ctx.db.insert("events", {"kind": kind})
        """,
        "http.py": """
            import asyncio

            from syncline import ConvexError, HttpResponse, HttpRouter, cors_headers, internal
            from syncline.functions.http.request import FormFile

            http = HttpRouter()

            def text(value):
                return HttpResponse(value, headers={"X-Route": value})

            @http.route(path="/a/exact", method="GET")
            async def exact(ctx, request):
                return text("exact")

            @http.route(path_prefix="/a/", method="GET")
            async def short_prefix(ctx, request):
                return text("prefix /a/")

            @http.route(path_prefix="/a/b/", method="GET")
            async def long_prefix(ctx, request):
                return text("prefix /a/b/")

            async def echo(ctx, request):
                return {
                    "method": request.method,
                    "path": request.path,
                    "url": request.url,
                    "query": {k: request.query.get_all(k) for k in request.query},
                    "contentType": request.headers.get("content-type"),
                    "custom": request.headers.get("x-custom"),
                    "text": await request.text(),
                }

            for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                http.route(path="/echo", method=method, handler=echo)

            @http.route(path="/echo", method="OPTIONS")
            async def preflight(ctx, request):
                return HttpResponse(status=204, headers=cors_headers("https://app.example"))

            @http.route(path="/json", method="POST")
            async def json_body(ctx, request):
                data = await request.json()
                return {"got": data, "type": type(data).__name__}

            @http.route(path="/bytes", method="POST")
            async def raw_bytes(ctx, request):
                body = await request.body()
                return HttpResponse(body[::-1], headers={"Content-Type": "application/octet-stream"})

            @http.route(path="/form", method="POST")
            async def form(ctx, request):
                parsed = await request.form()
                out = {}
                for name, value in parsed.multi_items():
                    if isinstance(value, FormFile):
                        value = {"file": value.filename, "type": value.content_type,
                                 "size": value.size}
                    out.setdefault(name, []).append(value)
                return out

            @http.route(path="/status", method="GET")
            async def status(ctx, request):
                code = int(request.query["code"])
                return HttpResponse({"status": code}, status=code,
                                    headers=[("X-Custom", "1"), ("Set-Cookie", "a=1"),
                                             ("Set-Cookie", "b=2")])

            @http.route(path="/boom", method="GET")
            async def boom(ctx, request):
                print("failing on purpose")
                raise ValueError("secret detail")

            @http.route(path="/convex-error", method="GET")
            async def convex_error(ctx, request):
                raise ConvexError({"why": "refused"})

            @http.route(path="/whoami", method="GET")
            async def whoami(ctx, request):
                identity = ctx.auth.get_user_identity()
                return {"subject": identity.subject if identity else None}

            async def ticks():
                for n in range(5):
                    yield f"tick {n}\\n"
                    await asyncio.sleep(0.01)

            @http.route(path="/stream", method="GET")
            async def stream(ctx, request):
                return HttpResponse(ticks(), headers={"Content-Type": "text/plain"})

            @http.route(path="/webhook", method="POST")
            async def webhook(ctx, request):
                event = await request.json()
                event_id = await ctx.run_mutation(internal.events.record, {"kind": event["kind"]})
                return HttpResponse({"id": event_id}, status=202)
        """,
    }


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def _start(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer, mode: str) -> Iterator[Any]:
    root = tmp_path_factory.mktemp(f"http-{mode}")
    write_functions(root / "functions", project_files(issuer))
    with ServerProcess(root, mode=mode) as server:
        yield server


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[ServerProcess]:
    yield from _start(tmp_path_factory, issuer, "serve")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[ServerProcess]:
    yield from _start(tmp_path_factory, issuer, "dev")


@pytest.fixture(params=["site", "api"])
def base(request: pytest.FixtureRequest, prod: ServerProcess) -> str:
    """HTTP actions answer on the site port and under /http/ on the API port alike."""
    return prod.site_url if request.param == "site" else f"{prod.url}/http"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def test_routing_precedence(http: httpx.Client, base: str) -> None:
    def route(path: str) -> str:
        response = http.get(base + path)
        assert response.status_code == 200, response.text
        return response.text

    assert route("/a/exact") == "exact"
    assert route("/a/exactly") == "prefix /a/"
    assert route("/a/b/c") == "prefix /a/b/"
    assert route("/a/b/") == "prefix /a/b/"
    assert route("/a/b") == "prefix /a/"
    assert route("/a/x/b/c") == "prefix /a/"
    missing = http.get(base + "/nowhere")
    assert missing.status_code == 404
    assert missing.text == "No HttpAction routed for /nowhere"
    # A method without a route is not found either (no automatic 405).
    assert http.post(base + "/a/exact").status_code == 404


def test_methods_head_and_options(http: httpx.Client, base: str) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        response = http.request(method, base + "/echo")
        assert response.status_code == 200
        assert response.json()["method"] == method
        assert response.json()["path"] == "/echo"
    get = http.get(base + "/a/exact")
    head = http.head(base + "/a/exact")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["x-route"] == "exact"
    assert head.headers["content-length"] == get.headers["content-length"] == "5"
    options = http.options(base + "/echo", headers={"Origin": "https://app.example"})
    assert options.status_code == 204
    assert options.headers["access-control-allow-origin"] == "https://app.example"
    # No CORS unless the handler adds it, even under /http/ on the API port.
    plain = http.get(base + "/echo", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_url_query_and_headers(http: httpx.Client, base: str, prod: ServerProcess) -> None:
    response = http.put(
        base + "/echo?tag=a&tag=b&q=hello%20world&empty=",
        headers={"X-Custom": "yes", "Content-Type": "text/plain"},
        content="body text",
    )
    data = response.json()
    assert data["query"] == {"tag": ["a", "b"], "q": ["hello world"], "empty": [""]}
    assert data["custom"] == "yes" and data["contentType"] == "text/plain"
    assert data["text"] == "body text"
    assert data["url"] == f"{base}/echo?tag=a&tag=b&q=hello%20world&empty="


def test_bodies(http: httpx.Client, base: str) -> None:
    payload = {"n": 1, "f": 2.5, "list": [None, True, "x"], "nested": {"k": "v"}}
    assert http.post(base + "/json", json=payload).json() == {"got": payload, "type": "dict"}
    raw = bytes(range(256)) * 100
    reversed_ = http.post(base + "/bytes", content=raw)
    assert reversed_.headers["content-type"] == "application/octet-stream"
    assert reversed_.content == raw[::-1]
    urlencoded = http.post(base + "/form", data={"name": "Ada", "tags": ["x", "y"]})
    assert urlencoded.json() == {"name": ["Ada"], "tags": ["x", "y"]}
    multipart = http.post(
        base + "/form",
        data={"title": "report"},
        files={"upload": ("report.pdf", b"%PDF-1.4" + b"\x00" * 100, "application/pdf")},
    )
    assert multipart.json() == {
        "title": ["report"],
        "upload": [{"file": "report.pdf", "type": "application/pdf", "size": 108}],
    }
    bad = http.post(
        base + "/json", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["code"] == "BadRequestBody"


def test_status_codes_and_response_headers(http: httpx.Client, base: str) -> None:
    for code in (200, 201, 302, 404, 418, 503):
        response = http.get(base + f"/status?code={code}", follow_redirects=False)
        assert response.status_code == code
        assert response.headers["x-custom"] == "1"
        assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    no_content = http.get(base + "/status?code=204")
    assert no_content.status_code == 204


def test_streaming(http: httpx.Client, base: str) -> None:
    with http.stream("GET", base + "/stream") as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        chunks = list(response.iter_text())
    assert "".join(chunks) == "".join(f"tick {n}\n" for n in range(5))


def test_errors_are_redacted_in_production(http: httpx.Client, base: str) -> None:
    response = http.get(base + "/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["code"].startswith("[Request ID: ") and body["code"].endswith("] Server Error")
    assert "secret detail" not in response.text and "trace" not in body
    convex = http.get(base + "/convex-error").json()
    assert convex["data"] == {"why": "refused"}


def test_errors_carry_the_message_in_dev(http: httpx.Client, dev: ServerProcess) -> None:
    for base in (dev.site_url, f"{dev.url}/http"):
        response = http.get(base + "/boom")
        assert response.status_code == 500
        body = response.json()
        assert body["code"].endswith("] Server Error: Uncaught ValueError: secret detail")
        assert "http.py" in body["trace"]


def test_bearer_tokens(http: httpx.Client, base: str, issuer: Issuer) -> None:
    token = issuer.token("user-42")
    signed_in = http.get(base + "/whoami", headers={"Authorization": f"Bearer {token}"})
    assert signed_in.json() == {"subject": "user-42"}
    assert http.get(base + "/whoami").json() == {"subject": None}
    forged = Issuer().token("intruder")
    rejected = http.get(base + "/whoami", headers={"Authorization": f"Bearer {forged}"})
    assert rejected.status_code == 401 and rejected.json()["code"] == "Unauthenticated"


def test_webhook_mutation_reaches_a_live_subscriber(prod: ServerProcess) -> None:
    async def main() -> None:
        async with AsyncClient(prod.url) as client:
            subscription = client.subscribe("events:kinds")
            seen = await asyncio.wait_for(subscription.__anext__(), 10)
            assert "from-webhook" not in seen
            async with httpx.AsyncClient(timeout=10.0) as http:
                response = await http.post(
                    prod.site_url + "/webhook", json={"kind": "from-webhook"}
                )
                assert response.status_code == 202
                assert response.json()["id"]
            while "from-webhook" not in seen:
                seen = await asyncio.wait_for(subscription.__anext__(), 10)
            await subscription.aclose()

    asyncio.run(main())


def test_site_port_serves_only_http_actions(http: httpx.Client, prod: ServerProcess) -> None:
    # The function API lives on the API port; the site port routes everything to http.py.
    response = http.post(prod.site_url + "/api/query", json={"path": "events:kinds", "args": {}})
    assert response.status_code == 404
    assert response.text == "No HttpAction routed for /api/query"


def test_server_json_points_at_the_server(prod: ServerProcess) -> None:
    import json

    record = json.loads((Path(prod.project) / ".syncline" / "server.json").read_text())
    assert record["url"] == prod.url and record["site_url"] == prod.site_url
