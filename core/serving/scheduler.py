"""Model work off the event loop, with deadlines, cancellation and load shedding.

Every prediction runs in the server's thread pool under a deadline (the client's gRPC deadline, a
REST `X-Request-Timeout-S` header, capped by `catalogue serve --request-timeout-s`):

- a request arriving while `workers + max_queue` predictions are already running or waiting is
  refused at once with RESOURCE_EXHAUSTED (HTTP 429), instead of making everyone wait longer;
- one whose deadline passes while it waits is answered DEADLINE_EXCEEDED (504) without running;
- one whose deadline passes while it runs, or whose client goes away (REST disconnect, gRPC
  cancellation or deadline), has its TensorFlow work cancelled: a graph stops between two ops (a
  decoding loop within one step), so the thread is free again for the requests behind it.

TensorFlow's cancellation hook (`tensorflow.python.eager.cancellation.context()`) is one global
for the process; `install_thread_cancellation` makes it per thread, so that each worker thread
cancels only its own request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from typing import Any

from core.serving.errors import ServingError

log = logging.getLogger("core.serving")

DEFAULT_REQUEST_TIMEOUT_S = 60.0
DEFAULT_MAX_QUEUE = 16

_local = threading.local()
_installed = False


def install_thread_cancellation() -> bool:
    """Makes TF's active cancellation manager per thread (see the module docstring); False when this
    TensorFlow has no such hook (deadlines are then answered, but the work runs to its end)."""
    global _installed
    if _installed:
        return True
    try:
        from tensorflow.python.eager import cancellation
    except ImportError:
        return False
    original = getattr(cancellation, "context", None)
    if original is None or not hasattr(cancellation, "CancellationManager"):
        return False

    def context():
        return getattr(_local, "manager", None) or original()

    cancellation.context = context
    _installed = True
    return True


def _cancellation_manager():
    if not install_thread_cancellation():
        return None
    from tensorflow.python.eager import cancellation

    return cancellation.CancellationManager()


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class Deadline(float):
    """A monotonic time to answer by that remembers the seconds it `allowed` when set."""

    def __new__(cls, at: float, allowed: float):
        deadline = super().__new__(cls, at)
        deadline.allowed = allowed
        return deadline

    def exceeded(self) -> ServingError:
        """The one answer to a passed deadline, whether the work ran or was still waiting for a thread;
        it names the time the request was given (not what reading its body left of it)."""
        return ServingError("DEADLINE_EXCEEDED",
                            f"Deadline exceeded: no answer within {max(self.allowed, 0.0):.3g} s, so the work was "
                            "cancelled (the client's timeout, at most catalogue serve --request-timeout-s)")


class Scheduler:
    """Admission, deadlines and cancellation for the predictions both front ends run.

    Args:
        executor: the thread pool that runs model work.
        workers: its number of threads.
        max_queue: predictions allowed to wait for a thread; more are refused with RESOURCE_EXHAUSTED.
        request_timeout_s: the longest a request may take (a client may ask for less, never more).
    """

    def __init__(self, executor: Executor, workers: int, *, max_queue: int = DEFAULT_MAX_QUEUE,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S):
        self.executor, self.workers = executor, workers
        self.max_queue, self.request_timeout_s = max_queue, request_timeout_s
        self._pending = 0  # admitted and not finished: running or waiting for a thread
        self._running = 0  # on a worker thread now
        self._lock = threading.Lock()
        self.cancelled = 0  # predictions whose TF work was cancelled (deadline or departed client)

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def running(self) -> int:
        return self._running

    def deadline(self, client_timeout_s: float | None = None) -> Deadline:
        """The monotonic time a request must be answered by: the client's timeout, at most the server's."""
        timeout = self.request_timeout_s
        if client_timeout_s is not None:
            timeout = min(timeout, max(client_timeout_s, 0.0))
        return Deadline(time.monotonic() + timeout, timeout)

    async def run(self, fn: Callable[..., Any], *args, deadline: Deadline,
                  gone: Callable[[], Awaitable] | None = None) -> Any:
        """fn(*args) in the pool, answered by `deadline`; `gone()` completes if the client goes away.

        Raises ServingError RESOURCE_EXHAUSTED (too many waiting), DEADLINE_EXCEEDED, or CANCELLED
        (the client went away: nobody reads the answer).
        """
        with self._lock:
            if self._pending >= self.workers + self.max_queue:
                raise ServingError(
                    "RESOURCE_EXHAUSTED",
                    f"The server is busy: {self._pending} predictions are running or waiting (at most "
                    f"{self.workers} run at once and {self.max_queue} wait; catalogue serve --max-queue). "
                    "Retry later")
            self._pending += 1
        manager = _cancellation_manager()
        future: Future = self.executor.submit(self._work, manager, deadline, fn, *args)
        future.add_done_callback(self._finished)
        waiting = asyncio.wrap_future(future)
        watchers = [waiting]
        gone_task = asyncio.ensure_future(gone()) if gone is not None else None
        if gone_task is not None:
            watchers.append(gone_task)
        try:
            done, _ = await asyncio.wait(watchers, timeout=max(deadline - time.monotonic(), 0.0),
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # gRPC cancels the handler when its client goes or times out
            waiting.add_done_callback(_retrieve)
            self._abandon(future, manager)
            raise
        finally:
            if gone_task is not None and not gone_task.done():
                gone_task.cancel()
        if waiting in done:
            return waiting.result()
        waiting.add_done_callback(_retrieve)  # nobody awaits it any more: no "never retrieved" log
        self._abandon(future, manager)
        if gone_task is not None and gone_task in done:
            raise ServingError("CANCELLED", "The client closed the connection before the answer")
        raise deadline.exceeded()

    def _abandon(self, future: Future, manager) -> None:
        """Drops a waiting job from the queue, or cancels its TF work if it already runs."""
        if not future.cancel() and manager is not None and not future.done():
            manager.start_cancel()
            self.cancelled += 1

    def _finished(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def _work(self, manager, deadline: Deadline, fn, *args):
        if time.monotonic() >= deadline:  # it waited for a thread past its deadline: not started at all
            raise deadline.exceeded()
        _local.manager = manager
        with self._lock:
            self._running += 1
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._running -= 1
            _local.manager = None
