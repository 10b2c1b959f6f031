"""HttpRouter, HttpRequest, HttpResponse and CORS helpers; HTTP actions through TestBackend.

The router and the request/response classes are tested on their own; then
``TestBackend.fetch`` runs HTTP actions through the same dispatch the server
uses (real engine, in-process): the action ctx, errors, CORS, streaming.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conftest import MakeBackend, write_functions
from syncline import HttpRequest, HttpResponse, HttpRouter, cors_headers, http_action
from syncline.errors import FunctionDefinitionError
from syncline.functions.http.request import FormFile, Headers, HttpBodyError, RequestTooLarge
from syncline.functions.http.response import to_response
from syncline.functions.http.router import HttpAction
from syncline.functions.loader import load_functions


async def noop(ctx: Any, request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def other(ctx: Any, request: HttpRequest) -> HttpResponse:
    return HttpResponse("other")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------- definition


class TestRouteDefinition:
    def test_path_must_start_with_slash(self) -> None:
        with pytest.raises(FunctionDefinitionError, match="must start with '/'"):
            HttpRouter().route(path="hook", method="GET", handler=noop)

    @pytest.mark.parametrize("prefix", ["files/", "/files", "files"])
    def test_prefix_must_start_and_end_with_slash(self, prefix: str) -> None:
        with pytest.raises(FunctionDefinitionError, match="start and end with '/'"):
            HttpRouter().route(path_prefix=prefix, method="GET", handler=noop)

    def test_exactly_one_of_path_and_prefix(self) -> None:
        router = HttpRouter()
        with pytest.raises(FunctionDefinitionError, match="exactly one"):
            router.route(path="/a", path_prefix="/a/", method="GET", handler=noop)
        with pytest.raises(FunctionDefinitionError, match="exactly one"):
            router.route(method="GET", handler=noop)

    def test_duplicates_fail_at_definition(self) -> None:
        router = HttpRouter()
        router.route(path="/a", method="GET", handler=noop)
        router.route(path="/a", method="POST", handler=noop)  # another method: fine
        router.route(path_prefix="/a/", method="GET", handler=noop)  # a prefix: fine
        with pytest.raises(FunctionDefinitionError, match="defined twice"):
            router.route(path="/a", method="get", handler=other)
        with pytest.raises(FunctionDefinitionError, match="defined twice"):
            router.route(path_prefix="/a/", method="GET", handler=other)

    def test_methods(self) -> None:
        router = HttpRouter()
        for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            router.route(path="/m", method=method, handler=noop)
        with pytest.raises(FunctionDefinitionError, match="HEAD requests are answered by the GET"):
            router.route(path="/h", method="HEAD", handler=noop)
        with pytest.raises(FunctionDefinitionError, match="Unsupported HTTP method 'TRACE'"):
            router.route(path="/t", method="TRACE", handler=noop)

    def test_files_paths_are_reserved(self) -> None:
        with pytest.raises(FunctionDefinitionError, match="reserved"):
            HttpRouter().route(path="/.files/x", method="GET", handler=noop)
        with pytest.raises(FunctionDefinitionError, match="reserved"):
            HttpRouter().route(path_prefix="/.files/", method="GET", handler=noop)

    def test_handler_must_be_async(self) -> None:
        def sync_handler(ctx: Any, request: Any) -> str:
            return "x"

        with pytest.raises(FunctionDefinitionError, match="must be `async def"):
            HttpRouter().route(path="/s", method="GET", handler=sync_handler)
        with pytest.raises(FunctionDefinitionError, match="must be `async def"):
            http_action(sync_handler)

    def test_decorator_forms(self) -> None:
        http = HttpRouter()

        @http.route(path="/plain", method="GET")
        async def plain(ctx: Any, request: HttpRequest) -> str:
            return "plain"

        @http.route(path="/bare", method="GET")
        @http_action
        async def bare(ctx: Any, request: HttpRequest) -> str:
            return "bare"

        @http_action()
        async def called(ctx: Any, request: HttpRequest) -> str:
            return "called"

        http.route(path="/called", method="GET", handler=called)
        assert isinstance(bare, HttpAction) and isinstance(called, HttpAction)
        assert http.lookup("/plain", "GET").handler is plain  # type: ignore[union-attr]
        assert run(bare(None, HttpRequest("GET", "http://x/bare"))) == "bare"
        assert [(p, m) for p, m, _ in http.routes()] == [
            ("/bare", "GET"),
            ("/called", "GET"),
            ("/plain", "GET"),
        ]


class TestLookup:
    def make(self) -> HttpRouter:
        http = HttpRouter()
        http.route(path="/api/exact", method="GET", handler=noop)
        http.route(path_prefix="/api/", method="GET", handler=other)
        http.route(path_prefix="/api/deep/", method="GET", handler=noop)
        http.route(path_prefix="/", method="POST", handler=other)
        return http

    def test_exact_wins_over_prefix(self) -> None:
        match = self.make().lookup("/api/exact", "GET")
        assert match is not None and match.handler is noop and match.route == "/api/exact"

    def test_longest_prefix_wins(self) -> None:
        http = self.make()
        deep = http.lookup("/api/deep/x/y", "GET")
        assert deep is not None and deep.handler is noop and deep.route == "/api/deep/*"
        shallow = http.lookup("/api/other", "GET")
        assert shallow is not None and shallow.handler is other and shallow.route == "/api/*"
        # The prefix itself matches; the path without its trailing slash does not.
        assert http.lookup("/api/deep/", "GET").route == "/api/deep/*"  # type: ignore[union-attr]
        assert http.lookup("/api/deep", "GET").route == "/api/*"  # type: ignore[union-attr]

    def test_method_must_match(self) -> None:
        http = self.make()
        assert http.lookup("/api/exact", "PUT") is None
        assert http.lookup("/nothing", "GET") is None
        assert http.lookup("/anything/at/all", "POST").route == "/*"  # type: ignore[union-attr]

    def test_head_uses_get_routes(self) -> None:
        match = self.make().lookup("/api/exact", "HEAD")
        assert match is not None and match.method == "GET" and match.handler is noop

    def test_methods_for(self) -> None:
        http = self.make()
        assert http.methods_for("/api/exact") == ["GET", "HEAD", "POST"]
        assert http.methods_for("/elsewhere") == ["POST"]


# ---------------------------------------------------------------------- request


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


class TestHttpRequest:
    def test_url_path_query_headers(self) -> None:
        request = HttpRequest(
            "post",
            "http://example.com/a/b?x=1&x=2&empty=&y=%20z",
            [("Content-Type", "text/plain"), ("X-Multi", "a"), ("x-multi", "b")],
        )
        assert request.method == "POST"
        assert request.path == "/a/b"
        assert request.query["x"] == "1"
        assert request.query.get_all("x") == ["1", "2"]
        assert request.query["empty"] == "" and request.query["y"] == " z"
        assert list(request.query) == ["x", "empty", "y"]
        assert request.headers["content-type"] == request.headers["CONTENT-TYPE"] == "text/plain"
        assert request.headers["x-multi"] == "a, b"
        assert request.headers.get_all("X-MULTI") == ["a", "b"]
        assert "x-multi" in request.headers and request.headers.get("missing") is None

    def test_body_text_json(self) -> None:
        request = HttpRequest("POST", "http://x/", body=chunks(b'{"a": ', b"[1, 2.5]}"))
        assert run(request.json()) == {"a": [1, 2.5]}
        # The body is kept once read: every reader sees it.
        assert run(request.text()) == '{"a": [1, 2.5]}'
        assert run(request.body()) == b'{"a": [1, 2.5]}'

    def test_bad_json_is_a_value_error(self) -> None:
        request = HttpRequest("POST", "http://x/", body=b"{nope")
        with pytest.raises(ValueError, match="not valid JSON") as info:
            run(request.json())
        assert isinstance(info.value, HttpBodyError) and info.value.http_status == 400

    def test_text_replaces_invalid_utf8(self) -> None:
        assert run(HttpRequest("POST", "http://x/", body=b"ok\xff").text()) == "ok\ufffd"

    def test_stream(self) -> None:
        request = HttpRequest("POST", "http://x/", body=chunks(b"ab", b"", b"cd"))

        async def consume() -> list[bytes]:
            return [chunk async for chunk in request.stream()]

        assert run(consume()) == [b"ab", b"cd"]
        with pytest.raises(HttpBodyError, match="already consumed"):
            run(request.body())

    def test_size_limit(self) -> None:
        request = HttpRequest(
            "POST", "http://x/", body=chunks(b"x" * 6, b"y" * 6), max_body_bytes=10
        )
        with pytest.raises(RequestTooLarge) as info:
            run(request.body())
        assert info.value.http_status == 413
        with pytest.raises(RequestTooLarge):
            HttpRequest("POST", "http://x/", body=b"z" * 11, max_body_bytes=10)

    def test_urlencoded_form(self) -> None:
        request = HttpRequest(
            "POST",
            "http://x/",
            {"content-type": "application/x-www-form-urlencoded"},
            b"name=Ada+Lovelace&tag=a&tag=b&empty=",
        )
        form = run(request.form())
        assert form["name"] == "Ada Lovelace"
        assert form.get_all("tag") == ["a", "b"] and form["empty"] == ""

    def test_multipart_form(self) -> None:
        boundary = "XyZ123"
        body = (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="title"\r\n\r\n'
                "Hello \u00e9\r\n"
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="upload"; filename="a.bin"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + b"\x00\x01\xff\r\n"
            + f"--{boundary}--\r\n".encode()
        )
        request = HttpRequest(
            "POST", "http://x/", {"content-type": f"multipart/form-data; boundary={boundary}"}, body
        )
        form = run(request.form())
        assert form["title"] == "Hello \u00e9"
        upload = form["upload"]
        assert isinstance(upload, FormFile)
        assert (upload.filename, upload.content_type, upload.data) == (
            "a.bin",
            "application/octet-stream",
            b"\x00\x01\xff",
        )
        assert upload.size == 3

    def test_multipart_field_name_in_rfc2231_encoding(self) -> None:
        boundary = "XyZ123"
        body = (
            f"--{boundary}\r\n"
            "Content-Disposition: form-data; name*=utf-8''caf%C3%A9\r\n\r\n"
            "au lait\r\n"
            f"--{boundary}--\r\n"
        ).encode()
        request = HttpRequest(
            "POST", "http://x/", {"content-type": f"multipart/form-data; boundary={boundary}"}, body
        )
        form = run(request.form())
        assert dict(form) == {"caf\u00e9": "au lait"}

    def test_form_needs_a_form_content_type(self) -> None:
        request = HttpRequest("POST", "http://x/", {"content-type": "application/json"}, b"{}")
        with pytest.raises(HttpBodyError, match="'application/json'"):
            run(request.form())
        no_boundary = HttpRequest("POST", "http://x/", {"content-type": "multipart/form-data"}, b"")
        with pytest.raises(HttpBodyError, match="no boundary"):
            run(no_boundary.form())


# ---------------------------------------------------------------------- response


class TestHttpResponse:
    def test_bodies_and_default_content_types(self) -> None:
        assert HttpResponse().body == b"" and "content-type" not in HttpResponse().headers
        text = HttpResponse("h\u00e9")
        assert text.body == "h\u00e9".encode() and text.headers["content-type"].startswith(
            "text/plain"
        )
        data = HttpResponse({"a": [1, None]}, status=201)
        assert data.status == 201 and data.json() == {"a": [1, None]}
        assert data.headers["content-type"] == "application/json"
        assert HttpResponse([1]).body == b"[1]"
        raw = HttpResponse(b"\x00", headers={"Content-Type": "image/png"})
        assert raw.headers["content-type"] == "image/png"

    def test_explicit_content_type_wins(self) -> None:
        response = HttpResponse("<p>", headers={"Content-Type": "text/html"})
        assert response.headers.get_all("content-type") == ["text/html"]
        override = HttpResponse({"a": 1}, content_type="application/vnd.api+json")
        assert override.headers.get_all("content-type") == ["application/vnd.api+json"]

    def test_repeated_headers(self) -> None:
        response = HttpResponse(headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        assert response.headers.get_all("set-cookie") == ["a=1", "b=2"]

    def test_invalid(self) -> None:
        with pytest.raises(ValueError, match="100 to 599"):
            HttpResponse(status=99)
        with pytest.raises(ValueError, match="100 to 599"):
            HttpResponse(status=True)
        with pytest.raises(TypeError, match="got int"):
            HttpResponse(42)
        with pytest.raises(TypeError, match="not JSON-serializable"):
            HttpResponse({"b": b"bytes"})
        with pytest.raises(ValueError, match="line break"):
            HttpResponse(headers={"X": "a\r\nInjected: yes"})

    def test_stream(self) -> None:
        async def produce() -> AsyncIterator[bytes | str]:
            yield b"a"
            yield "b"
            yield b""

        response = HttpResponse(produce())
        assert response.is_stream
        with pytest.raises(TypeError, match="streamed"):
            _ = response.body

        async def collect() -> list[bytes]:
            return [chunk async for chunk in response.chunks()]

        assert run(collect()) == [b"a", b"b"]

    def test_redirect(self) -> None:
        response = HttpResponse.redirect("https://example.com/next", 303)
        assert response.status == 303 and response.headers["location"] == "https://example.com/next"

    def test_to_response(self) -> None:
        assert to_response("hi").headers["content-type"].startswith("text/plain")
        assert to_response(b"\x01").headers["content-type"] == "application/octet-stream"
        assert to_response({"a": 1}).json() == {"a": 1}
        response = HttpResponse("same")
        assert to_response(response) is response
        with pytest.raises(TypeError, match="forget to `return`"):
            to_response(None)
        with pytest.raises(TypeError, match="got int"):
            to_response(3)


class TestCors:
    def test_star(self) -> None:
        headers = cors_headers()
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
        assert headers["Access-Control-Max-Age"] == "86400"
        assert "Vary" not in headers

    def test_single_origin(self) -> None:
        headers = cors_headers("https://app.example.com", max_age=None)
        assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert headers["Vary"] == "Origin" and "Access-Control-Max-Age" not in headers

    def test_origin_list_checks_the_request(self) -> None:
        allowed = ["https://a.example", "https://b.example"]
        ok = HttpRequest("GET", "http://x/", {"Origin": "https://b.example"})
        headers = cors_headers(allowed, request=ok, expose_headers=["X-Total"])
        assert headers["Access-Control-Allow-Origin"] == "https://b.example"
        assert headers["Access-Control-Expose-Headers"] == "X-Total"
        assert "Access-Control-Allow-Methods" not in headers  # not a preflight
        stranger = HttpRequest("GET", "http://x/", {"Origin": "https://evil.example"})
        assert cors_headers(allowed, request=stranger) == {}
        with pytest.raises(ValueError, match="pass request="):
            cors_headers(allowed)

    def test_credentials_mirror_the_origin(self) -> None:
        request = HttpRequest("OPTIONS", "http://x/", {"Origin": "https://a.example"})
        headers = cors_headers(request=request, credentials=True)
        assert headers["Access-Control-Allow-Origin"] == "https://a.example"
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert "Access-Control-Allow-Methods" in headers  # OPTIONS: a preflight


def test_importing_the_user_api_loads_no_server_or_database() -> None:
    code = (
        "import sys\n"
        "from syncline import HttpRouter, HttpResponse, http_action, cors_headers\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'httpx')"
        " or m.startswith(('syncline.database', 'syncline.server'))]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_headers_reject_non_strings() -> None:
    with pytest.raises(TypeError, match="must be strings"):
        Headers({"X-Count": 3})  # type: ignore[dict-item]


# ---------------------------------------------------------------------- loader


def test_loader_requires_an_http_router(tmp_path: Any) -> None:
    root = write_functions(tmp_path / "functions", {"http.py": "http = {'/x': 1}\n"})
    with pytest.raises(FunctionDefinitionError, match="must be an HttpRouter"):
        load_functions(root)


def test_http_actions_are_not_callable_functions(tmp_path: Any) -> None:
    root = write_functions(
        tmp_path / "functions",
        {
            "hooks.py": """
                from syncline import http_action

                @http_action
                async def hook(ctx, request):
                    return "x"
            """,
            "http.py": """
                from syncline import HttpRouter
                from .hooks import hook

                http = HttpRouter()
                http.route(path="/hook", method="POST", handler=hook)
            """,
        },
    )
    registry = load_functions(root)
    assert registry.functions == {}
    assert registry.http.lookup("/hook", "POST") is not None


# ---------------------------------------------------------------------- through the engine

APP = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({"events": define_table({"kind": v.string()})})
    """,
    "events.py": """
        from syncline import internal_mutation, query, v

        @internal_mutation(args={"kind": v.string()})
        def record(ctx, kind):
            return ctx.db.insert("events", {"kind": kind})

        @query
        def kinds(ctx):
            return [e["kind"] for e in ctx.db.query("events").collect()]
    """,
    "http.py": """
        import logging

        from syncline import ConvexError, HttpResponse, HttpRouter, http_action, internal

        http = HttpRouter()
        log = logging.getLogger(__name__)

        @http.route(path="/events", method="POST")
        async def record(ctx, request):
            body = await request.json()
            event_id = await ctx.run_mutation(internal.events.record, {"kind": body["kind"]})
            kinds = await ctx.run_query("events:kinds")
            return HttpResponse({"id": event_id, "kinds": kinds}, status=201)

        @http.route(path="/whoami", method="GET")
        async def whoami(ctx, request):
            identity = ctx.auth.get_user_identity()
            return {"subject": identity.subject if identity else None}

        @http.route(path="/env", method="GET")
        async def env(ctx, request):
            return {"value": ctx.env.get(request.query.get("name", ""))}

        @http.route(path="/extra", method="GET")
        async def extra(ctx, request):
            return {"extra": ctx.extra}

        @http.route(path="/boom", method="GET")
        async def boom(ctx, request):
            log.info("about to fail")
            raise RuntimeError("the handler broke")

        @http.route(path="/convex-error", method="GET")
        async def convex_error(ctx, request):
            raise ConvexError({"reason": "nope"})

        @http.route(path="/nothing", method="GET")
        async def nothing(ctx, request):
            pass

        @http.route(path="/json-body", method="POST")
        async def json_body(ctx, request):
            return await request.json()

        async def numbers():
            for n in range(3):
                yield f"{n}\\n"

        @http.route(path="/stream", method="GET")
        async def stream(ctx, request):
            return HttpResponse(numbers(), headers={"Content-Type": "text/plain"})

        @http.route(path_prefix="/public/", method="GET")
        async def public(ctx, request):
            return HttpResponse("public", headers={"X-Total": "3"})

        @http.route(path_prefix="/public/", method="POST")
        async def public_post(ctx, request):
            raise ValueError("no")

        http.cors(path_prefix="/public/", origin=["https://app.example"], expose_headers=["X-Total"])
    """,
}


