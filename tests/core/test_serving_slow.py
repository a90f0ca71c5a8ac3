"""Slow serving suite (`make test-slow`): every landed app's smoke export served over REST and gRPC
for every signature, `saved_model_cli run` on every signature, and a bounded load test of two apps
at once against `catalogue serve` in its own process."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from core import export as export_lib
from core import registry
from core.serving.config import batching_problems
from core.serving.loadtest import markdown, run_load
from core.serving.server import ModelServer
from core.serving.testing import (
    as_numpy,
    assert_output_matches,
    columnar_body,
    export_smoke_app,
    row_body,
    rows_to_columns,
    saved_model_cli_run,
)

pytestmark = pytest.mark.slow
APPS = registry.apps()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving-apps")
    models = root / "models"
    apps = {}
    for name in sorted(APPS):
        try:
            pipeline, path = export_smoke_app(name, models, workdir=root / "runs" / name)
            apps[name] = (pipeline, path, tf.saved_model.load(str(path)))
        except Exception as err:  # noqa: BLE001 - reported by that app's tests, the others go on
            apps[name] = err
    server = ModelServer(models / "models.config", port=0, grpc_port=0, poll_seconds=0).start()
    channel = grpc.insecure_channel(server.grpc_target)
    yield {"root": root, "models": models, "apps": apps, "server": server,
           "stub": prediction_service_pb2_grpc.PredictionServiceStub(channel)}
    channel.close()
    server.stop()


def _app(exported, name):
    entry = exported["apps"][name]
    if isinstance(entry, Exception):
        raise AssertionError(f"{name}: smoke export failed: {entry!r}") from entry
    return entry


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("app", sorted(APPS))
def test_every_signature_over_rest_and_grpc(exported, app):
    pipeline, path, loaded = _app(exported, app)
    base = f"{exported['server'].rest_url}/v1/models/{app}"
    with urllib.request.urlopen(f"{base}/metadata", timeout=60) as response:
        sigs = json.loads(response.read())["metadata"]["signature_def"]["signature_def"]
    requests = pipeline.example_requests()
    assert set(requests) <= set(sigs) and "serving_default" in requests
    for signature, inputs in requests.items():
        expected = export_lib.call_signature(loaded, signature, inputs)
        body = _post(f"{base}:predict", columnar_body(inputs, signature))
        outputs = body["outputs"] if len(expected) > 1 else {next(iter(expected)): body["outputs"]}
        for name, value in expected.items():
            assert_output_matches(outputs[name], value, name, f"{app}/{signature} columnar")
        rows = row_body(inputs, signature)
        batch = {v.shape[0] if v.ndim else None for v in map(np.asarray, expected.values())}
        if rows is not None and len(batch) == 1 and None not in batch:
            body = _post(f"{base}/versions/{path.name}:predict", rows)
            columns = rows_to_columns(body["predictions"], sorted(expected))
            for name, value in expected.items():
                assert_output_matches(columns[name], value, name, f"{app}/{signature} row")
        request = predict_pb2.PredictRequest()
        request.model_spec.name = app
        request.model_spec.signature_name = signature
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(as_numpy(value)))
        response = exported["stub"].Predict(request, timeout=300)
        got = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        export_lib.assert_outputs_match(expected, got, context=f"{app}/{signature} gRPC")


@pytest.mark.parametrize("app", sorted(APPS))
def test_saved_model_cli_runs_every_signature(exported, app):
    pipeline, path, loaded = _app(exported, app)
    for signature, inputs in pipeline.example_requests().items():
        expected = export_lib.call_signature(loaded, signature, inputs)
        got = saved_model_cli_run(path, signature, inputs)
        got = {k: np.asarray(v, dtype=expected[k].dtype) for k, v in got.items()}
        export_lib.assert_outputs_match(expected, got, context=f"saved_model_cli {app}/{signature}")


@pytest.mark.parametrize("app", sorted(APPS))
def test_exports_can_be_batched_by_tensorflow_model_server(exported, app):
    # make serve-docker runs tensorflow_model_server --enable_batching, which concatenates requests
    # along dimension 0: scalar inputs or outputs fail there (while they work without batching).
    _, path, _ = _app(exported, app)
    signature_defs = exported["server"].registry.get(app).signature_defs
    assert batching_problems(signature_defs) == [], f"{app} ({path})"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_load_two_apps_at_once(exported):
    ready = [n for n in sorted(APPS) if not isinstance(exported["apps"][n], Exception)]
    assert len(ready) >= 2, f"need two exported apps, have {ready}"
    chosen = ["image_classification", next(n for n in ready if n != "image_classification")]
    bodies = {}
    for name in chosen:
        pipeline = exported["apps"][name][0]
        inputs = pipeline.encode_request(pipeline.sample_inputs(4))
        bodies[name] = json.dumps(row_body(inputs) or columnar_body(inputs)).encode()
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    server = subprocess.Popen(
        [sys.executable, "-m", "core", "serve", "--model-config", str(exported["models"] / "models.config"),
         "--port", str(port), "--grpc-port", "0"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                for name in chosen:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{name}", timeout=5).read()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.5)
        report = run_load(f"http://127.0.0.1:{port}", bodies, seconds=20, concurrency=8)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print("\n" + json.dumps(report, indent=1) + "\n" + markdown(report))
    assert report["total"]["errors"] == 0, report
    assert all(report["models"][n]["requests"] > 0 for n in chosen), report
