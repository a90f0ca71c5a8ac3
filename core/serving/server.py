"""`catalogue serve`: TF Serving's REST (default :8501) and gRPC (default :8500) APIs for the models
listed in saved_models/models.config, on one asyncio loop (uvicorn + grpc.aio), with model work
in a thread pool and a poller that picks up new versions without a restart.

    catalogue serve --model-config saved_models/models.config --port 8501 --grpc-port 8500

In Python (tests, notebooks):

    with ModelServer("saved_models/models.config", port=0, grpc_port=0).start() as server:
        server.rest_url, server.grpc_target
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.serving import grpc_api, rest, scheduler
from core.serving.config import ConfigError
from core.serving.registry import ModelRegistry
from core.serving.service import DEFAULT_MAX_BATCH, ModelService

log = logging.getLogger("core.serving")

DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
DEFAULT_MAX_CONNECTIONS = 256
HEADER_TIMEOUT_S = 10.0  # a connection must send a request's headers within this


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (ModelServer owns shutdown for REST and gRPC)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class _Http(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with two limits TF Serving's HTTP server has too: connections
    past `max_connections` get an immediate 503 and are closed, and a connection that does not
    send a request's headers within `header_timeout_s` is closed (a slow client cannot hold a
    connection, and its share of the cap, forever)."""

    max_connections = DEFAULT_MAX_CONNECTIONS
    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = None
        if len(self.connections) > self.max_connections:
            body = (b'{"error": "Too many connections: this server takes ' + str(self.max_connections).encode()
                    + b' at once (catalogue serve --max-connections)"}')
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            transport.close()
            return
        self._await_headers()

    def _await_headers(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived
            self._stop_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()  # the next request on a kept-alive connection

    def connection_lost(self, exc) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)


