"""What the REST and gRPC front ends share: resolve a model, check inputs, run a signature, and
describe models, all with TF Serving's messages and status codes.

Everything here is blocking (TensorFlow, JSON of possibly large tensors): the front ends call it
from a thread pool, never on the event loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2

from core.serving import codec, errors
from core.serving.registry import ModelRegistry, Servable

SIGNATURE_DEF_FIELD = "signature_def"
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_TENSOR_BYTES = 64 << 20


class ModelService:
    """Args:
        registry: the served models.
        max_batch: most examples (the first dimension of an input whose signature leaves it open) per
            request; beyond it a request is refused before anything runs.
        max_tensor_bytes: most bytes one gRPC input may take once expanded: a TensorProto may declare
            a shape larger than the values it carries (the last value is repeated).
    """

    def __init__(self, registry: ModelRegistry, *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES):
        self.registry = registry
        self.max_batch = max_batch
        self.max_tensor_bytes = max_tensor_bytes

    # ------------------------------------------------------------------------------------------
    # Predict.

    def run(self, servable: Servable, signature: str, inputs: Mapping[str, np.ndarray]) -> tuple[str, dict]:
        """Checks `inputs` against the signature, runs it; returns (signature name, outputs)."""
        import tensorflow as tf

        name, fn = servable.signature(signature)
        specs = servable.input_specs[name]
        defaults = _defaults(servable, name)
        check_inputs(servable.name, name, inputs, specs, defaults, self.max_batch)
        # Left-out inputs take their SignatureDef default, as PlaceholderWithDefault does in TF Serving.
        feeds = {k: tf.constant(inputs[k] if k in inputs else defaults[k], dtype=specs[k].dtype) for k in specs}
        try:
            outputs = fn(**feeds)
        except Exception as err:  # noqa: BLE001 - op errors (corrupt images...) are answered, not raised
            raise errors.from_exception(err) from None
        return name, {k: v.numpy() for k, v in outputs.items()}

    def rest_predict(self, model: str, version: int | None, label: str | None, body: bytes) -> bytes:
        doc = codec.parse_body(body)
        signature = codec.signature_name(doc)
        servable = self.registry.get(model, version, label)
        name, _ = servable.signature(signature)
        try:
            inputs, fmt = codec.request_tensors(doc, servable.input_specs[name], _defaults(servable, name))
        except RecursionError:  # a document just under the parser's depth limit, walked once more
            raise errors.invalid("JSON Parse error: arrays/objects nested too deeply") from None
        _, outputs = self.run(servable, name, inputs)
        return codec.response_json(outputs, fmt)

    def grpc_predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        import tensorflow as tf

        servable = self._resolve(request.model_spec)
        name, _ = servable.signature(request.model_spec.signature_name)
        specs = servable.input_specs[name]
        check_input_names(servable.name, request.inputs.keys(), specs, _defaults(servable, name))
        inputs = {}
        for key, proto in request.inputs.items():
            expected = specs[key].dtype
            if proto.dtype != expected.as_datatype_enum:
                received = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "an unset dtype"
                raise errors.invalid(f"Expected input {key} to be {expected.name} but received {received}")
            check_tensor_proto(key, proto, specs[key], self.max_batch, self.max_tensor_bytes)
            try:
                inputs[key] = tf.make_ndarray(proto)
            except Exception as err:  # noqa: BLE001 - malformed TensorProto
                raise errors.invalid(f"tensor parsing error: {key}: {err}") from None
        outputs_filter = list(request.output_filter)
        name, outputs = self.run(servable, name, inputs)
        if outputs_filter:
            unknown = [k for k in outputs_filter if k not in outputs]
            if unknown:
                raise errors.invalid(f"output tensor alias not found in signature: {unknown[0]} Outputs "
                                     f"expected to be in the set {{{','.join(sorted(outputs))}}}.")
            outputs = {k: outputs[k] for k in outputs_filter}
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(_model_spec(servable, name))
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def _resolve(self, spec: model_pb2.ModelSpec) -> Servable:
        which = spec.WhichOneof("version_choice")
        version = spec.version.value if which == "version" else None
        label = spec.version_label if which == "version_label" else None
        return self.registry.get(spec.name, version, label)

    # ------------------------------------------------------------------------------------------
    # Metadata and status.

    def metadata(self, model: str, version: int | None = None, label: str | None = None,
                 fields=(SIGNATURE_DEF_FIELD,)) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not model:
            raise errors.invalid("Missing model name in request.")
        fields = list(fields)
        if not fields:
            raise errors.invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != SIGNATURE_DEF_FIELD:
                raise errors.ServingError("INVALID_ARGUMENT", f"Metadata field {field} is not supported")
        servable = self.registry.get(model, version, label)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(sig)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.CopyFrom(_model_spec(servable, ""))
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    def grpc_metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = request.model_spec
        which = spec.WhichOneof("version_choice")
        return self.metadata(spec.name, spec.version.value if which == "version" else None,
                             spec.version_label if which == "version_label" else None,
                             fields=request.metadata_field)

    def rest_metadata(self, model: str, version: int | None, label: str | None) -> bytes:
        response = self.metadata(model, version, label)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
        body = {"model_spec": _to_dict(response.model_spec),
                "metadata": {SIGNATURE_DEF_FIELD: _to_dict(signature_map)}}
        return json.dumps(body, indent=1).encode()

    def status(self, model: str, version: int | None = None, label: str | None = None):
        if not model:
            raise errors.invalid("Missing model name in request.")
        return self.registry.status(model, version, label)

    def grpc_status(self, request):
        spec = request.model_spec
        which = spec.WhichOneof("version_choice")
        return self.status(spec.name, spec.version.value if which == "version" else None,
                           spec.version_label if which == "version_label" else None)

    def rest_status(self, model: str, version: int | None, label: str | None) -> bytes:
        return json.dumps(_to_dict(self.status(model, version, label)), indent=1).encode()


def _defaults(servable: Servable, signature: str) -> Mapping[str, np.ndarray]:
    return getattr(servable, "input_defaults", {}).get(signature, {})


def check_input_names(model: str, sent, specs: Mapping, defaults: Mapping = ()) -> None:
    """Every input without a default sent, nothing the signature does not have."""
    sent, known = set(sent), set(specs)
    required = known - set(defaults)
    if not sent <= known or not required <= sent:
        raise errors.invalid(
            f"Request inputs do not match required inputs for model `{model}`. "
            f"Send extra: {{{','.join(sorted(sent - known))}}}. "
            f"Missing but required: {{{','.join(sorted(required - sent))}}}.")


def check_inputs(model: str, signature: str, inputs: Mapping[str, np.ndarray], specs: Mapping,
                 defaults: Mapping = (), max_batch: int | None = None) -> None:
    """Input names, shapes against the signature's (partially known) shapes, and the batch limit."""
    check_input_names(model, inputs.keys(), specs, defaults)
    for key, value in inputs.items():
        spec = specs[key]
        shape = tuple(np.shape(value))
        if not spec.shape.is_compatible_with(shape):
            raise errors.invalid(f"Input {key!r} of signature {signature!r} has shape "
                                 f"[{','.join(map(str, shape))}] but the model expects {_shape_text(spec.shape)} "
                                 "(? is any size)")
        check_batch(key, shape, spec, max_batch)


