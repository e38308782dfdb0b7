"""OpenAI-compatible routes on the UI's port: ``/v1/models`` (and ``/v1/models/{id}``), ``/v1/chat/completions``,
``/v1/completions``; any other ``/v1`` path or method is a 404 or 405 in OpenAI's error shape.

``routes()`` goes into ``launch(app_kwargs={"routes": ...})`` (see ``app.launch_settings``), so the
routes exist wherever the app is launched, ZeroGPU's wrapped ``launch`` included. Each request passes
the key check, then the ``Gate`` (its own concurrency limit and waiting room), then ``pipelines``.
Errors use OpenAI's error JSON with the UI's bilingual messages. No CORS headers are added: a web
page elsewhere cannot call the API from a browser.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, AsyncIterator, Callable

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute

from pipelines import InvalidInputError, ModelUnavailableError, PipelineError
from pipelines.errors import UNEXPECTED, known_error

from .jobs import Job
from .limits import authorized, gate
from .protocol import ApiError, Call, choice_delta, chunk, error_body, find_model, in_request_terms, model_list, \
    model_object, response, role_chunk, usage_body
from .requests import read_chat, read_completion, unknown_model

# Far above any request a model can take (a 128k-token window is ~3 MB of JSON-escaped Chinese), far below
# what would strain the server's memory; a larger body is refused before it is all read.
MAX_BODY_BYTES = 16 * 2**20

log = logging.getLogger("modeldeck.api")
router = APIRouter(prefix="/v1")


def routes() -> list[BaseRoute]:
    """The API's routes, for ``FastAPI(routes=...)``."""
    return list(router.routes)


def error_response(exc: BaseException, names: dict[str, str] | None = None) -> JSONResponse:
    """The OpenAI error JSON and status for ``exc``; unexpected errors are logged and not shown.

    ``names`` maps a ``pipelines`` parameter named by an ``InvalidInputError`` to the request's field."""
    exc = known_error(exc) or exc
    if isinstance(exc, ApiError):
        status, body = exc.status, error_body(str(exc), exc.kind, exc.code, exc.param)
    elif isinstance(exc, InvalidInputError):
        param = (names or {}).get(exc.param, exc.param) if exc.param else None
        status, body = 400, error_body(in_request_terms(str(exc), names or {}), "invalid_request_error", param=param)
    elif isinstance(exc, ModelUnavailableError):
        status, body = 503, error_body(str(exc), "model_unavailable")
    elif isinstance(exc, PipelineError):
        status, body = 500, error_body(str(exc), "server_error")
    else:
        log.error("unexpected error in the API", exc_info=exc)
        status, body = 500, error_body(" / ".join(UNEXPECTED), "server_error")
    return JSONResponse(body, status_code=status)


def _refusal(status: int, zh: str, en: str, kind: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(error_body(f"{zh} / {en}", kind), status_code=status, headers=headers)


def _unauthorized() -> JSONResponse:
    return _refusal(401, "缺少或错误的 API 密钥：请在请求头里发送 Authorization: Bearer <MODELDECK_API_KEY>。",
                    "Missing or wrong API key: send the header Authorization: Bearer <MODELDECK_API_KEY>.",
                    "authentication_error", {"WWW-Authenticate": "Bearer"})


def _too_large() -> ApiError:
    size = f"{MAX_BODY_BYTES // 2**20} MiB"
    return ApiError(413, f"请求体超过 {size}。", f"The request body is larger than {size}.")


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to ``MAX_BODY_BYTES`` (a larger body is refused before it is all read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large()
    try:
        body = json.loads(bytes(raw) or b"null")
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's parser goes
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "请求体必须是 JSON 对象。", "The request body must be a JSON object.")
    return body


@router.get("/models")
async def list_models(request: Request) -> Response:
    """The chat model and the text generation models, by the names requests use."""
    if not authorized(request.headers.get("authorization")):
        return _unauthorized()
    try:
        return JSONResponse(model_list())
    except Exception as exc:
        return error_response(exc)


@router.get("/models/{name:path}")
async def retrieve_model(request: Request, name: str) -> Response:
    """One served model by its name (a 404 naming the served ones for any other)."""
    if not authorized(request.headers.get("authorization")):
        return _unauthorized()
    try:
        found = find_model(name)
        if found is None:
            raise unknown_model(name)
        return JSONResponse(model_object(*found, int(time.time())))
    except Exception as exc:
        return error_response(exc)


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    """A chat reply from the chat model, streamed or whole."""
    return await _serve(request, read_chat)


@router.post("/completions")
async def completions(request: Request) -> Response:
    """Continuations of a prompt from a text generation model, streamed or whole."""
    return await _serve(request, read_completion)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                  include_in_schema=False)