class ModelServer:
    """REST + gRPC front ends over one ModelRegistry.

    Args:
        model_config: path of models.config (ModelServerConfig text proto).
        host: interface to bind; 127.0.0.1 by default (use 0.0.0.0 deliberately).
        port: REST port (0 picks a free one); grpc_port: gRPC port (0 picks one, None disables).
        poll_seconds: how often to look for new versions and models.config changes.
        max_body_bytes: largest accepted REST body / gRPC message (and gRPC input once expanded).
        workers: threads running model work (default: 2 per core, at least 4).
        ui: also serve the web page (core/serving/ui) at `/` on the REST port.
        request_timeout_s: the longest a prediction may take, body included (clients may ask for less).
        max_queue: predictions that may wait for a worker; more are refused with 429 / RESOURCE_EXHAUSTED.
        max_batch: most examples per request.
        max_connections: most open REST connections; more get 503.
    """

    def __init__(self, model_config: str | Path = "saved_models/models.config", *, host: str = "127.0.0.1",
                 port: int = DEFAULT_REST_PORT, grpc_port: int | None = DEFAULT_GRPC_PORT,
                 poll_seconds: float = 2.0, max_body_bytes: int = rest.DEFAULT_MAX_BODY_BYTES,
                 workers: int | None = None, log_level: str = "warning", ui: bool = True,
                 request_timeout_s: float = scheduler.DEFAULT_REQUEST_TIMEOUT_S,
                 max_queue: int = scheduler.DEFAULT_MAX_QUEUE, max_batch: int = DEFAULT_MAX_BATCH,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS):
        self.host, self.port, self.grpc_port = host, port, grpc_port
        self.ui = ui
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.log_level = log_level
        self.registry = ModelRegistry(model_config, poll_seconds=poll_seconds)
        self.service = ModelService(self.registry, max_batch=max_batch, max_tensor_bytes=max_body_bytes)
        workers = workers or max(4, 2 * (os.cpu_count() or 1))
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")
        self.scheduler = scheduler.Scheduler(self.executor, workers, max_queue=max_queue,
                                             request_timeout_s=request_timeout_s)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uvicorn: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def rest_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def grpc_target(self) -> str | None:
        if self.grpc_port is None:
            return None
        return f"[{self.host}]:{self.grpc_port}" if ":" in self.host else f"{self.host}:{self.grpc_port}"

    # ------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Binds both ports and serves until stop() (or SIGINT/SIGTERM when in the main thread)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        app = rest.create_app(self.service, self.scheduler, max_body_bytes=self.max_body_bytes, ui=self.ui)
        http = type("Http", (_Http,), {"max_connections": self.max_connections})
        self._uvicorn = _Uvicorn(uvicorn.Config(app, log_level=self.log_level, access_log=False, http=http,
                                                lifespan="off", timeout_graceful_shutdown=5))
        grpc_server = None
        if self.grpc_port is not None:
            grpc_server = grpc_api.create_server(self.service, self.scheduler,
                                                 max_message_bytes=self.max_body_bytes)
            host = f"[{self.host}]" if ":" in self.host else self.host
            try:
                bound = grpc_server.add_insecure_port(f"{host}:{self.grpc_port}")
            except RuntimeError as err:
                bound = 0
                log.error("gRPC: %s", err)
            if not bound:
                sock.close()
                raise OSError(f"Could not bind gRPC to {host}:{self.grpc_port} (in use?)")
            self.grpc_port = bound
            await grpc_server.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._request_exit)
        rest_task = asyncio.ensure_future(self._uvicorn.serve(sockets=[sock]))
        try:
            while not self._uvicorn.started and not rest_task.done():
                await asyncio.sleep(0.01)
            if rest_task.done():
                rest_task.result()  # raises the startup error
            self._ready.set()
            print(f"Serving {', '.join(self.registry.model_names()) or 'no models yet'}: REST {self.rest_url}"
                  + (f", gRPC {self.grpc_target}" if grpc_server else "") + " (Ctrl-C stops)", flush=True)
            if self.ui:
                print(f"Try the models in a browser: {self.rest_url}/", flush=True)
            await rest_task
        finally:
            if not rest_task.done():
                self._uvicorn.should_exit = True
                await rest_task
            if grpc_server is not None:
                await grpc_server.stop(grace=2)
            sock.close()

    def _request_exit(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    def run(self) -> None:
        """Loads the models, then serves in this thread until interrupted."""
        try:
            self.registry.start()
            asyncio.run(self.serve())
        finally:
            self.close()

    def start(self, timeout: float = 120) -> ModelServer:
        """Loads the models and serves from a background thread; returns once both ports listen."""
        self.registry.start()

        def target():
            try:
                asyncio.run(self.serve())
            except BaseException as err:  # noqa: BLE001 - reported to start()'s caller
                self._startup_error = err
                self._ready.set()

        self._thread = threading.Thread(target=target, name="model-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the server did not start in time")
        if self._startup_error is not None:
            self.close()
            raise self._startup_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._request_exit)
            self._thread.join(timeout=30)
        self.close()

    def close(self) -> None:
        self.registry.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"Could not bind REST to {host}:{port}: {err.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def main(model_config: str | Path = "saved_models/models.config", host: str = "127.0.0.1",
         port: int = DEFAULT_REST_PORT, grpc_port: int | None = DEFAULT_GRPC_PORT, poll_seconds: float = 2.0,
         max_body_mb: float = rest.DEFAULT_MAX_BODY_BYTES / (1 << 20), workers: int | None = None,
         ui: bool = True, request_timeout_s: float = scheduler.DEFAULT_REQUEST_TIMEOUT_S,
         max_queue: int = scheduler.DEFAULT_MAX_QUEUE, max_batch: int = DEFAULT_MAX_BATCH,
         max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
    """The `catalogue serve` command."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("core.serving").setLevel(logging.INFO)
    server = ModelServer(model_config, host=host, port=port, grpc_port=grpc_port or None,
                         poll_seconds=poll_seconds, max_body_bytes=int(max_body_mb * (1 << 20)),
                         workers=workers, log_level="info", ui=ui, request_timeout_s=request_timeout_s,
                         max_queue=max_queue, max_batch=max_batch, max_connections=max_connections)
    try:
        server.run()
    except ConfigError as err:
        sys.exit(f"error: {err}")
    except OSError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        pass