def check_batch(key: str, shape, spec, max_batch: int | None) -> None:
    """The first dimension of an input whose signature leaves it open is the batch: at most max_batch."""
    if max_batch is None or not shape or not spec.shape.rank or spec.shape[0] is not None:
        return
    if shape[0] > max_batch:
        raise errors.invalid(f"Input {key!r} holds {shape[0]} examples; this server takes at most {max_batch} "
                             "per request (catalogue serve --max-batch): send them in several requests")


def check_tensor_proto(key: str, proto, spec, max_batch: int | None, max_bytes: int) -> None:
    """A TensorProto's declared shape, before it is expanded into an array: the batch limit, and at
    most `max_bytes` once expanded (a proto may carry one value for a shape of millions)."""
    import tensorflow as tf

    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise errors.invalid(f"tensor parsing error: {key}: the shape {dims} is not fully defined")
    check_batch(key, tuple(dims), spec, max_batch)
    count = int(np.prod(dims, dtype=object)) if dims else 1
    if proto.dtype == tf.string.as_datatype_enum:
        values = proto.string_val
        size = sum(map(len, values)) + max(count - len(values), 0) * (len(values[-1]) if values else 0)
    else:
        size = count * tf.dtypes.as_dtype(proto.dtype).size
    if size > max_bytes:
        raise errors.ServingError(
            "RESOURCE_EXHAUSTED", f"Input {key!r} declares shape [{','.join(map(str, dims))}] ({count} elements, "
            f"{size} bytes once expanded), more than the limit of {max_bytes} bytes per input")


def _shape_text(shape) -> str:
    if shape.rank is None:
        return "[?]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def _model_spec(servable: Servable, signature: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature)
    spec.version.value = servable.version
    return spec


def _to_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