@pytest.fixture
def backend(make_backend: MakeBackend) -> Any:
    t = make_backend(APP)
    # A ctx member another service registers for actions also reaches HTTP actions.
    t.app.executor.register_ctx_member(
        "extra", lambda kind, tx, identity: f"for {kind}" if kind == "action" else None
    )
    return t


class TestThroughTheEngine:
    def test_runs_queries_and_mutations(self, backend: Any) -> None:
        response = backend.fetch("/events", method="POST", body={"kind": "signup"})
        assert response.status == 201
        assert response.json()["kinds"] == ["signup"]
        assert backend.query("events:kinds") == ["signup"]

    def test_ctx_members_env_and_auth(self, backend: Any) -> None:
        assert backend.fetch("/extra").json() == {"extra": "for action"}
        backend.set_env("API_TOKEN", "t0k3n")
        assert backend.fetch("/env?name=API_TOKEN").json() == {"value": "t0k3n"}
        assert backend.fetch("/whoami").json() == {"subject": None}
        alice = backend.with_identity({"subject": "alice"})
        assert alice.fetch("/whoami").json() == {"subject": "alice"}

    def test_not_a_jwt_bearer_token_does_not_fail_the_request(self, backend: Any) -> None:
        headers = {"Authorization": "Bearer webhook-shared-secret"}
        assert backend.fetch("/env?name=X", headers=headers).json() == {"value": None}
        # ...but asking who the caller is reports why the token was rejected.
        response = backend.fetch("/whoami", headers=headers)
        assert response.status == 401
        assert response.json()["code"] == "Unauthenticated"
        assert "malformed token" in response.json()["message"]

    def test_unknown_route(self, backend: Any) -> None:
        response = backend.fetch("/missing", method="DELETE")
        assert response.status == 404
        assert response.text() == "No HttpAction routed for /missing"

    def test_errors_in_dev_and_in_production(self, backend: Any) -> None:
        dev = backend.fetch("/boom").json()
        assert dev["code"].startswith("[Request ID: ")
        assert dev["code"].endswith("] Server Error: Uncaught RuntimeError: the handler broke")
        assert "in boom" not in dev["trace"] and "at boom (" in dev["trace"]
        backend.app.dev = False
        prod = backend.fetch("/boom")
        assert prod.status == 500
        assert prod.json()["code"].endswith("] Server Error")
        assert "trace" not in prod.json()
        # ConvexError data always reaches the caller.
        convex = backend.fetch("/convex-error").json()
        assert convex["data"] == {"reason": "nope"}
        assert "Uncaught ConvexError" in convex["code"]

    def test_handler_must_return_a_response(self, backend: Any) -> None:
        response = backend.fetch("/nothing")
        assert response.status == 500
        assert "got NoneType" in response.json()["code"]

    def test_bad_request_bodies_are_the_callers_fault(self, backend: Any) -> None:
        response = backend.fetch("/json-body", method="POST", body="{not json")
        assert response.status == 400
        assert response.json()["code"] == "BadRequestBody"

    def test_streaming_and_head(self, backend: Any) -> None:
        streamed = backend.fetch("/stream")
        assert streamed.status == 200 and streamed.text() == "0\n1\n2\n"
        head = backend.fetch("/stream", method="HEAD")
        assert head.status == 200 and head.body == b""
        assert head.headers["content-type"] == "text/plain"

    def test_cors_routes(self, backend: Any) -> None:
        origin = {"Origin": "https://app.example"}
        preflight = backend.fetch(
            "/public/x",
            method="OPTIONS",
            headers={**origin, "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status == 204
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert preflight.headers["access-control-allow-methods"] == "GET, HEAD, POST, OPTIONS"
        response = backend.fetch("/public/x", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert response.headers["access-control-expose-headers"] == "X-Total"
        # Error responses of covered routes carry the headers too (the browser can read them).
        failed = backend.fetch("/public/x", method="POST", headers=origin)
        assert failed.status == 500
        assert failed.headers["access-control-allow-origin"] == "https://app.example"
        # Other origins get nothing; uncovered routes get nothing.
        stranger = backend.fetch("/public/x", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
        assert "access-control-allow-origin" not in backend.fetch("/env", headers=origin).headers

    def test_afetch_inside_a_running_loop(self, backend: Any) -> None:
        async def main() -> None:
            response = await backend.afetch("/env?name=NONE")
            assert response.json() == {"value": None}
            # The blocking form also works from inside a loop (it runs on its own thread).
            assert backend.fetch("/env?name=NONE").json() == {"value": None}

        asyncio.run(main())
