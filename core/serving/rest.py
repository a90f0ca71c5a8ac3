"""TF Serving's REST API as a Starlette app.

    GET  /v1/models/NAME[/versions/N | /labels/L]             model version status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata    signature defs
    POST /v1/models/NAME[/versions/N | /labels/L]:predict     row ("instances") or columnar ("inputs")

and, unless `ui=False` (`catalogue serve --no-ui`), the web page of core/serving/ui at `/`.

Paths are matched with TF Serving's own (case-insensitive) patterns on the raw path and the model
name and label are then URL-decoded. Errors are {"error": "..."} with TF Serving's HTTP codes;
bodies over `max_body_bytes` get 413. Predictions run through `scheduler` (core.serving.scheduler),
off the event loop, under a deadline that also bounds reading the body (408 when it stalls); a
client may shorten it with an `X-Request-Timeout-S: <seconds>` header.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.serving.errors import ServingError, from_exception, invalid
from core.serving.scheduler import Scheduler
from core.serving.service import ModelService

log = logging.getLogger("core.serving")

# tensorflow_serving/model_servers/http_rest_api_util.cc
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
DEFAULT_MAX_BODY_BYTES = 64 << 20
DRAIN_FACTOR = 4  # bodies up to this many times the cap are read (and dropped) before the 413
TIMEOUT_HEADER = "x-request-timeout-s"


def _json(body: bytes, status: int = 200, headers: dict | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(err: ServingError, close: bool = False) -> Response:
    import json

    # After a body that was not read to its end, the connection cannot carry another request.
    return _json(json.dumps({"error": err.message}).encode(), err.http_status,
                 {"connection": "close"} if close else None)


def client_timeout(request: Request) -> float | None:
    """The X-Request-Timeout-S header in seconds, or None."""
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise invalid(f"X-Request-Timeout-S must be a number of seconds >= 0. Received: {raw!r}")
    return value


async def disconnected(request: Request) -> None:
    """Returns once the client has gone (the body must have been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(service: ModelService, scheduler: Scheduler, *,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, ui: bool = True) -> Starlette:
    async def read_body(request: Request, deadline: float) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > DRAIN_FACTOR * max_body_bytes:
            raise _too_large(int(declared))  # not worth reading: answer now and drop the connection
        chunks, size = [], 0
        stream = request.stream()
        while True:
            try:
                chunk = await asyncio.wait_for(anext(stream), max(deadline - time.monotonic(), 0.0))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise ServingError("DEADLINE_EXCEEDED", f"Request body not received in time: {size} bytes "
                                   "arrived before the deadline (catalogue serve --request-timeout-s)",
                                   http_status=408) from None
            size += len(chunk)
            if size > DRAIN_FACTOR * max_body_bytes:
                raise _too_large(size)
            if size <= max_body_bytes:
                chunks.append(chunk)
            else:  # the rest is read and dropped, so the client gets the 413, not a reset mid-send
                chunks.clear()
        if size > max_body_bytes:
            raise _too_large(size)
        return b"".join(chunks)

    def _too_large(size: int) -> ServingError:
        return ServingError("RESOURCE_EXHAUSTED",
                            f"Request body of {size} bytes or more exceeds the limit of {max_body_bytes} "
                            "bytes (catalogue serve --max-body-mb)", http_status=413)

    async def handle(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        method = request.method
        body_read = True
        try:
            if method == "POST" and (m := PREDICT_PATH.fullmatch(path)):
                name, version, label, verb = m.groups()
                name, version, label = _decode(name, version, label)
                body_read = False
                deadline = scheduler.deadline(client_timeout(request))
                body = await read_body(request, deadline)
                body_read = True
                if verb.lower() != "predict":
                    raise ServingError("UNIMPLEMENTED", f"{verb} is not supported by this server "
                                                        "(only :predict); the exports have predict signatures")
                return _json(await scheduler.run(service.rest_predict, name, version, label, body,
                                                 deadline=deadline, gone=lambda: disconnected(request)))
            if method == "GET" and (m := STATUS_PATH.fullmatch(path)):
                name, version, label, sub = m.groups()
                name, version, label = _decode(name, version, label)
                # Cheap (a lock and a small proto): answered on the loop, even when every worker
                # thread is busy with predictions.
                if sub:
                    return _json(service.rest_metadata(name, version, label))
                return _json(service.rest_status(name, version, label))
            raise invalid(f"Malformed request: {method} {path}")
        except ServingError as err:
            return _error(err, close=not body_read)
        except Exception as err:  # noqa: BLE001 - every request gets an answer; the server keeps serving
            failure = from_exception(err)
            if failure.code == "INTERNAL":
                log.exception("unexpected error on %s %s", method, path)
            return _error(failure, close=not body_read)

    async def not_found(request: Request) -> Response:
        return _error(ServingError("NOT_FOUND", f"No such path: {request.method} {request.url.path}. "
                                                "The API is under /v1/models/NAME"))

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    pages = []
    if ui:
        from core.serving import ui as ui_pages

        pages = ui_pages.routes(service)
    return Starlette(routes=[Route("/v1/{rest:path}", handle, methods=methods), *pages,
                             Route("/{rest:path}", not_found, methods=methods)])


def _decode(name, version, label):
    name = unquote(name) if name else ""
    label = unquote(label) if label else None
    if version is not None:
        try:
            version = int(version)
        except ValueError:
            raise invalid(f"Failed to convert version: {version} to numeric.") from None
    return name, version, label
