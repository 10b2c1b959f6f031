"""The HTTP function API (ConvexHttpClient, the legacy Python HTTP client, the CLI)."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest

from server.conftest import (
    ADMIN_KEY,
    ISSUER,
    Keys,
    MakeServer,
    Server,
    auth_files,
)
from syncline.__about__ import __version__
from syncline.sync.protocol import decode_ts


def api_files(keys: Keys) -> dict[str, str]:
    return {
        **auth_files(keys),
        "tasks.py": """
            from syncline import internal_mutation, query


            @query
            def list(ctx):
                return ["a task"]


            @internal_mutation
            def reset(ctx):
                return "reset"
        """,
        "admin/users.py": """
            from syncline import query, v


            @query(args={"name": v.string()})
            def get(ctx, name):
                return {"name": name}
        """,
    }


@pytest.fixture
def server(make_server: MakeServer, keys: Keys) -> Server:
    return make_server(api_files(keys))


def post(server: Server, endpoint: str, body: Any, **kwargs: Any) -> Any:
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return server.client.post(endpoint, content=content, headers=headers, **kwargs)


def call(server: Server, endpoint: str, path: str, args: Any = None, **kwargs: Any) -> Any:
    body = {"path": path, "format": kwargs.pop("fmt", "convex_encoded_json")}
    if args is not None:
        body["args"] = args
    response = post(server, endpoint, body, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("args", [{"channel": "a"}, [{"channel": "a"}]], ids=["object", "array"])
def test_both_args_shapes(server: Server, args: Any) -> None:
    assert call(server, "/api/mutation", "messages:send", {"channel": "a", "body": "x"})[
        "status"
    ] == ("success")
    body = call(server, "/api/query", "messages:list", args)
    assert body == {"status": "success", "value": ["x"], "logLines": ["[LOG] listing a"]}


def test_missing_args_mean_no_args(server: Server) -> None:
    assert call(server, "/api/query", "messages:total")["value"] == 0.0


def test_floats_have_a_decimal_point(server: Server) -> None:
    response = post(server, "/api/query", {"path": "messages:total", "args": {}, "format": "json"})
    assert '"value":0.0' in response.text
    response = post(
        server,
        "/api/action",
        {"path": "messages:double", "args": {"x": 2}, "format": "convex_encoded_json"},
    )
    assert '"value":4.0' in response.text


def test_encoded_and_clean_json_formats(server: Server) -> None:
    encoded = call(server, "/api/query", "messages:shapes", {}, fmt="convex_encoded_json")["value"]
    assert encoded["int64"] == {"$integer": "BwAAAAAAAAA="}
    assert encoded["bytes"] == {"$bytes": "AQI="}
    assert encoded["nan"] == {"$float": "AAAAAAAA+H8="}
    assert encoded["int"] == 3.0
    assert call(server, "/api/query", "messages:shapes", {}, fmt="convex_json")["value"] == encoded

    clean = call(server, "/api/query", "messages:shapes", {}, fmt="json")["value"]
    assert clean["int64"] == "7"  # int64 as a decimal string
    assert clean["big"] == str(2**40)
    assert clean["bytes"] == "AQI="
    assert clean["nan"] == "NaN"
    assert clean["float"] == 2.0
    assert call(server, "/api/query", "messages:shapes", {}, fmt="convex_clean_json")["value"] == (
        clean
    )
    # No format: clean JSON, as the backend's default for current clients.
    body = post(server, "/api/query", {"path": "messages:shapes", "args": {}}).json()
    assert body["value"]["int64"] == "7"


def test_int64_args_in_either_format(server: Server) -> None:
    # Args are always read as encoded JSON: $integer works whatever the output format.
    body = call(server, "/api/action", "messages:double", {"x": 1.25}, fmt="json")
    assert body["value"] == 2.5


def test_error_shapes(server: Server) -> None:
    plain = call(server, "/api/mutation", "messages:fail", {"channel": "a"})
    assert plain["status"] == "error"
    assert "Uncaught ValueError: mutation boom" in plain["errorMessage"]
    assert "errorData" not in plain
    assert isinstance(plain["logLines"], list)

    convex = call(server, "/api/mutation", "messages:convex_fail", {"channel": "a"})
    assert convex["status"] == "error"
    assert convex["errorData"] == {"why": "bad", "n": {"$integer": "AwAAAAAAAAA="}}
    clean = call(server, "/api/mutation", "messages:convex_fail", {"channel": "a"}, fmt="json")
    assert clean["errorData"] == {"why": "bad", "n": "3"}

    action = call(server, "/api/action", "messages:convex_nope", {})
    assert action["errorData"] == "action says no"
    query = call(server, "/api/query", "messages:boom", {})
    assert query["status"] == "error" and "errorData" not in query

    missing = call(server, "/api/query", "messages:nope", {})
    assert missing["status"] == "error"
    assert "Could not find public function for 'messages:nope'" in missing["errorMessage"]
    internal = call(server, "/api/query", "messages:secret", {})
    assert "Could not find public function for 'messages:secret'" in internal["errorMessage"]
    wrong_kind = call(server, "/api/mutation", "messages:total", {})
    assert "as Mutation, but it is defined as Query" in wrong_kind["errorMessage"]
    bad_args = call(server, "/api/query", "messages:count", {"channel": 1})
    assert "ArgumentValidationError" in bad_args["errorMessage"]
    two_args = call(server, "/api/query", "messages:count", [{}, {}])
    assert two_args["status"] == "error"
    # Nothing was written by the failed mutations.
    assert call(server, "/api/query", "messages:count", {"channel": "a"})["value"] == 0.0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "BadJsonBody"),
        ("[1, 2]", "BadJsonBody"),
        ({"path": 5, "args": {}}, "BadPath"),
        ({"path": "messages:total", "format": "xml"}, "BadFormat"),
    ],
)
def test_request_errors_are_4xx_code_and_message(server: Server, body: Any, code: str) -> None:
    response = post(server, "/api/query", body)
    assert response.status_code == 400
    payload = response.json()
    assert set(payload) == {"code", "message"}
    assert payload["code"] == code
    assert payload["message"]


def test_oversized_body(server: Server) -> None:
    response = post(server, "/api/mutation", "x" * (16 * 1024 * 1024 + 2001))
    assert response.status_code == 413
    assert response.json()["code"] == "RequestTooLarge"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Basic dXNlcjpwYXNz", "InvalidAuthHeader"),
        ("Bearer", "InvalidAuthHeader"),
        ("Bearer not-a-jwt", "Unauthenticated"),
        ("Convex wrong-key", "BadAdminKey"),
    ],
)
def test_bad_authorization_headers(server: Server, header: str, code: str) -> None:
    response = post(
        server,
        "/api/query",
        {"path": "messages:total", "args": {}},
        headers={"Authorization": header},
    )
    assert response.status_code == 401
    payload = response.json()
    assert payload["code"] == code
    assert "wrong-key" not in payload["message"]  # never echo credentials


def test_bearer_token(server: Server, keys: Keys) -> None:
    headers = {"Authorization": f"Bearer {keys.token('user-a')}"}
    assert call(server, "/api/query", "who:me", {}, headers=headers)["value"] == "user-a"
    assert call(server, "/api/query", "who:me", {})["value"] is None
    expired = post(
        server,
        "/api/query",
        {"path": "who:me", "args": {}},
        headers={"Authorization": f"Bearer {keys.token(now=time.time() - 7200)}"},
    )
    assert expired.status_code == 401
    assert "expired" in expired.json()["message"]
    # A Python-style mutation reads the caller too.
    mutation = call(server, "/api/mutation", "whoami:token_identifier", {}, headers=headers)
    assert mutation["value"] == f"{ISSUER}|user-a"


def test_admin_key_header(server: Server) -> None:
    admin = {"Authorization": f"Convex {ADMIN_KEY}"}
    # The admin may call internal functions.
    assert call(server, "/api/query", "messages:secret", {}, headers=admin)["value"] == (
        "internal only"
    )
    assert call(server, "/api/query", "who:me", {}, headers=admin)["value"] is None
    acting = base64.b64encode(json.dumps({"issuer": ISSUER, "subject": "ghost"}).encode())
    as_user = {"Authorization": f"Convex {ADMIN_KEY}:{acting.decode()}"}
    assert call(server, "/api/query", "who:me", {}, headers=as_user)["value"] == "ghost"
    # The `adminKey` query parameter works when there is no header.
    by_param = call(server, f"/api/query?adminKey={ADMIN_KEY}", "messages:secret", {})
    assert by_param["value"] == "internal only"


def test_api_function_is_admin_only_and_runs_internal_functions(server: Server) -> None:
    body = {"path": "tasks:reset", "args": {}, "format": "convex_encoded_json"}
    anonymous = post(server, "/api/function", body)
    assert anonymous.status_code in (401, 403)
    assert set(anonymous.json()) == {"code", "message"}
    wrong = post(server, "/api/function", body, headers={"Authorization": "Convex nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "BadAdminKey"

    admin = {"Authorization": f"Convex {ADMIN_KEY}"}
    response = post(server, "/api/function", body, headers=admin)
    assert response.status_code == 200
    assert response.json() == {"status": "success", "value": "reset", "logLines": []}
    # Any kind: a query and an action by the same endpoint.
    query = post(
        server,
        "/api/function",
        {"path": "messages:secret", "args": {}, "format": "convex_encoded_json"},
        headers=admin,
    )
    assert query.json()["value"] == "internal only"
    action = post(
        server,
        "/api/function",
        {"path": "messages:double", "args": {"x": 1.5}, "format": "json"},
        headers=admin,
    )
    assert action.json()["value"] == 3.0
    missing = post(server, "/api/function", {"path": "tasks:nope", "args": {}}, headers=admin)
    assert missing.status_code == 404
    assert missing.json()["code"] == "FunctionNotFound"


def test_api_run(server: Server) -> None:
    response = post(server, "/api/run/tasks/list", {"args": {}})
    assert response.status_code == 200
    assert response.json()["value"] == ["a task"]
    nested = post(server, "/api/run/admin/users/get", {"args": {"name": "ada"}, "format": "json"})
    assert nested.json()["value"] == {"name": "ada"}
    mutation = post(server, "/api/run/messages/send", {"args": {"channel": "r", "body": "b"}})
    assert mutation.json()["status"] == "success"
    internal = post(server, "/api/run/tasks/reset", {"args": {}})
    assert internal.status_code == 404
    assert "Could not find public function for 'tasks:reset'" in internal.json()["message"]
    as_admin = post(
        server,
        "/api/run/tasks/reset",
        {"args": {}},
        headers={"Authorization": f"Convex {ADMIN_KEY}"},
    )
    assert as_admin.json()["value"] == "reset"


def test_cors_preflight_mirrors_the_origin(server: Server) -> None:
    origin = "https://app.example.com"
    response = server.client.options(
        "/api/query",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,convex-client,authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-max-age"] == "86400"
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("content-type", "convex-client", "authorization"):
        assert header in allowed
    # The actual request also carries the mirrored origin.
    actual = post(
        server,
        "/api/query",
        {"path": "messages:total", "args": {}},
        headers={"Origin": "http://localhost:5173"},
    )
    assert actual.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert actual.headers["access-control-allow-credentials"] == "true"


def test_version(server: Server) -> None:
    response = server.client.get("/version")
    assert response.status_code == 200
    assert response.text == __version__


def test_double_slash_paths(server: Server) -> None:
    # The JS HTTP client turns a deployment URL ending in `/` into `//api/query`.
    response = post(
        server, "http://testserver//api/query", {"path": "messages:total", "args": [{}]}
    )
    assert response.status_code == 200
    assert response.json()["value"] == 0.0


def test_query_ts_and_debug_event(server: Server) -> None:
    sent = call(server, "/api/mutation", "messages:send", {"channel": "a", "body": "x"})
    assert sent["status"] == "success"
    response = server.client.post("/api/query_ts")
    assert response.status_code == 200
    assert decode_ts(response.json()["ts"]) == server.app.database.last_ts
    event = post(server, "/api/debug_event", {"event": "LongWebsocketDisconnect"})
    assert event.status_code == 200


def test_http_writes_reach_websocket_subscribers(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:list", {"channel": "h"})
    ws.transition()
    call(server, "/api/mutation", "messages:send", {"channel": "h", "body": "via http"})
    ws.until(lambda m: ws.state.results[0] == ("ok", ["via http"]))


# ------------------------------------------------------------ the HTTP contract, pinned
# The hot endpoints have a lean path of their own: these pin what they answer
# (status, body, headers) on every branch, whichever code serves them.

ENDPOINTS = ["/api/query", "/api/mutation", "/api/action"]
REQUEST_ID = re.compile(r"^\[Request ID: [0-9a-f]{16}\] Server Error")
ORIGIN = "https://app.example.com"


@pytest.mark.parametrize(
    ("endpoint", "path", "args", "encoded", "clean"),
    [
        ("/api/query", "messages:shapes", {}, {"$integer": "BwAAAAAAAAA="}, "7"),
        ("/api/mutation", "messages:send", {"channel": "f", "body": "b"}, None, None),
        ("/api/action", "messages:double", {"x": 1.5}, 3.0, 3.0),
    ],
)
def test_success_bodies_in_both_formats(
    server: Server, endpoint: str, path: str, args: Any, encoded: Any, clean: Any
) -> None:
    for fmt, expected in (("convex_encoded_json", encoded), ("json", clean)):
        response = post(server, endpoint, {"path": path, "args": args, "format": fmt})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)
        body = response.json()
        assert set(body) == {"status", "value", "logLines"}
        assert body["status"] == "success"
        if endpoint == "/api/query":
            assert body["value"]["int64"] == expected
        elif endpoint == "/api/mutation":
            assert isinstance(body["value"], str)  # the new document's id
            assert body["logLines"] == ["[LOG] sending b"]
        else:
            assert body["value"] == expected
            assert body["logLines"] == ["[LOG] doubling"]


@pytest.mark.parametrize(
    ("endpoint", "path", "args"),
    [
        ("/api/query", "messages:boom", {}),
        ("/api/mutation", "messages:fail", {"channel": "a"}),
        ("/api/action", "messages:plain_nope", {}),
    ],
)
def test_function_errors_carry_a_request_id(
    server: Server, endpoint: str, path: str, args: Any
) -> None:
    response = post(server, endpoint, {"path": path, "args": args})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"status", "errorMessage", "logLines"}
    assert body["status"] == "error"
    assert REQUEST_ID.match(body["errorMessage"]), body["errorMessage"]
    assert "Uncaught" in body["errorMessage"]  # dev: the error itself is shown
    again = post(server, endpoint, {"path": path, "args": args}).json()["errorMessage"]
    assert again[:34] != body["errorMessage"][:34]  # a new id for every request


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        ("/api/query", "messages:convex_boom"),
        ("/api/mutation", "messages:convex_fail"),
        ("/api/action", "messages:convex_nope"),
    ],
)
def test_convex_errors_carry_their_data(server: Server, endpoint: str, path: str) -> None:
    args = {"channel": "a"} if endpoint == "/api/mutation" else {}
    body = post(server, endpoint, {"path": path, "args": args, "format": "json"}).json()
    assert set(body) == {"status", "errorMessage", "errorData", "logLines"}
    assert REQUEST_ID.match(body["errorMessage"])
    assert "Uncaught ConvexError" in body["errorMessage"]
    assert body["errorData"] is not None


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unknown_functions_are_function_errors(server: Server, endpoint: str) -> None:
    response = post(server, endpoint, {"path": "nothing:here", "args": {}})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "error"
    assert REQUEST_ID.match(body["errorMessage"])
    assert "Could not find public function for 'nothing:here'" in body["errorMessage"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "BadJsonBody"),
        ("[1, 2]", "BadJsonBody"),
        ('"text"', "BadJsonBody"),
        (b"\xff\xfe", "BadJsonBody"),
        ("", "BadPath"),
        ({}, "BadPath"),
        ({"path": 5, "args": {}}, "BadPath"),
        ({"path": None}, "BadPath"),
        ({"path": "messages:total", "format": "xml"}, "BadFormat"),
        ({"path": "messages:total", "format": 7}, "BadFormat"),
    ],
)
def test_request_errors_on_every_endpoint(
    server: Server, endpoint: str, body: Any, code: str
) -> None:
    response = post(server, endpoint, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"code", "message"}
    assert payload["code"] == code
    assert payload["message"]


def test_request_error_messages(server: Server) -> None:
    def message(body: Any) -> str:
        return str(post(server, "/api/query", body).json()["message"])

    assert message("{x").startswith("Request body is not valid JSON: ")
    assert message("[1]") == "Request body must be a JSON object"
    assert message({"path": 5}) == "`path` must be a string naming the function"
    assert message({"path": "messages:total", "format": "xml"}) == (
        "Unsupported format 'xml': use 'convex_encoded_json' or 'json'"
    )
    # The format is checked before the caller and the function.
    response = post(
        server,
        "/api/query",
        {"path": 5, "format": "xml"},
        headers={"Authorization": "Convex wrong"},
    )
    assert response.json()["code"] == "BadFormat"
    response = post(server, "/api/query", {"path": 5}, headers={"Authorization": "Convex wrong"})
    assert response.json()["code"] == "BadAdminKey"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_oversized_bodies_are_refused(server: Server, endpoint: str) -> None:
    limit = 16 * 1024 * 1024 + 2000
    declared = post(server, endpoint, "x" * (limit + 1))
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/json"
    assert declared.json() == {
        "code": "RequestTooLarge",
        "message": f"Request body of {limit + 1} bytes is larger than the limit of {limit} bytes",
    }

    def chunks() -> Any:
        for _ in range(17):
            yield b"x" * (1024 * 1024)

    streamed = server.client.post(endpoint, content=chunks())
    assert streamed.status_code == 413
    assert streamed.json() == {
        "code": "RequestTooLarge",
        "message": f"Request body is larger than the limit of {limit} bytes",
    }
    # Exactly at the limit is read (and then found to be no JSON).
    assert post(server, endpoint, "x" * limit).json()["code"] == "BadJsonBody"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Basic dXNlcjpwYXNz", "InvalidAuthHeader"),
        ("Bearer not-a-jwt", "Unauthenticated"),
        ("Convex wrong-key", "BadAdminKey"),
    ],
)
def test_auth_failures_on_every_endpoint(
    server: Server, endpoint: str, header: str, code: str
) -> None:
    response = post(
        server, endpoint, {"path": "messages:total", "args": {}}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == code
    by_param = post(server, f"{endpoint}?adminKey=wrong-key", {"path": "messages:total"})
    assert by_param.status_code == 401
    assert by_param.json()["code"] == "BadAdminKey"


def test_blank_authorization_is_anonymous(server: Server) -> None:
    body = call(server, "/api/query", "who:me", {}, headers={"Authorization": "  "})
    assert body["value"] is None


def _requests(server: Server) -> dict[str, Any]:
    """One request down every branch of the hot endpoints, as (method, url, body, headers)."""
    ok = {"path": "messages:total", "args": {}}
    return {
        "success": ("POST", "/api/query", ok, {}),
        "mutation": ("POST", "/api/mutation", {"path": "messages:send", "args": {}}, {}),
        "action": ("POST", "/api/action", {"path": "messages:double", "args": {"x": 1}}, {}),
        "function error": ("POST", "/api/query", {"path": "messages:boom"}, {}),
        "bad json": ("POST", "/api/mutation", "{", {}),
        "bad auth": ("POST", "/api/action", ok, {"Authorization": "Convex nope"}),
        "too large": ("POST", "/api/query", "x" * (16 * 1024 * 1024 + 2001), {}),
        "wrong method": ("GET", "/api/query", None, {}),
        "no route": ("POST", "/api/nothing", ok, {}),
        "doubled slashes": ("POST", "//api//mutation", {"path": "messages:total"}, {}),
    }


def _send(server: Server, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    if url.startswith("//"):
        url = "http://testserver" + url
    if body is None:
        return server.client.request(method, url, headers=headers)
    return post(server, url, body, headers=headers)


@pytest.mark.parametrize(
    "case",
    [
        "success",
        "mutation",
        "action",
        "function error",
        "bad json",
        "bad auth",
        "too large",
        "wrong method",
        "no route",
        "doubled slashes",
    ],
)
def test_cors_headers_on_every_answer(server: Server, case: str) -> None:
    method, url, body, headers = _requests(server)[case]
    mirrored = _send(server, method, url, body, {**headers, "Origin": ORIGIN})
    assert mirrored.headers["access-control-allow-origin"] == ORIGIN
    assert mirrored.headers["access-control-allow-credentials"] == "true"
    assert mirrored.headers["vary"] == "Origin"
    assert "access-control-allow-methods" not in mirrored.headers
    assert "access-control-max-age" not in mirrored.headers
    plain = _send(server, method, url, body, headers)
    assert plain.status_code == mirrored.status_code
    assert plain.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in plain.headers
    assert "access-control-allow-credentials" not in plain.headers


def test_cors_origin_is_mirrored_byte_for_byte(server: Server) -> None:
    for origin in ("null", "http://localhost:5173", "HTTPS://Odd.Example:8443/x y"):
        response = server.client.post(
            "/api/query", content=b'{"path":"messages:total"}', headers={"Origin": origin}
        )
        assert response.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_cors_preflight_on_every_endpoint(server: Server, endpoint: str) -> None:
    response = server.client.options(
        endpoint,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Convex-Client, Authorization",
        },
    )
    assert response.status_code == 200
    assert response.text == "OK"
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-methods"] == (
        "GET, POST, OPTIONS, PATCH, DELETE, PUT"
    )
    assert response.headers["access-control-allow-headers"] == (
        "Content-Type, Convex-Client, Authorization"
    )
    assert response.headers["access-control-max-age"] == "86400"
    assert response.headers["vary"] == (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
        "Access-Control-Request-Private-Network"
    )
    refused = server.client.options(
        endpoint, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "TRACE"}
    )
    assert refused.status_code == 400
    assert refused.text == "Disallowed CORS method"
    # An OPTIONS that is no preflight is just a method the route does not allow.
    bare = server.client.options(endpoint, headers={"Origin": ORIGIN})
    assert bare.status_code == 405
    assert bare.json() == {"code": "MethodNotAllowed", "message": "OPTIONS is not allowed here"}
    assert bare.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_a_json_body(server: Server, endpoint: str, method: str) -> None:
    response = server.client.request(method, endpoint)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "code": "MethodNotAllowed",
        "message": f"{method} is not allowed here",
    }
    head = server.client.head(endpoint)
    assert head.status_code == 405
    assert head.content == b""


@pytest.mark.parametrize("url", ["/api/nothing", "/api/querys", "/api/query/extra", "/query"])
def test_unknown_routes_are_404_with_a_json_body(server: Server, url: str) -> None:
    response = post(server, url, {"path": "messages:total"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": "NotFound", "message": f"No route for POST {url}"}


@pytest.mark.parametrize(
    "url", ["//api/query", "//api//query", "/api//query", "///api/query", "//api/query?x=1"]
)
def test_doubled_slashes_on_every_endpoint(server: Server, url: str) -> None:
    for endpoint in ENDPOINTS:
        path = {
            "/api/query": "messages:total",
            "/api/mutation": "messages:touch_other",
            "/api/action": "messages:convex_nope",
        }[endpoint]
        target = url.replace("query", endpoint.removeprefix("/api/"))
        response = post(server, "http://testserver" + target, {"path": path, "args": {}})
        assert response.status_code == 200, (target, response.text)
        assert "status" in response.json()


def test_a_trailing_slash_redirects(server: Server) -> None:
    response = post(
        server, "/api/query/", {"path": "messages:total", "args": {}}, follow_redirects=False
    )
    assert response.status_code == 307
    assert response.headers["location"] == "http://testserver/api/query"
    followed = post(server, "/api/query/", {"path": "messages:total", "args": {}})
    assert followed.json()["value"] == 0.0


def test_the_body_is_read_whatever_its_content_type(server: Server) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = server.client.post(
            "/api/query",
            content=b'{"path": "messages:total"}',
            headers={"Content-Type": content_type},
        )
        assert response.json()["value"] == 0.0
