"""The web page `catalogue serve` answers beside the APIs: try every served model in a browser.

    GET /                 the served models, their versions and states (from the registry the APIs use)
    GET /models/NAME      a page built in the browser from NAME's signature metadata; it calls the
                          same `/v1/models/NAME:predict` REST API a client would
    GET /ui/models        {"models": [{"name": ..., "model_version_status": [...]} or {"name": ..., "error": ...}]}
    GET /ui/static/FILE   the page's HTML, CSS and JavaScript (no build step, nothing from other origins)

Nothing here knows about the apps: the page reads signatures (inputs, outputs, dtypes, shapes, defaults)
and renders by type and naming convention (`*_bytes` inputs and outputs, label/score pairs, boxes).
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from core.serving.errors import ServingError
from core.serving.service import ModelService

STATIC = Path(__file__).parent / "static"
# Same-origin only: the page works on an offline machine and cannot be made to load anything else.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class _Static(StaticFiles):
    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def _page(file: str):
    async def endpoint(request: Request) -> Response:
        return FileResponse(STATIC / file, media_type="text/html; charset=utf-8", headers=HEADERS)

    return endpoint


def model_list(service: ModelService) -> dict:
    """Every model in the config with its version states, as the status API words them."""
    models = []
    for name in service.registry.model_names():
        try:
            status = json.loads(service.rest_status(name, None, None))
            models.append({"name": name, **status})
        except ServingError as err:  # e.g. no version found on disk yet
            models.append({"name": name, "model_version_status": [], "error": err.message})
    return {"models": models}


def routes(service: ModelService) -> list:
    async def models(request: Request) -> Response:
        # A lock and a small proto per model: cheap enough for the event loop, like the status API.
        return Response(json.dumps(model_list(service)), media_type="application/json",
                        headers={"Cache-Control": "no-cache"})

    return [
        Route("/", _page("index.html"), methods=["GET", "HEAD"]),
        Route("/models/{name:path}", _page("model.html"), methods=["GET", "HEAD"]),
        Route("/ui/models", models, methods=["GET"]),
        Mount("/ui/static", app=_Static(directory=STATIC), name="ui-static"),
    ]
