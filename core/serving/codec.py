"""TF Serving's JSON tensor encoding (tensorflow_serving/util/json_tensor.cc), on numpy.

Requests:
    {"signature_name": "...", "instances": [...]}   row format: one element per example, batched
                                                    along a new first dimension; with several
                                                    inputs each element is {"input": value, ...}
    {"signature_name": "...", "inputs": ...}        columnar format: the whole tensor, or
                                                    {"input": tensor, ...} with several inputs
    {"b64": "..."}                                  a binary string element (DT_STRING inputs)

Responses:
    {"predictions": [...]}   for row requests: one element per example ({"output": ...} with several
                             outputs; every output's first dimension must be the batch size)
    {"outputs": ...}         for columnar requests
    Outputs whose names end in "_bytes" are written as {"b64": "..."}; float32 values are written in
    their shortest round-tripping form (0.2, not 0.20000000298).
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from core.serving.errors import ServingError, invalid

ROW, COLUMNAR = "row", "columnar"
B64 = "b64"
BYTES_SUFFIX = "_bytes"
CLEAN_FLOAT_LIMIT = 1 << 16  # beyond this many elements, floats are written as plain doubles (faster)


def parse_body(body: bytes) -> dict:
    """The request's JSON object, or INVALID_ARGUMENT naming the parse error."""
    if not body or not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except RecursionError:
        raise invalid("JSON Parse error: arrays/objects nested too deeply (the limit is about "
                      f"{sys.getrecursionlimit()} levels)") from None
    except UnicodeDecodeError as err:
        raise invalid(f"JSON Parse error: the body is not UTF-8 ({err.reason} at offset {err.start})") from None
    except ValueError as err:
        raise invalid(f"JSON Parse error: {err}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {_short(doc)} Is not object")
    return doc


def signature_name(doc: Mapping[str, Any]) -> str:
    value = doc.get("signature_name", "")
    if not isinstance(value, str):
        raise invalid(f"JSON Value: {_short(doc)} not formatted correctly. "
                      "'signature_name' key must be a string value.")
    return value


def request_tensors(doc: Mapping[str, Any], specs: Mapping[str, Any],
                    defaults: Mapping[str, Any] = ()) -> tuple[dict[str, np.ndarray], str]:
    """Reads "instances" or "inputs" into arrays typed like the signature's inputs.

    Args:
        doc: the parsed request.
        specs: input key -> tf.TensorSpec of the signature.
        defaults: the inputs that have a SignatureDef default (PlaceholderWithDefault): a request may
            leave them out, as TF Serving allows; the caller fills them in.
    Returns:
        (input key -> array of every input sent, ROW or COLUMNAR).
    """
    if not specs:
        raise invalid("The signature has no inputs")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid("Not formatted correctly: expecting only one of 'inputs' or 'instances' keys to exist")
    names = sorted(specs)
    required = sorted(set(names) - set(defaults))
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid("Expecting 'instances' to be an list/array")
        if not instances:
            raise invalid("No values in 'instances' array")
        objects = _is_named_object(instances[0])
        if not objects and len(names) > 1:
            raise invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                          f"required as per tensorinfo_map: {','.join(names)}")
        if objects:
            sent = sorted(instances[0])
            columns: dict[str, list] = {n: [] for n in sent if n in specs}
            for i, element in enumerate(instances):
                if not _is_named_object(element):
                    raise invalid(f"Expecting object but got list at item {i} of input list")
                extra = sorted(set(element) - set(names))
                if extra:
                    raise invalid(f"Failed to process element: {i} key: {extra[0]} of 'instances' list. "
                                  f"Error: JSON object: does not have named input: {extra[0]}")
                missing = sorted(set(required) - set(element))
                if missing or sorted(element) != sent:
                    raise invalid(f"Failed to process element: {i} of 'instances' list. JSON object keys "
                                  f"must be equal to: {','.join(required)}"
                                  + (f" (optional: {','.join(sorted(defaults))}; every instance sends the same)"
                                     if defaults else "")
                                  + (f" (missing: {','.join(missing)})" if missing else ""))
                for n in sent:
                    columns[n].append(element[n])
        else:
            for i, element in enumerate(instances):
                if _is_named_object(element):
                    raise invalid(f"Expecting value/list but got object at item {i} of input list")
            columns = {names[0]: instances}
        tensors = {n: to_array(v, specs[n].dtype, f"'instances' input {n!r}") for n, v in columns.items()}
        return tensors, ROW
    if has_inputs:
        value = doc["inputs"]
        if not _is_named_object(value):
            if len(names) > 1:
                raise invalid("inputs is a plain value/list, but expecting an object as multiple input "
                              f"tensors required as per tensorinfo_map: {','.join(names)}")
            return {names[0]: to_array(value, specs[names[0]].dtype, f"'inputs' input {names[0]!r}")}, COLUMNAR
        for n in required:
            if n not in value:
                raise invalid(f"Missing named input: {n} in 'inputs' object.")
        extra = sorted(set(value) - set(names))
        if extra:
            raise invalid(f"Unknown named input(s): {','.join(extra)} in 'inputs' object. "
                          f"The signature's inputs are: {','.join(names)}")
        return {n: to_array(value[n], specs[n].dtype, f"'inputs' input {n!r}") for n in names if n in value}, COLUMNAR
    raise invalid("Missing 'inputs' or 'instances' key")