async def elsewhere(request: Request, path: str) -> Response:
    """Any other ``/v1`` path (404) or method (405, with ``Allow``), in OpenAI's error shape."""
    if not authorized(request.headers.get("authorization")):
        return _unauthorized()
    allowed = sorted({method for route in router.routes if route.path != "/v1/{path:path}"
                      and route.path_regex.match(request.url.path) for method in route.methods})
    if allowed:
        return _refusal(405, f"{request.url.path} 不接受 {request.method} 请求，请用 {'、'.join(allowed)}。",
                        f"{request.url.path} does not accept {request.method}; use {', '.join(allowed)}.",
                        "invalid_request_error", {"Allow": ", ".join(allowed)})
    return _refusal(404, f"没有这个接口：{request.method} {request.url.path}。可用：GET /v1/models、"
                    "POST /v1/chat/completions、POST /v1/completions。",
                    f"There is no {request.method} {request.url.path}. Available: GET /v1/models, "
                    "POST /v1/chat/completions, POST /v1/completions.", "invalid_request_error", {})


async def _serve(request: Request, read: Callable[[dict[str, Any]], Call]) -> Response:
    if not authorized(request.headers.get("authorization")):
        return _unauthorized()
    try:
        call = read(await _body(request))
    except Exception as exc:
        return error_response(exc)
    admitted = await _enter(request)
    if admitted is None:
        return Response(status_code=499)  # the client left while it waited; nobody reads this
    if not admitted:
        return _refusal(429, "请求太多，等候队列已满：请稍后重试。", "Too many requests and the waiting room is full; "
                        "retry shortly.", "rate_limit_exceeded", {"Retry-After": str(gate.retry_after())})
    job = Job(call)
    try:
        await job.start()
    except BaseException as exc:
        gate.leave()
        if not isinstance(exc, Exception):
            raise
        return error_response(exc, call.names)
    if call.stream:
        return _Stream(_events(job), lambda: _release(job))
    try:
        if not await _collect(request, job):
            return Response(status_code=499)  # the client has gone; nobody reads this
        job.news(final=True)
        tokens = [job.tokens(i, final=True) for i in range(call.n)]
        return JSONResponse(response(call, job.texts, job.reasons(), job.usage, job.seed, job.notices, tokens,
                                     job.echoed))
    except Exception as exc:
        return error_response(exc)
    finally:
        _release(job)


async def _enter(request: Request) -> bool | None:
    """``gate.enter()``, given up when the client disconnects while it waits (None): a client that timed out
    kept its place in the waiting room (a full room refused live clients) and, once let in, started its
    generation for nobody."""
    admitted = None
    async with anyio.create_task_group() as group:
        async def watch() -> None:
            await _left(request)
            group.cancel_scope.cancel()  # ``gate.enter`` gives its place up (or hands on a slot it was given)

        group.start_soon(watch)
        admitted = await gate.enter()
        group.cancel_scope.cancel()
    return admitted


async def _left(request: Request) -> None:
    """Return once the client has disconnected."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _release(job: Job) -> None:
    if not job.released:
        job.released = True
        job.cancel()
        gate.leave()


async def _collect(request: Request, job: Job) -> bool:
    """Run ``job`` to the end; stop it and return False if the client disconnects first."""
    left, error = False, None
    async with anyio.create_task_group() as group:
        async def watch() -> None:
            nonlocal left
            await _left(request)
            left = True
            job.cancel()
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            while await job.advance():
                pass
        except Exception as exc:  # raised from here, not from inside the group (that would wrap it)
            error = exc
        group.cancel_scope.cancel()
    if error is not None:
        raise error
    return not left


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(job: Job) -> AsyncIterator[str]:
    call = job.call
    yield _sse(role_chunk(call, job.echoed))  # headers and a first event before the first token
    try:
        while await job.advance():
            news = job.news()
            if news:
                yield _sse(chunk(call, [choice_delta(call, i, text, None, job.tokens(i)) for i, text in news]))
        news = dict(job.news(final=True))
        reasons = job.reasons()
        yield _sse(chunk(call, [choice_delta(call, i, news.get(i), reason, job.tokens(i, final=True))
                                for i, reason in enumerate(reasons)], seed=job.seed, notices=job.notices))
        if call.include_usage:
            yield _sse(chunk(call, [], usage=usage_body(job.usage)))
    except Exception as exc:  # the status is sent already: the error travels as an event
        yield _sse(json.loads(error_response(exc).body))
    yield "data: [DONE]\n\n"


class _Stream(StreamingResponse):
    """A server-sent event stream that stops its job and frees its slot however it ends (disconnects too)."""

    def __init__(self, events: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
