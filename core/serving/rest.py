"""TF Serving's REST API as a Starlette app.

    GET  /v1/models/NAME[/versions/N | /labels/L]             model version status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata    signature defs
    POST /v1/models/NAME[/versions/N | /labels/L]:predict     row ("instances") or columnar ("inputs")

and, unless `ui=False` (`catalogue serve --no-ui`), the web page of core/serving/ui at `/`.

Paths are matched with TF Serving's own (case-insensitive) patterns on the raw path and the model
name and label are then URL-decoded. Errors are {"error": "..."} with TF Serving's HTTP codes;
bodies over `max_body_bytes` get 413. All model work runs in `executor`, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import Executor
from functools import partial
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.serving.errors import ServingError, from_exception, invalid
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


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error(err: ServingError) -> Response:
    import json

    return _json(json.dumps({"error": err.message}).encode(), err.http_status)


def create_app(service: ModelService, executor: Executor, *,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, ui: bool = True) -> Starlette:
    async def blocking(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, partial(fn, *args))

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > DRAIN_FACTOR * max_body_bytes:
            raise _too_large(int(declared))  # not worth reading: answer now and drop the connection
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > DRAIN_FACTOR * max_body_bytes:
                raise _too_large(size)
            if size <= max_body_bytes:
                chunks.append(chunk)
            # Over the cap, the rest is read and dropped (memory stays bounded), so that the client
            # gets the 413 rather than a connection reset while it is still sending.
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
        try:
            if method == "POST" and (m := PREDICT_PATH.fullmatch(path)):
                name, version, label, verb = m.groups()
                name, version, label = _decode(name, version, label)
                body = await read_body(request)
                if verb.lower() != "predict":
                    raise ServingError("UNIMPLEMENTED", f"{verb} is not supported by this server "
                                                        "(only :predict); the exports have predict signatures")
                return _json(await blocking(service.rest_predict, name, version, label, body))
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
            return _error(err)
        except Exception as err:  # noqa: BLE001 - every request gets an answer; the server keeps serving
            log.exception("unexpected error on %s %s", method, path)
            return _error(from_exception(err))

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