def to_array(value: Any, dtype, what: str = "input") -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of the TF dtype, or INVALID_ARGUMENT."""
    import tensorflow as tf

    if dtype == tf.string:
        return _string_array(value, what)
    if isinstance(value, dict):
        raise _type_error(value, dtype, what)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise invalid(f"{what}: the nested lists are not rectangular (every list at one level must "
                      "have the same length)") from None
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(dtype.as_numpy_dtype)
    if dtype.is_floating:
        if kind not in "iuf":
            raise _type_error(value, dtype, what)
        if dtype != tf.float64 and kind == "f":
            limit = float(np.finfo(np.float32 if dtype == tf.bfloat16 else dtype.as_numpy_dtype).max)
            finite = array[np.isfinite(array)]
            if finite.size and float(np.max(np.abs(finite))) > limit:
                raise invalid(f"{what}: cannot convert JSON value {float(np.max(np.abs(finite)))} to "
                              f"{dtype.name} without loss of precision")
    elif dtype.is_integer:
        if kind not in "iu":
            raise _type_error(value, dtype, what)
        info = np.iinfo(dtype.as_numpy_dtype)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise invalid(f"{what}: value out of range for {dtype.name}")
    elif dtype == tf.bool:
        if kind != "b":
            raise _type_error(value, dtype, what)
    else:
        raise ServingError("UNIMPLEMENTED", f"{what}: conversion of JSON values to type {dtype.name} "
                                            "is not supported")
    return array.astype(dtype.as_numpy_dtype)


def _string_array(value: Any, what: str) -> np.ndarray:
    shape: list[int] = []
    flat: list[bytes] = []
    leaf_level = [None]

    def walk(v, level):
        if isinstance(v, list):
            if level == len(shape):
                if leaf_level[0] is not None:
                    raise invalid(f"{what}: encountered a list at level {level}, deeper than the values "
                                  "before it")
                shape.append(len(v))
            elif len(v) != shape[level]:
                raise invalid(f"{what}: encountered list at unexpected size: {len(v)} at level: {level} "
                              f"expected size: {shape[level]}")
            for x in v:
                walk(x, level + 1)
            return
        if leaf_level[0] is None:
            leaf_level[0] = level
        if level != len(shape) or level != leaf_level[0]:
            raise invalid(f"{what}: JSON value {_short(v)} found at incorrect level: {level + 1} in the "
                          f"JSON DOM. Expected at level: {len(shape)}")
        if isinstance(v, str):
            flat.append(v.encode("utf-8", "surrogatepass"))
        elif _is_b64(v):
            flat.append(_b64decode(v[B64], what))
        else:
            raise _type_error(v, "string", what)

    walk(value, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{what}: Unable to base64 decode") from None


def _is_b64(v) -> bool:
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get(B64), str)


def _is_named_object(v) -> bool:
    return isinstance(v, dict) and not _is_b64(v)


def _type_error(value, dtype, what: str) -> ServingError:
    kind = {dict: "Object", list: "Array", str: "String", bool: "Bool", type(None): "Null"}.get(type(value), "Number")
    name = dtype if isinstance(dtype, str) else dtype.name
    return invalid(f"{what}: JSON Value: {_short(value)} Type: {kind} is not of expected type: {name}")


def _short(value, limit: int = 120) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------------------------
# Responses.

def response_json(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """{"predictions": ...} (ROW) or {"outputs": ...} (COLUMNAR) as compact JSON bytes."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {n: np.asarray(outputs[n]) for n in names}
    if fmt == ROW:
        batch = None
        for n in names:
            if arrays[n].ndim == 0:
                raise invalid(f"Tensor name: {n} has no shape information (a scalar output cannot be "
                              "returned in row format; send 'inputs' instead of 'instances')")
            size = arrays[n].shape[0]
            if batch is not None and size != batch:
                raise invalid(f"Tensor name: {n} has inconsistent batch size: {size} expecting: {batch} "
                              "(send 'inputs' instead of 'instances')")
            batch = size
        columns = {n: json_value(arrays[n], n) for n in names}
        if len(names) == 1:
            body = {"predictions": columns[names[0]]}
        else:
            body = {"predictions": [{n: columns[n][i] for n in names} for i in range(batch)]}
    else:
        if len(names) == 1:
            body = {"outputs": json_value(arrays[names[0]], names[0])}
        else:
            body = {"outputs": {n: json_value(arrays[n], n) for n in names}}
    return json.dumps(body, separators=(",", ":")).encode()


def json_value(array: np.ndarray, name: str = "") -> Any:
    """A tensor as nested JSON lists (strings decoded as UTF-8, or {"b64"} for "*_bytes" names)."""
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind in "OSU":
        if name.endswith(BYTES_SUFFIX):
            conv = lambda b: {B64: base64.b64encode(_as_bytes(b)).decode("ascii")}
        else:
            conv = lambda b: _as_bytes(b).decode("utf-8", "replace")
        if array.ndim == 0:
            return conv(array.item())
        out = np.empty(array.size, dtype=object)
        out[:] = [conv(x) for x in array.reshape(-1)]
        return out.reshape(array.shape).tolist()
    if kind == "f" or array.dtype.name == "bfloat16":
        if array.dtype != np.float64:
            array = array.astype(np.float32)
            if array.size <= CLEAN_FLOAT_LIMIT:
                # The shortest decimal that reads back as the same float32, as TF Serving writes it.
                return array.astype(str).astype(np.float64).tolist()
        return array.astype(np.float64).tolist()
    if kind == "c":
        raise invalid(f"Tensor name: {name}: complex outputs cannot be written as JSON")
    return array.tolist()


def _as_bytes(x) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode("utf-8")
