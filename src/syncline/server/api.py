"""The HTTP function API used by ``ConvexHttpClient`` and the Python HTTP client.

``POST /api/query|mutation|action`` with ``{"path", "args", "format"}``:
``args`` may be an object or a one-element array. A function that ran answers
HTTP 200 with ``{"status": "success", "value", "logLines"}`` or
``{"status": "error", "errorMessage", "errorData"?, "logLines"}``. A request
that could not run a function (bad JSON, bad auth, unknown format) answers
4xx/5xx with ``{"code", "message"}`` (protocol §7).

Also: ``/api/function`` (admin only: any kind, internal functions too),
``/api/run/{module}/{function}``, ``/api/query_ts``, ``/api/debug_event``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from syncline.auth.credentials import require_admin
from syncline.errors import AuthError, InvalidRequest, SynclineError
from syncline.functions.outcomes import Outcome, client_log_lines, format_error
from syncline.functions.registration import FunctionKind
from syncline.identity import ANONYMOUS, Identity, is_admin
from syncline.query_cache import args_key
from syncline.server.request_limits import MAX_API_BODY_BYTES, read_body
from syncline.sync.protocol import decode_ts, encode_ts
from syncline.values.json import from_json, to_clean_json, to_json

if TYPE_CHECKING:
    from syncline.application import Application

ENCODED_FORMATS = ("convex_encoded_json", "convex_json")
CLEAN_FORMATS = ("json", "convex_clean_json")
#: how each output format encodes a Convex value
_ENCODERS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(ENCODED_FORMATS, to_json),
    **dict.fromkeys(CLEAN_FORMATS, to_clean_json),
}


def error_answer(exc: SynclineError) -> tuple[int, bytes]:
    """(status, JSON body) of a request that could not run a function: ``{code, message}``."""
    return max(exc.http_status, 400), orjson.dumps(exc.to_json())


def error_response(exc: SynclineError) -> Response:
    status, body = error_answer(exc)
    return Response(body, status_code=status, media_type="application/json")


async def require_admin_request(app: Application, request: Request, what: str) -> None:
    """Refuse ``request`` unless it holds the admin key (as the header or ``?adminKey=``)."""
    header = request.headers.get("authorization")
    if header is None and "adminKey" in request.query_params:
        header = f"Convex {request.query_params['adminKey']}"
    require_admin(await app.identity_from_header(header), what)


def parse_json_body(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (an empty body is ``{}``)."""
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", code="BadJsonBody") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("Request body must be a JSON object", code="BadJsonBody")
    return parsed


async def _json_body(request: Request) -> dict[str, Any]:
    return parse_json_body(await read_body(request, MAX_API_BODY_BYTES))


def _decode_args(raw: Any) -> Any:
    """Args in either format: every JSON number is a float64 (protocol §4)."""
    return {} if raw is None else from_json(raw)


def _format(body: dict[str, Any], default: str) -> str:
    fmt = body.get("format") or default
    if not isinstance(fmt, str) or fmt not in _ENCODERS:
        raise InvalidRequest(
            f"Unsupported format {fmt!r}: use 'convex_encoded_json' or 'json'", code="BadFormat"
        )
    return fmt


def outcome_body(outcome: Outcome, *, fmt: str, dev: bool) -> bytes:
    """The JSON answer for a function that ran: ``{status, value | errorMessage, ...}``."""
    encode = _ENCODERS[fmt]
    if outcome.error is None:
        return orjson.dumps(
            {
                "status": "success",
                "value": encode(outcome.value),
                "logLines": client_log_lines(outcome, dev=dev),
            }
        )
    message, data, is_convex = format_error(outcome.error, request_id=outcome.request_id, dev=dev)
    body: dict[str, Any] = {
        "status": "error",
        "errorMessage": message,
        "logLines": client_log_lines(outcome, dev=dev),
    }
    if is_convex:
        body["errorData"] = encode(data)
    return orjson.dumps(body)


def outcome_response(outcome: Outcome, *, fmt: str, dev: bool) -> Response:
    return Response(outcome_body(outcome, fmt=fmt, dev=dev), media_type="application/json")


