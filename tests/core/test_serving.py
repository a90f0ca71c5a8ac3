"""`catalogue serve` over real HTTP and gRPC on loopback: every endpoint for the image
classification export and a toy model, the tensorflow-serving-api client classes, a bad-input
matrix, hot reload during traffic, a broken export, and `saved_model_cli run` on the export."""

import base64
import io
import json
import logging
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from core import export as export_lib
from core.serving import server as server_lib
from core.serving.config import batching_problems
from core.serving.server import ModelServer
from core.serving.testing import (
    assert_output_matches,
    columnar_body,
    export_smoke_app,
    row_body,
    rows_to_columns,
    saved_model_cli_run,
)

IC = "image_classification"
MAX_BODY = 2 << 20


SLOW_STEP_WEIGHTS = np.eye(64, dtype=np.float32) * 0.5


def toy_export(out, bias: float):
    """y = x1 + 2 x2 + bias, plus a two-input signature with a `_bytes` output, a scalar one, one with
    an input that has a default, and a loop as slow as asked (`steps`) to test deadlines."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([np.array([[1.0], [2.0]], np.float32), np.array([bias], np.float32)])
    weights = tf.constant(SLOW_STEP_WEIGHTS)
    default_scale = tf.constant([2.0])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def serve(x):
        return {"y": model(x)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                  tf.TensorSpec([None], tf.string, name="text")])
    def multi(a, text):
        return {"y": model(a), "text_bytes": text, "length": tf.strings.length(text)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def total(x):
        return {"total": tf.reduce_sum(model(x))}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.float32, name="scale")])
    def scaled(x, scale=default_scale):
        return {"y": model(x) * scale[:, None]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="steps")])
    def slow(steps):  # about 13 us a step on one core: 10**7 steps is minutes
        def body(i, x):
            return i + 1, tf.tanh(tf.matmul(x, weights))
        _, x = tf.while_loop(lambda i, x: i < tf.reduce_max(steps), body, (0, tf.ones([64, 64])))
        return {"value": tf.fill(tf.shape(steps), tf.reduce_sum(x))}

    return export_lib.export_endpoints(out, "toy", trackables=[model], endpoints={
        "serving_default": serve, "multi": multi, "total": total, "scaled": scaled, "slow": slow})


def write_config(path, models):
    body = ""
    for name, base, extra in models:
        body += f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" {extra} }}\n'
    tmp = path.with_suffix(".tmp")
    tmp.write_text("model_config_list {\n" + body + "}\n")
    tmp.replace(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    models = root / "models"
    pipeline, ic_path = export_smoke_app(IC, models, workdir=root / "runs")
    toy_export(models, bias=1.0)
    shutil.copytree(models / "toy" / "1", models / "broken" / "1")
    config = root / "models.config"
    entries = [
        (IC, models / IC, ""),
        ("toy", models / "toy", ""),
        ("toy_pinned", models / "toy",
         'model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 }'),
        ("broken", models / "broken", ""),
    ]
    write_config(config, entries)
    server = ModelServer(config, port=0, grpc_port=0, poll_seconds=0.2, max_body_bytes=MAX_BODY).start()
    channel = grpc.insecure_channel(server.grpc_target)
    yield {"server": server, "root": root, "models": models, "config": config, "entries": entries,
           "pipeline": pipeline, "ic_path": ic_path, "loaded": tf.saved_model.load(str(ic_path)),
           "predict": prediction_service_pb2_grpc.PredictionServiceStub(channel),
           "model_service": model_service_pb2_grpc.ModelServiceStub(channel)}
    channel.close()
    server.stop()


def http(served, method, path, body=None, raw: bytes | None = None, headers: dict | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(served["server"].rest_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        payload = err.read()
        assert err.headers.get("Content-Type", "").startswith("application/json"), payload
        return err.code, json.loads(payload)


def png(value=128, size=(20, 12)):
    buf = io.BytesIO()
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def wait_available(served, model, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http(served, "GET", f"/v1/models/{model}")
        if status == 200 and any(s["state"] == "AVAILABLE" for s in body["model_version_status"]):
            return
        time.sleep(0.1)
    raise AssertionError(f"{model} did not become available: {body}")


# ---------------------------------------------------------------------------------------------
# Status and metadata.


def test_model_status_rest_and_grpc(served):
    status, body = http(served, "GET", "/v1/models/toy")
    assert status == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                              "status": {"error_code": "OK", "error_message": ""}}]}
    assert http(served, "GET", "/v1/models/toy/versions/1")[1] == body
    assert http(served, "GET", "/v1/models/toy_pinned/labels/stable")[0] == 200
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = IC
    response = served["model_service"].GetModelStatus(request, timeout=30)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state) for s in response.model_version_status] == [(1, available)]


def test_metadata_lists_the_signature_defs(served):
    status, body = http(served, "GET", f"/v1/models/{IC}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": IC, "version": "1", "signature_name": ""}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "predict_images"} <= set(sigs)
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert [d["size"] for d in default["inputs"]["image_bytes"]["tensor_shape"]["dim"]] == ["-1"]
    assert set(default["outputs"]) == {"classes", "scores"}
    assert default["outputs"]["scores"]["dtype"] == "DT_FLOAT"
    assert http(served, "GET", f"/v1/models/{IC}/versions/1/metadata")[1] == body

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = IC
    response = served["predict"].GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert response.model_spec.version.value == 1
    assert signature_map.signature_def["serving_default"].inputs["image_bytes"].dtype == tf.string.as_datatype_enum


# ---------------------------------------------------------------------------------------------
# Predict: every signature of the app, row and columnar, REST and gRPC, against the SavedModel.


def test_rest_predict_matches_the_savedmodel_for_every_signature(served):
    pipeline, loaded = served["pipeline"], served["loaded"]
    for signature, inputs in pipeline.example_requests().items():
        expected = export_lib.call_signature(loaded, signature, inputs)
        status, body = http(served, "POST", f"/v1/models/{IC}:predict", columnar_body(inputs, signature))
        assert status == 200, body
        outputs = body["outputs"] if len(expected) > 1 else {next(iter(expected)): body["outputs"]}
        for name, value in expected.items():
            assert_output_matches(outputs[name], value, name, f"{signature} columnar")
        rows = row_body(inputs, signature)
        status, body = http(served, "POST", f"/v1/models/{IC}/versions/1:predict", rows)
        assert status == 200, body
        columns = rows_to_columns(body["predictions"], sorted(expected))
        for name, value in expected.items():
            assert_output_matches(columns[name], value, name, f"{signature} row")


def test_b64_inputs_and_bytes_outputs(served):
    # Arbitrary bytes in (b64) come back base64-encoded from an output named *_bytes.
    raw = b"\x00\xffbinary"
    body = {"signature_name": "multi",
            "instances": [{"a": [1, 2], "text": {"b64": base64.b64encode(raw).decode()}},
                          {"a": [3, 4], "text": "plain text"}]}
    status, answer = http(served, "POST", "/v1/models/toy:predict", body)
    assert status == 200, answer
    first, second = answer["predictions"]
    assert base64.b64decode(first["text_bytes"]["b64"]) == raw
    assert base64.b64decode(second["text_bytes"]["b64"]) == b"plain text"
    assert (first["length"], second["length"]) == (len(raw), 10)
    assert (first["y"], second["y"]) == ([6.0], [12.0])
    # The image endpoint takes encoded images of any size as b64.
    status, answer = http(served, "POST", f"/v1/models/{IC}:predict",
                          {"instances": [{"b64": base64.b64encode(png(size=(40, 25))).decode()}]})
    assert status == 200 and len(answer["predictions"][0]["classes"]) == 3
    # Scalar outputs work in columnar format.
    status, answer = http(served, "POST", "/v1/models/toy:predict",
                          {"signature_name": "total", "inputs": [[1, 2], [0, 0]]})
    assert (status, answer) == (200, {"outputs": 7.0})  # (1 + 4 + 1) + (0 + 0 + 1)


def test_grpc_predict_with_the_serving_api_classes(served):
    pipeline, loaded, stub = served["pipeline"], served["loaded"], served["predict"]
    for signature, inputs in pipeline.example_requests().items():
        expected = export_lib.call_signature(loaded, signature, inputs)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = IC
        request.model_spec.signature_name = signature
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        response = stub.Predict(request, timeout=60)
        assert response.model_spec.version.value == 1 and response.model_spec.signature_name == signature
        got = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        export_lib.assert_outputs_match(expected, got, context=f"gRPC {signature}")
    # output_filter, version labels.
    request = predict_pb2.PredictRequest(output_filter=["classes"])
    request.model_spec.name = IC
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([png()]))
    assert list(stub.Predict(request, timeout=60).outputs) == ["classes"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy_pinned"
    request.model_spec.version_label = "stable"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1, 1]], np.float32)))
    assert tf.make_ndarray(stub.Predict(request, timeout=30).outputs["y"]).tolist() == [[4.0]]


def _grpc_error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def test_grpc_errors(served):
    stub = served["predict"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "nope"
    assert _grpc_error(stub.Predict, request)[0] == grpc.StatusCode.NOT_FOUND
    request = predict_pb2.PredictRequest()
    request.model_spec.name = IC
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([b"not an image"]))
    code, details = _grpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image" in details.lower()
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(np.zeros(2, np.float32)))
    code, details = _grpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Expected input image_bytes to be string" in details
    request = predict_pb2.PredictRequest(output_filter=["nope"])
    request.model_spec.name = IC
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([png()]))
    assert _grpc_error(stub.Predict, request)[0] == grpc.StatusCode.INVALID_ARGUMENT
    request = predict_pb2.PredictRequest()
    request.model_spec.name = IC
    request.inputs["wrong"].CopyFrom(tf.make_tensor_proto([png()]))
    code, details = _grpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Missing but required: {image_bytes}" in details
    assert _grpc_error(stub.Classify, classification_pb2.ClassificationRequest())[0] == \
        grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------------------------------------
# Bad input: 4xx with a clear message, and the server keeps serving.

TRUNCATED_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n truncated").decode()
BAD_REQUESTS = [
    # (method, path, body (dict, or bytes for raw), status, message fragment)
    ("POST", "/v1/models/toy:predict", b"", 400, "document is empty"),
    ("POST", "/v1/models/toy:predict", b"{not json", 400, "JSON Parse error"),
    ("POST", "/v1/models/toy:predict", b"[1, 2]", 400, "Is not object"),
    ("POST", "/v1/models/toy:predict", {"instances": [[1, 2]], "inputs": [[1, 2]]}, 400, "only one of"),
    ("POST", "/v1/models/toy:predict", {"data": [[1, 2]]}, 400, "Missing 'inputs' or 'instances'"),
    ("POST", "/v1/models/toy:predict", {"instances": []}, 400, "No values"),
    ("POST", "/v1/models/nope:predict", {"instances": [[1, 2]]}, 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/toy/versions/7:predict", {"instances": [[1, 2]]}, 404, "Specific(toy, 7)"),
    ("POST", "/v1/models/toy/labels/beta:predict", {"instances": [[1, 2]]}, 400, "version label: beta"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "nope", "instances": [[1, 2]]}, 400,
     'Serving signature name: "nope" not found'),
    ("POST", "/v1/models/toy:predict", {"signature_name": 3, "instances": [[1, 2]]}, 400, "must be a string"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "multi", "inputs": {"a": [[1, 2]]}}, 400,
     "Missing named input: text"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "multi", "inputs": {"a": [[1, 2]], "text": ["t"],
                                                                               "b": 1}}, 400, "Unknown named input"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "multi", "instances": [{"a": [1, 2], "text": "t",
                                                                                  "b": 1}]}, 400, "named input: b"),
    ("POST", "/v1/models/toy:predict", {"instances": [["a", "b"]]}, 400, "not of expected type: float32"),
    ("POST", "/v1/models/toy:predict", {"instances": [[1, 2, 3]]}, 400, "has shape [1,3] but the model expects [?,2]"),
    ("POST", "/v1/models/toy:predict", {"instances": [[1, 2], [3]]}, 400, "not rectangular"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "multi", "inputs": {"a": [[1, 2]],
                                                                              "text": [{"b64": "#!"}]}}, 400, "base64"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "total", "instances": [[1, 2]]}, 400,
     "no shape information"),
    ("POST", f"/v1/models/{IC}:predict", {"instances": [{"b64": base64.b64encode(b"not an image").decode()}]},
     400, "image"),
    ("POST", f"/v1/models/{IC}:predict", {"instances": [{"b64": TRUNCATED_PNG}]}, 400, "PNG"),
    ("POST", f"/v1/models/{IC}:predict", {"signature_name": "predict_images", "inputs": [[[[1, 2]]]]}, 400,
     "expects [?,?,?,3]"),
    ("POST", "/v1/models/toy:classify", {"examples": []}, 501, "only :predict"),
    ("POST", "/v1/models/..%2F..%2Fetc:predict", {"instances": [[1, 2]]}, 404, "Latest(../../etc)"),
    ("GET", "/v1/models", None, 400, "Missing model name"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/toy/versions/5", None, 404, "Could not find version 5 of model toy"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found"),
    ("PUT", "/v1/models/toy", None, 400, "Malformed request: PUT /v1/models/toy"),
    ("GET", "/v1/models/toy:predict", None, 400, "Malformed request"),
    ("GET", "/somewhere/else", None, 404, "/v1/models/NAME"),
    ("POST", "/v1/models/toy:predict", b"{" + b" " * (MAX_BODY + 10) + b"}", 413, "exceeds the limit"),
    ("POST", "/v1/models/toy:predict", b"[" * 100_000, 400, "nested too deeply"),
    ("POST", "/v1/models/toy:predict", {"instances": [[1, 2]] * 300}, 400,
     "'x' holds 300 examples; this server takes at most 256"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "scaled", "inputs": {"scale": [2.0]}}, 400,
     "Missing named input: x"),
    ("POST", f"/v1/models/{IC}:predict", {"instances": [{"b64": base64.b64encode(b"\xff\xfe\x00garbage").decode()}]},
     400, "Invalid image_bytes: expected encoded JPEG, PNG, GIF or BMP bytes"),
]


@pytest.mark.parametrize("method, path, body, status, message", BAD_REQUESTS,
                         ids=[f"{i}-{c[4][:30]}" for i, c in enumerate(BAD_REQUESTS)])
def test_bad_requests_get_clear_errors(served, method, path, body, status, message):
    raw = body if isinstance(body, bytes) else None
    got_status, answer = http(served, method, path, None if raw is not None else body, raw=raw)
    assert got_status == status, answer
    assert set(answer) == {"error"} and message in answer["error"], answer
    # ... and the server keeps serving.
    assert http(served, "POST", "/v1/models/toy:predict", {"instances": [[1, 1]]}) == (200, {"predictions": [[4.0]]})


def test_tf_work_does_not_block_the_event_loop(served):
    # Occupy every model worker thread: a prediction must then wait for a worker, while the event
    # loop still answers status requests at once.
    executor = served["server"].executor
    release = threading.Event()
    blockers = [executor.submit(release.wait, 60) for _ in range(executor._max_workers)]
    answer = []
    client = threading.Thread(target=lambda: answer.append(
        http(served, "POST", f"/v1/models/{IC}:predict", {"instances": [{"b64": base64.b64encode(png()).decode()}]})))
    try:
        client.start()
        client.join(timeout=0.5)
        assert answer == []  # queued behind the busy workers, not run on the loop
        started = time.perf_counter()
        assert http(served, "GET", "/v1/models/toy")[0] == 200
        assert http(served, "GET", f"/v1/models/{IC}/metadata")[0] == 200
        assert time.perf_counter() - started < 5
    finally:
        release.set()
    client.join(timeout=60)
    assert all(b.result() for b in blockers)
    assert answer and answer[0][0] == 200


# ---------------------------------------------------------------------------------------------
# saved_model_cli (a TF1 session, as tensorflow_model_server loads models).


def test_saved_model_cli_runs_the_serving_signature(served):
    pipeline, loaded = served["pipeline"], served["loaded"]
    inputs = pipeline.example_requests()["serving_default"]
    expected = export_lib.call_signature(loaded, "serving_default", inputs)
    got = saved_model_cli_run(served["ic_path"], "serving_default", inputs)
    export_lib.assert_outputs_match(expected, {k: np.asarray(v, dtype=expected[k].dtype) for k, v in got.items()},
                                    context="saved_model_cli serving_default")


def test_exports_can_be_batched_by_tensorflow_model_server(served):
    # make serve-docker runs with --enable_batching: every input and output needs a batch dimension.
    signature_defs = served["server"].registry.get(IC).signature_defs
    assert batching_problems(signature_defs) == []
    toy = served["server"].registry.get("toy_pinned").signature_defs
    assert batching_problems(toy) == ["total: output 'total' is a scalar (needs a batch dimension)"]


# ---------------------------------------------------------------------------------------------
# TF Serving's rules: defaults of omitted inputs, limits on what a request may cost, deadlines.

PINNED = "/v1/models/toy_pinned:predict"


def test_inputs_with_signature_defaults_may_be_left_out(served):
    x = [[1, 1], [0, 1]]  # y = 4 and 3; `scale` defaults to [2.0]
    assert http(served, "POST", PINNED, {"signature_name": "scaled", "inputs": {"x": x}}) == \
        (200, {"outputs": [[8.0], [6.0]]})
    assert http(served, "POST", PINNED, {"signature_name": "scaled", "inputs": {"x": x, "scale": [3.0]}}) == \
        (200, {"outputs": [[12.0], [9.0]]})
    rows = [{"x": [1, 1]}, {"x": [0, 1]}]
    assert http(served, "POST", PINNED, {"signature_name": "scaled", "instances": rows}) == \
        (200, {"predictions": [[8.0], [6.0]]})
    rows = [{"x": [1, 1], "scale": 1.0}, {"x": [0, 1], "scale": 3.0}]
    assert http(served, "POST", PINNED, {"signature_name": "scaled", "instances": rows}) == \
        (200, {"predictions": [[4.0], [9.0]]})
    status, body = http(served, "POST", PINNED, {"signature_name": "scaled",
                                                 "instances": [{"x": [1, 1]}, {"x": [0, 1], "scale": 3.0}]})
    assert status == 400 and "every instance sends the same" in body["error"], body
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "toy_pinned", "scaled"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(x, np.float32)))
    assert tf.make_ndarray(served["predict"].Predict(request, timeout=30).outputs["y"]).tolist() == [[8.0], [6.0]]
    # The metadata shows clients the default, as TF Serving's does.
    sig = http(served, "GET", "/v1/models/toy_pinned/metadata")[1]["metadata"]["signature_def"]["signature_def"]
    assert sig["scaled"]["defaults"]["scale"]["float_val"] == [2.0]


def test_grpc_tensor_shapes_are_checked_before_they_are_expanded(served):
    # A TensorProto repeats its last value to fill the shape it declares: 81 bytes can ask for gigabytes.
    stub = served["predict"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy_pinned"
    request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(
        dtype=tf.float32.as_datatype_enum, float_val=[1.0],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": 20000}, {"size": 2}])))
    code, details = _grpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'x' holds 20000 examples" in details, details
    request = predict_pb2.PredictRequest()
    request.model_spec.name = IC
    request.inputs["image_bytes"].CopyFrom(tensor_pb2.TensorProto(
        dtype=tf.string.as_datatype_enum, string_val=[b"x" * 100_000],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": 100}])))
    code, details = _grpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "10000000 bytes once expanded" in details, details


def test_json_nesting_bombs_are_400s_without_a_traceback(served, caplog):
    deep_text = b'{"signature_name": "multi", "inputs": {"a": [[1, 2]], "text": ' + b"[" * 900 + b'"t"' + \
        b"]" * 900 + b"}}"
    with caplog.at_level(logging.INFO, logger="core.serving"):
        for raw in (b"[" * 100_000, b'{"instances": ' + b"[" * 100_000, deep_text):
            status, body = http(served, "POST", "/v1/models/toy_pinned:predict", raw=raw)
            assert status == 400, body
    assert [r.getMessage() for r in caplog.records] == []


def _wait(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _slow(steps):
    return {"signature_name": "slow", "instances": [steps]}


def test_a_deadline_error_names_the_time_the_request_was_given():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from core.serving.errors import ServingError
    from core.serving.scheduler import Scheduler

    scheduler = Scheduler(ThreadPoolExecutor(1), 1, request_timeout_s=60)
    deadline = scheduler.deadline(0.2)
    time.sleep(0.05)  # reading and parsing the body takes some of it; the message keeps the client's 0.2 s
    with pytest.raises(ServingError, match=r"Deadline exceeded: no answer within 0\.2 s, so the work was cancelled"):
        asyncio.run(scheduler.run(time.sleep, 1.0, deadline=deadline))
    assert scheduler.deadline(120.0) - time.monotonic() == pytest.approx(60, abs=1)  # at most the server's


def test_a_job_that_waited_past_its_deadline_gets_the_same_answer_and_never_runs():
    from concurrent.futures import ThreadPoolExecutor

    from core.serving.errors import ServingError
    from core.serving.scheduler import Deadline, Scheduler

    ran = []
    scheduler = Scheduler(ThreadPoolExecutor(1), 1)
    # What a worker thread meets when it picks up a job whose deadline passed while it queued.
    with pytest.raises(ServingError, match=r"Deadline exceeded: no answer within 0\.5 s, so the work was cancelled"):
        scheduler._work(None, Deadline(time.monotonic() - 0.01, 0.5), ran.append, 1)
    assert ran == []


def test_deadlines_cancel_the_work_rest_and_grpc(served):
    scheduler = served["server"].scheduler
    cancelled = scheduler.cancelled
    started = time.perf_counter()
    status, body = http(served, "POST", PINNED, _slow(10 ** 8), headers={"X-Request-Timeout-S": "0.5"})
    assert status == 504 and "Deadline exceeded" in body["error"], body
    assert time.perf_counter() - started < 3
    # The loop (minutes of work) was cancelled, not left running: its thread is free again.
    _wait(lambda: scheduler.pending == 0, timeout=5)
    assert scheduler.cancelled == cancelled + 1
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "toy_pinned", "slow"
    request.inputs["steps"].CopyFrom(tf.make_tensor_proto(np.array([10 ** 8], np.int32)))
    with pytest.raises(grpc.RpcError) as info:
        served["predict"].Predict(request, timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait(lambda: scheduler.pending == 0, timeout=5)
    assert scheduler.cancelled == cancelled + 2
    assert http(served, "POST", PINNED, _slow(100), headers={"X-Request-Timeout-S": "10"})[0] == 200
    status, body = http(served, "POST", PINNED, _slow(100), headers={"X-Request-Timeout-S": "soon"})
    assert status == 400 and "X-Request-Timeout-S must be a number of seconds" in body["error"]


def _raw_request(body: bytes, headers: str = "") -> bytes:
    return (f"POST /v1/models/toy_pinned:predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n").encode() + body


def _connect(server):
    return socket.create_connection((server.host, server.port), timeout=10)


def test_a_departed_client_s_work_is_cancelled(served):
    server = served["server"]
    cancelled = server.scheduler.cancelled
    with _connect(server) as sock:
        sock.sendall(_raw_request(json.dumps(_slow(10 ** 8)).encode()))
        _wait(lambda: server.scheduler.running == 1)  # on a thread: its TF work is what gets cancelled
    _wait(lambda: server.scheduler.pending == 0, timeout=5)
    assert server.scheduler.cancelled == cancelled + 1


def test_a_stalled_body_gets_408(served):
    with _connect(served["server"]) as sock:
        request = _raw_request(b'{"instances": [[1, 1]]}', "X-Request-Timeout-S: 0.5\r\n")
        sock.sendall(request[:-10])  # the headers and part of the body, then nothing
        started = time.perf_counter()
        answer = b""
        while chunk := sock.recv(65536):  # headers and body may come in separate segments
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"Request body not received in time" in answer and time.perf_counter() - started < 3


@pytest.fixture
def small_server(served, monkeypatch):
    """One worker, one waiting place, four connections, headers within half a second."""
    monkeypatch.setattr(server_lib._Http, "header_timeout_s", 0.5)
    config = served["root"] / "small.config"
    write_config(config, [("toy", served["models"] / "toy", "model_version_policy { specific { versions: 1 } }")])
    with ModelServer(config, port=0, grpc_port=None, poll_seconds=0, workers=1, max_queue=1,
                     max_connections=4).start() as server:
        yield {"server": server}


def test_a_full_queue_sheds_load_with_429(small_server):
    scheduler = small_server["server"].scheduler
    answers = []
    busy = [threading.Thread(target=lambda: answers.append(http(
        small_server, "POST", "/v1/models/toy:predict", _slow(10 ** 8), headers={"X-Request-Timeout-S": "2"})))
        for _ in range(2)]
    busy[0].start()
    _wait(lambda: scheduler.pending == 1)
    busy[1].start()  # waits for the one worker
    _wait(lambda: scheduler.pending == 2)
    started = time.perf_counter()
    status, body = http(small_server, "POST", "/v1/models/toy:predict", {"instances": [[1, 1]]})
    assert status == 429 and "The server is busy" in body["error"], body
    assert time.perf_counter() - started < 1
    assert http(small_server, "GET", "/v1/models/toy")[0] == 200  # status still answers
    for thread in busy:
        thread.join(timeout=30)
    assert sorted(status for status, _ in answers) == [504, 504]
    assert http(small_server, "POST", "/v1/models/toy:predict", {"instances": [[1, 1]]}) == \
        (200, {"predictions": [[4.0]]})


def test_connections_are_capped_and_idle_ones_closed(small_server):
    server = small_server["server"]
    idle = [_connect(server) for _ in range(4)]
    try:
        with _connect(server) as extra:
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503") and b"Too many connections" in answer, answer
        started = time.perf_counter()
        for sock in idle:  # no request headers within half a second: closed by the server
            assert sock.recv(1024) == b""
        assert time.perf_counter() - started < 5
    finally:
        for sock in idle:
            sock.close()
    _wait(lambda: http(small_server, "GET", "/v1/models/toy")[0] == 200)


# ---------------------------------------------------------------------------------------------
# Versions: hot reload during traffic, temporary folders, broken exports, config changes.


def test_broken_export_is_reported_and_the_previous_version_keeps_serving(served):
    broken = served["models"] / "broken" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")  # a non-atomic copy gone wrong
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = http(served, "GET", "/v1/models/broken/versions/2")
        if status == 200 and body["model_version_status"][0]["state"] == "END":
            break
        time.sleep(0.1)
    entry = body["model_version_status"][0]
    assert entry["state"] == "END" and entry["status"]["error_code"] != "OK", body
    assert "Failed to load" in entry["status"]["error_message"]
    assert http(served, "POST", "/v1/models/broken:predict", {"instances": [[1, 1]]}) == (200, {"predictions": [[4.0]]})


def test_new_models_config_entries_are_picked_up(served):
    entries = [*served["entries"], ("toy_copy", served["models"] / "toy", "")]
    write_config(served["config"], entries)
    wait_available(served, "toy_copy")
    assert http(served, "POST", "/v1/models/toy_copy:predict", {"inputs": [[1, 1]]}) == (200, {"outputs": [[4.0]]})


def test_hot_reload_during_traffic_fails_no_request(served):
    models = served["models"]
    # Junk the poller must ignore: a hidden temporary folder and a version still being copied.
    (models / "toy" / ".tmp-99-junk").mkdir()
    (models / "toy" / ".tmp-99-junk" / "saved_model.pb").write_bytes(b"half written")
    (models / "toy" / "98").mkdir()
    stop, failures, answers = threading.Event(), [], set()
    lock = threading.Lock()

    def rest_client():
        while not stop.is_set():
            try:
                status, body = http(served, "POST", "/v1/models/toy:predict", {"instances": [[1, 1]]})
                with lock:
                    (answers.add(body["predictions"][0][0]) if status == 200 else failures.append(body))
            except Exception as err:  # noqa: BLE001 - any failure is recorded
                failures.append(repr(err))

    def grpc_client():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1, 1]], np.float32)))
        while not stop.is_set():
            try:
                response = served["predict"].Predict(request, timeout=30)
                with lock:
                    answers.add(float(tf.make_ndarray(response.outputs["y"])[0, 0]))
            except grpc.RpcError as err:
                failures.append(f"gRPC {err.code()}: {err.details()}")

    clients = [threading.Thread(target=rest_client) for _ in range(3)] + [threading.Thread(target=grpc_client)]
    for c in clients:
        c.start()
    try:
        time.sleep(0.3)
        # The export skips past the half-copied folder 98 (an integer folder) and lands as 99.
        assert toy_export(models, bias=5.0).name == "99"
        deadline = time.monotonic() + 60
        while 8.0 not in answers and time.monotonic() < deadline and not failures:
            time.sleep(0.05)
        time.sleep(0.3)  # more traffic on the new version
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=60)
    assert failures == []
    assert answers == {4.0, 8.0}  # bias 1 before, bias 5 after: nothing else, no error
    status, body = http(served, "GET", "/v1/models/toy")
    states = {s["version"]: s["state"] for s in body["model_version_status"]}
    assert states == {"99": "AVAILABLE", "1": "END"}  # 98 (no saved_model.pb) was never touched
    # The pinned model stays on version 1.
    assert http(served, "POST", "/v1/models/toy_pinned/labels/stable:predict", {"instances": [[1, 1]]})[1] == \
        {"predictions": [[4.0]]}


def test_cli_predict_asks_the_server_and_the_saved_model_alike(served, tmp_path, capsys):
    from core.cli import main

    image = tmp_path / "photo.png"
    image.write_bytes(png(size=(30, 20)))
    main(["predict", IC, str(image), "--server", served["server"].rest_url])
    from_server = json.loads(capsys.readouterr().out)
    main(["predict", IC, str(image), "--model", str(served["ic_path"])])
    from_model = json.loads(capsys.readouterr().out)
    assert from_server == from_model and len(from_server["output"]["classes"]) == 3
    main(["predict", IC, str(image), "--server", served["server"].rest_url, "--signature", "serving_default"])
    with pytest.raises(SystemExit, match="answered 404"):
        main(["predict", IC, str(image), "--server", served["server"].rest_url + "/nowhere"])


def test_exports_carry_warmup_requests_that_replay(served):
    records = export_lib.read_warmup_requests(served["ic_path"])
    assert {signature for signature, _ in records} == set(served["pipeline"].example_requests())
    for signature, inputs in records:
        outputs = export_lib.call_signature(served["loaded"], signature, inputs)
        assert all(len(v) == len(next(iter(inputs.values()))) for v in outputs.values())


# ---------------------------------------------------------------------------------------------
# core/serving/README.md's error table is what the server answers.

README = Path(__file__).resolve().parents[2] / "core" / "serving" / "README.md"
# First words of a row -> (path, body): the request that answers the row's example message.
ERROR_TABLE_REQUESTS = {
    "malformed JSON": ("/v1/models/toy:predict", b"[x"),
    "unknown signature": ("/v1/models/toy:predict", {"signature_name": "nope", "instances": [[1, 2]]}),
    "missing or extra input": ("/v1/models/toy:predict", {"instances": [[1, 2, 3]]}),
    "arrays/objects nested too deeply": ("/v1/models/toy:predict", b"[" * 100_000),
    "more examples than": ("/v1/models/toy:predict", {"instances": [[1, 2]] * 300}),
    "corrupt image": (f"/v1/models/{IC}:predict", {"instances": [{"b64": TRUNCATED_PNG}]}),
    "not an image at all": (f"/v1/models/{IC}:predict",
                            {"instances": [{"b64": base64.b64encode(b"\xff\xfegarbage").decode()}]}),
    "an image over the pixel limit": (f"/v1/models/{IC}:predict", {"instances": [{"b64": base64.b64encode(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (16000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
        ).decode()}]}),
    # 16 headers of 8000x5000 pixels: each at the per-image limit, four times it in all.
    "images over the pixel limit per request": (f"/v1/models/{IC}:predict", {"instances": [{"b64": base64.b64encode(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (8000).to_bytes(4, "big") + (5000).to_bytes(4, "big")
        + b"\x08\x02\x00\x00\x00").decode()}] * 16}),
    "`--request-timeout-s` or the client's own timeout": ("/v1/models/toy_pinned:predict", _slow(10 ** 8)),
    "unknown model or version": ("/v1/models/toy/versions/7:predict", {"instances": [[1, 2]]}),
    "unknown version label": ("/v1/models/toy/labels/beta:predict", {"instances": [[1, 2]]}),
    "body over": ("/v1/models/toy:predict", b"{" + b" " * (MAX_BODY + 10) + b"}"),
    "`:classify`": ("/v1/models/toy:classify", {"examples": []}),
}
CHECKED_ELSEWHERE = {  # rows that need another model, timing or many connections
    "text that is not UTF-8": "core.testing.AppContract.test_text_inputs_refuse_invalid_utf8_naming_the_input",
    "body not received": "test_a_stalled_body_gets_408",
    "every worker busy": "test_a_full_queue_sheds_load_with_429",
    "more than `--max-connections`": "test_connections_are_capped_and_idle_ones_closed",
}


def error_table() -> list[tuple[str, int, str]]:
    text = README.read_text()
    table = text[text.index("| what | status | example message |"):].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        what, status, example = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows.append((what, int(status), example.strip("`")))
    return rows


def test_the_readme_error_table_is_what_the_server_answers(served):
    rows = error_table()
    assert len(rows) == len(ERROR_TABLE_REQUESTS) + len(CHECKED_ELSEWHERE), [r[0] for r in rows]
    for what, status, example in rows:
        if any(what.startswith(key) for key in CHECKED_ELSEWHERE):
            continue
        (path, body), = [request for key, request in ERROR_TABLE_REQUESTS.items() if what.startswith(key)]
        raw = body if isinstance(body, bytes) else None
        headers = {"X-Request-Timeout-S": "0.5"} if "timeout" in what else None
        got, answer = http(served, "POST", path, None if raw else body, raw=raw, headers=headers)
        assert got == status, (what, answer)
        pattern = ".*".join(re.escape(part) for part in example.split("..."))
        assert re.fullmatch(pattern, answer["error"], re.DOTALL) if example else True, (what, answer["error"])
