"""Errors with TF Serving's status codes, and how they map onto HTTP and gRPC.

Every failure the server reports is a `ServingError(code, message)` where `code` is a
`tensorflow.error.Code` name ("INVALID_ARGUMENT", "NOT_FOUND", ...). REST answers
`{"error": message}` with the HTTP status TF Serving uses for that code; gRPC aborts with the
same-named `grpc.StatusCode`.
"""

from __future__ import annotations

import re

import grpc

# tensorflow_serving/model_servers/http_server.cc: ToHTTPStatusCode.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# tensorflow.error.Code numbers (the same as gRPC's) -> names.
CODE_NAMES = {grpc_code.value[0]: grpc_code.name for grpc_code in grpc.StatusCode}


class ServingError(Exception):
    """A request failure with a TF Serving status code name and a message for the client.

    `http_status` overrides the code's usual HTTP status (used for 413 on oversize bodies).
    """

    def __init__(self, code: str, message: str, *, http_status: int | None = None):
        if code not in HTTP_STATUS:
            raise ValueError(f"Unknown status code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self._http_status = http_status

    @property
    def http_status(self) -> int:
        return self._http_status or HTTP_STATUS[self.code]

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return grpc.StatusCode[self.code]

    def __repr__(self):
        return f"ServingError({self.code}, {self.message!r})"


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def from_exception(err: BaseException) -> ServingError:
    """Turns an error raised while running a model into a ServingError.

    TensorFlow's op errors carry their own status code (a corrupt image is INVALID_ARGUMENT);
    Python-level argument errors from calling a signature are the client's fault; anything else is
    an internal error.
    """
    if isinstance(err, ServingError):
        return err
    import tensorflow as tf

    if isinstance(err, tf.errors.OpError):
        code = CODE_NAMES.get(int(err.error_code), "UNKNOWN")
        return ServingError(code, readable_message(err.message))
    if isinstance(err, (ValueError, TypeError)):
        return invalid(readable_message(str(err)))
    return ServingError("INTERNAL", f"{type(err).__name__}: {err}")


def readable_message(message: str) -> str:
    """The readable part of a TensorFlow error: without "Graph execution error:", the
    "Detected at node ..." stack, the "{{function_node ...}}" prefix, the "[[{{node ...}}]]" trace
    and the "[Op:...]" suffix."""
    text = (message or "").split("\n\t [[", 1)[0]
    text = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", text)
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text, flags=re.MULTILINE)
    skip = ("Graph execution error", "Detected at node", "<stack traces", "  ")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(skip)]
    return "\n".join(lines).strip() or (message or "").strip()