class HttpApi:
    """Request handlers bound to one application."""

    def __init__(self, app: Application) -> None:
        self.app = app

    async def identity(self, authorization: str | None, admin_key: str | None) -> Identity:
        """The caller: an ``Authorization`` header, else an ``adminKey`` query parameter."""
        if authorization is None:
            if admin_key is None:
                return ANONYMOUS
            authorization = f"Convex {admin_key}"
        return await self.app.identity_from_header(authorization)

    async def _identity(self, request: Request) -> Identity:
        return await self.identity(
            request.headers.get("authorization"), request.query_params.get("adminKey")
        )

    async def call(
        self, kind: FunctionKind, body: bytes, authorization: str | None, admin_key: str | None
    ) -> tuple[int, bytes]:
        """(status, JSON body) for a ``POST /api/query|mutation|action`` with ``body``."""
        try:
            parsed = parse_json_body(body)
            fmt = _format(parsed, "json")
            identity = await self.identity(authorization, admin_key)
            dev = self.app.dev or is_admin(identity)
            if kind is FunctionKind.QUERY:
                return 200, await self._query(parsed, fmt, identity, dev)
            args = _decode_args(parsed.get("args"))
            outcome = await self._run(kind, parsed.get("path"), args, identity)
        except SynclineError as exc:
            return error_answer(exc)
        return 200, outcome_body(outcome, fmt=fmt, dev=dev)

    async def _query(
        self, parsed: dict[str, Any], fmt: str, identity: Identity, dev: bool
    ) -> bytes:
        """A query's answer: from the query cache when it holds a valid one, else run it."""
        path, raw_args = parsed.get("path"), parsed.get("args")
        cache = self.app.live.cache
        canonical = None
        if cache.enabled and isinstance(path, str):
            canonical = cache.canonical_path(path)
        if canonical is None:
            outcome = await self._run(FunctionKind.QUERY, path, _decode_args(raw_args), identity)
            return outcome_body(outcome, fmt=fmt, dev=dev)
        key = args_key(raw_args)
        entry = cache.lookup(canonical, key, identity)
        if entry is not None:
            answer = entry.answers.get(fmt)
            if answer is None:
                answer = outcome_body(entry.outcome, fmt=fmt, dev=dev)
                cache.add_answer(entry, fmt, answer)
            self.app.executor.record_cached(entry.outcome, identity)
            return answer
        outcome = await self._run(FunctionKind.QUERY, path, _decode_args(raw_args), identity)
        answer = outcome_body(outcome, fmt=fmt, dev=dev)
        entry = cache.store(canonical, key, outcome, identity)
        if entry is not None:
            cache.add_answer(entry, fmt, answer)
        return answer

    async def _run(
        self,
        kind: FunctionKind,
        path: Any,
        args: Any,
        identity: Identity,
        *,
        allow_internal: bool = False,
    ) -> Outcome:
        if not isinstance(path, str):
            raise InvalidRequest("`path` must be a string naming the function", code="BadPath")
        executor = self.app.executor
        if kind is FunctionKind.QUERY:
            return await executor.query(
                path, args, identity=identity, allow_internal=allow_internal
            )
        if kind is FunctionKind.MUTATION:
            return await executor.mutation(
                path, args, identity=identity, allow_internal=allow_internal
            )
        return await executor.action(path, args, identity=identity, allow_internal=allow_internal)

    def endpoint(self, kind: FunctionKind) -> Any:
        """A Starlette handler for ``kind`` (``lean_api`` serves these paths in front of it)."""

        async def handle(request: Request) -> Response:
            try:
                body = await read_body(request, MAX_API_BODY_BYTES)
            except SynclineError as exc:
                return error_response(exc)
            status, answer = await self.call(
                kind,
                body,
                request.headers.get("authorization"),
                request.query_params.get("adminKey"),
            )
            return Response(answer, status_code=status, media_type="application/json")

        return handle

    async def function(self, request: Request) -> Response:
        """``/api/function``: admin only; runs any function, internal ones too."""
        try:
            body = await _json_body(request)
            fmt = _format(body, "json")
            identity = await self._identity(request)
            if not is_admin(identity):
                raise AuthError("/api/function requires the admin key", code="Unauthorized")
            path = body.get("path")
            if not isinstance(path, str):
                raise InvalidRequest("`path` must be a string", code="BadPath")
            fn = self.app.executor.resolve(path, None, identity, allow_internal=True)
            args = _decode_args(body.get("args"))
            outcome = await self._run(fn.kind, path, args, identity, allow_internal=True)
        except SynclineError as exc:
            return error_response(exc)
        return outcome_response(outcome, fmt=fmt, dev=self.app.dev or is_admin(identity))

    async def run(self, request: Request) -> Response:
        """``/api/run/{module path}/{function}``: any public function by kind."""
        try:
            raw = request.path_params["path"].strip("/")
            module, _, name = raw.rpartition("/")
            path = f"{module}:{name}" if module else raw
            body = await _json_body(request) if request.method == "POST" else {}
            fmt = _format(body, "json")
            identity = await self._identity(request)
            fn = self.app.executor.resolve(path, None, identity, allow_internal=is_admin(identity))
            args = _decode_args(body.get("args"))
            outcome = await self._run(
                fn.kind, path, args, identity, allow_internal=is_admin(identity)
            )
        except SynclineError as exc:
            return error_response(exc)
        return outcome_response(outcome, fmt=fmt, dev=self.app.dev or is_admin(identity))

    async def query_at_ts(self, request: Request) -> Response:
        """``/api/query_at_ts``: a query's result as of an earlier ts (``consistentQuery``).

        SQLite keeps only the newest snapshot, so the query runs there and the
        answer stands for the requested ts if no commit since then touched
        anything it read (the same check that keeps live queries valid).
        """
        try:
            body = await _json_body(request)
            fmt = _format(body, "json")
            ts = decode_ts(body.get("ts"), "ts")
            identity = await self._identity(request)
            args = _decode_args(body.get("args"))
            live = self.app.live
            if ts > live.processed_ts:
                raise InvalidRequest(
                    f"Timestamp {ts} is in the future (latest is {live.processed_ts})",
                    code="InvalidTimestamp",
                )
            outcome = await self._run(FunctionKind.QUERY, body.get("path"), args, identity)
            if outcome.ts is not None and outcome.read_set is not None:
                await live.caught_up(outcome.ts)
                conflict = live.first_conflict(outcome.read_set, ts)
                if conflict is not None and conflict <= outcome.ts:
                    raise InvalidRequest(
                        "The data this query reads changed after the requested timestamp; "
                        "it can no longer be answered as of then (ask for a newer one)",
                        code="TimestampTooOld",
                    )
        except SynclineError as exc:
            return error_response(exc)
        return outcome_response(outcome, fmt=fmt, dev=self.app.dev or is_admin(identity))

    async def query_ts(self, request: Request) -> Response:
        return JSONResponse({"ts": encode_ts(self.app.live.processed_ts)})

    async def debug_event(self, request: Request) -> Response:
        return JSONResponse({})
