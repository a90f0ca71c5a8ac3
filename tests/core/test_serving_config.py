"""Serving without a model: config files (parsed with TF Serving's protos), the Docker command, the
JSON tensor codec, error mapping, and the registry's version policy / reload logic (fake loader)."""

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from core import export as export_lib
from core.serving import codec, errors
from core.serving.config import (
    ConfigError,
    VersionPolicy,
    load_model_config,
    parse_batching_parameters,
    parse_model_config,
)
from core.serving.registry import ModelRegistry, version_dirs

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "core" / "serving" / "docker"


# ---------------------------------------------------------------------------------------------
# models.config


def test_exported_models_config_parses_with_tf_serving_protos(tmp_path):
    for name in ("b_app", "a_app"):
        (tmp_path / name / "1").mkdir(parents=True)
    path = export_lib.write_models_config(tmp_path)
    proto = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(path.read_text(), proto)
    assert [c.name for c in proto.model_config_list.config] == ["a_app", "b_app"]
    entries = load_model_config(path)
    assert [e.name for e in entries] == ["a_app", "b_app"]
    assert entries[0].base_path == (tmp_path / "a_app").resolve()
    assert entries[0].policy == VersionPolicy("latest", num_versions=1)


def test_policies_labels_and_relative_paths(tmp_path):
    text = """
    model_config_list {
      config { name: "all" base_path: "models/x" model_platform: "tensorflow"
               model_version_policy { all {} } }
      config { name: "pinned" base_path: "/abs/x"
               model_version_policy { specific { versions: 2 versions: 5 } }
               version_labels { key: "stable" value: 2 } version_labels { key: "canary" value: 5 } }
      config { name: "two" base_path: "/abs/y" model_version_policy { latest { num_versions: 2 } } }
      config { name: "default" base_path: "/abs/z" }
    }"""
    entries = {e.name: e for e in parse_model_config(text, cwd=tmp_path)}
    assert entries["all"].base_path == tmp_path / "models" / "x"
    available = [1, 2, 3, 5, 8]
    assert entries["all"].policy.select(available) == set(available)
    assert entries["pinned"].policy.select(available) == {2, 5}
    assert entries["pinned"].label_map == {"stable": 2, "canary": 5}
    assert entries["two"].policy.select(available) == {5, 8}
    assert entries["default"].policy.select(available) == {8}
    assert entries["default"].policy.select([]) == set()


@pytest.mark.parametrize("text, message", [
    ("model_config_list { config { name: 'a' base_path: '/x' } config { name: 'a' base_path: '/y' } }",
     "duplicate model name"),
    ("model_config_list { config { base_path: '/x' } }", "missing name"),
    ("model_config_list { config { name: 'a' } }", "missing base_path"),
    ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'pytorch' } }", "model_platform"),
    ("model_config_list { config { name: 'a' base_path: '/x' "
     "model_version_policy { specific { } } } }", "lists no versions"),
    ("model_config_list { config { nam: 'a' } }", "not a ModelServerConfig"),
    ("this is not a config", "not a ModelServerConfig"),
])
def test_bad_models_config_is_refused_clearly(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_model_config(text)


def test_missing_models_config_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="Export a model first"):
        load_model_config(tmp_path / "models.config")


def test_catalogue_serve_without_a_config_exits_with_a_clear_message(tmp_path):
    from core.serving.server import main

    with pytest.raises(SystemExit, match="No model config file at .*Export a model first"):
        main(model_config=tmp_path / "models.config", port=0, grpc_port=0)


def test_version_dirs_ignore_temporary_and_incomplete_folders(tmp_path):
    for name in ("1", "3", ".tmp-4-abc", "5", "notaversion"):
        (tmp_path / name).mkdir()
    for name in ("1", "3", ".tmp-4-abc", "notaversion"):
        (tmp_path / name / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "7").write_text("a file, not a folder")
    # 5 has no saved_model.pb yet (being copied): not a version until it has one.
    assert sorted(version_dirs(tmp_path)) == [1, 3]
    assert version_dirs(tmp_path / "absent") == {}


# ---------------------------------------------------------------------------------------------
# Docker: batching config and the command line.


def test_batching_config_parses_as_batching_parameters():
    params = parse_batching_parameters((DOCKER / "batching.config").read_text())
    assert params.max_batch_size.value == 32
    assert 0 < params.batch_timeout_micros.value <= 100_000
    assert params.num_batch_threads.value >= 1
    assert params.max_enqueued_batches.value >= 1
    assert params.pad_variable_length_inputs is False


@pytest.mark.parametrize("text, message", [
    ("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4", "must equal max_batch_size"),
    ("allowed_batch_sizes: 4 allowed_batch_sizes: 2", "increasing"),
    ("num_batch_threads { value: 0 }", ">= 1"),
    ("max_batch_size: 8", "not a BatchingParameters"),  # a wrapper message, not a scalar
    ("max_batch_sise { value: 8 }", "not a BatchingParameters"),
])
def test_bad_batching_config_is_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_batching_parameters(text)


def _serve_docker(env_extra, tmp_path):
    env = {**os.environ, "DRY_RUN": "1", **env_extra}
    return subprocess.run(["bash", str(DOCKER / "serve.sh")], capture_output=True, text=True, env=env, timeout=30)


def test_serve_docker_command_mounts_exports_at_their_config_paths(tmp_path):
    (tmp_path / "app" / "1").mkdir(parents=True)
    export_lib.write_models_config(tmp_path)
    proc = _serve_docker({"SAVED_MODELS": str(tmp_path)}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.split()
    models = str(tmp_path.resolve())
    assert args[:2] == ["docker", "run"]
    # models.config's absolute base paths must exist inside the container: same path, read-only.
    assert f"{models}:{models}:ro" in args
    assert all(c.base_path.startswith(models) for c in
               text_format.Parse((tmp_path / "models.config").read_text(),
                                 model_server_config_pb2.ModelServerConfig()).model_config_list.config)
    assert f"--model_config_file={models}/models.config" in args
    # The batching file is mounted where the flag points.
    mount = next(a for a in args if a.endswith(":/etc/tf_serving/batching.config:ro"))
    assert Path(mount.split(":")[0]) == (DOCKER / "batching.config").resolve()
    assert "--batching_parameters_file=/etc/tf_serving/batching.config" in args
    assert "--enable_batching=true" in args
    assert "127.0.0.1:8501:8501" in args and "127.0.0.1:8500:8500" in args
    assert any(a.startswith("tensorflow/serving:") for a in args)
    assert "serve-docker:" in (ROOT / "Makefile").read_text()


def test_serve_docker_without_exports_says_so(tmp_path):
    proc = _serve_docker({"SAVED_MODELS": str(tmp_path)}, tmp_path)
    assert proc.returncode == 1 and "export a model first" in proc.stderr


# ---------------------------------------------------------------------------------------------
# JSON codec.

X = {"x": tf.TensorSpec([None, 2], tf.float32)}
MULTI = {"a": tf.TensorSpec([None, 2], tf.float32), "text": tf.TensorSpec([None], tf.string)}


def test_row_and_columnar_requests():
    arrays, fmt = codec.request_tensors({"instances": [[1, 2], [3.5, 4]]}, X)
    assert fmt == codec.ROW and arrays["x"].dtype == np.float32 and arrays["x"].tolist() == [[1, 2], [3.5, 4]]
    arrays, fmt = codec.request_tensors({"inputs": [[1, 2]]}, X)
    assert fmt == codec.COLUMNAR and arrays["x"].shape == (1, 2)
    # A single input may also be named in row format.
    arrays, _ = codec.request_tensors({"instances": [{"x": [1, 2]}]}, X)
    assert arrays["x"].shape == (1, 2)
    rows = {"instances": [{"a": [1, 2], "text": "héllo"}, {"a": [0, 0], "text": {"b64": "AAEC"}}]}
    arrays, _ = codec.request_tensors(rows, MULTI)
    assert arrays["text"].tolist() == ["héllo".encode(), b"\x00\x01\x02"]
    arrays, _ = codec.request_tensors({"inputs": {"a": [[1, 2]], "text": [{"b64": "aGk"}]}}, MULTI)
    assert arrays["text"].tolist() == [b"hi"]  # unpadded base64 is accepted, as by TF Serving


@pytest.mark.parametrize("doc, specs, message", [
    ({"instances": [[1, 2]], "inputs": [[1, 2]]}, X, "only one of"),
    ({"instance": [[1, 2]]}, X, "Missing 'inputs' or 'instances'"),
    ({"instances": []}, X, "No values"),
    ({"instances": {"x": 1}}, X, "list/array"),
    ({"instances": [[1, 2], [3]]}, X, "not rectangular"),
    ({"instances": [["a", "b"]]}, X, "not of expected type: float32"),
    ({"instances": [[True, False]]}, X, "not of expected type"),
    ({"instances": [[1e39, 0]]}, X, "without loss of precision"),
    ({"instances": [[1, 2]]}, MULTI, "expecting list of objects"),
    ({"instances": [{"a": [1, 2]}]}, MULTI, "missing: text"),
    ({"instances": [{"a": [1, 2], "text": "t", "zzz": 1}]}, MULTI, "does not have named input: zzz"),
    ({"instances": [{"a": [1, 2], "text": "t"}, [1, 2]]}, MULTI, "Expecting object"),
    ({"inputs": {"a": [[1, 2]]}}, MULTI, "Missing named input: text"),
    ({"inputs": {"a": [[1, 2]], "text": ["t"], "zzz": 1}}, MULTI, "Unknown named input"),
    ({"inputs": [[1, 2]]}, MULTI, "expecting an object"),
    ({"inputs": {"a": [[1, 2]], "text": [{"b64": "!!"}]}}, MULTI, "base64"),
    ({"inputs": {"a": [[1, 2]], "text": [3]}}, MULTI, "not of expected type: string"),
    ({"inputs": {"a": [[1, 2]], "text": [["t"], "u"]}}, MULTI, "incorrect level"),
])
def test_bad_request_tensors(doc, specs, message):
    with pytest.raises(errors.ServingError, match=message) as info:
        codec.request_tensors(doc, specs)
    assert info.value.http_status == 400


@pytest.mark.parametrize("body, message", [
    (b"", "document is empty"), (b"{", "JSON Parse error"), (b"[1]", "Is not object"),
    (b"\xff\xfe{}", "JSON Parse error"),
])
def test_bad_json_bodies(body, message):
    with pytest.raises(errors.ServingError, match=message):
        codec.parse_body(body)
    with pytest.raises(errors.ServingError, match="signature_name"):
        codec.signature_name({"signature_name": 3})


def test_responses_are_tf_serving_json():
    outputs = {"scores": np.array([[0.2, 0.1]], np.float32), "classes": np.array([[b"cat", b"dog"]], object),
               "image_bytes": np.array([b"\x00\xff"], object)}
    rows = json.loads(codec.response_json(outputs, codec.ROW))
    assert rows == {"predictions": [{"scores": [0.2, 0.1], "classes": ["cat", "dog"],
                                     "image_bytes": {"b64": base64.b64encode(b"\x00\xff").decode()}}]}
    columns = json.loads(codec.response_json(outputs, codec.COLUMNAR))
    assert columns["outputs"]["scores"] == [[0.2, 0.1]]  # shortest float32 form, not 0.200000003
    assert json.loads(codec.response_json({"y": np.array([[1], [2]], np.int64)}, codec.ROW)) == \
        {"predictions": [[1], [2]]}
    assert json.loads(codec.response_json({"t": np.float32(3.5)}, codec.COLUMNAR)) == {"outputs": 3.5}
    special = codec.response_json({"v": np.array([np.nan, np.inf], np.float32)}, codec.COLUMNAR)
    assert special == b'{"outputs":[NaN,Infinity]}'  # as TF Serving writes them
    with pytest.raises(errors.ServingError, match="no shape information"):
        codec.response_json({"t": np.float32(3.5)}, codec.ROW)
    with pytest.raises(errors.ServingError, match="inconsistent batch size"):
        codec.response_json({"a": np.zeros(2), "b": np.zeros(3)}, codec.ROW)


def test_op_errors_keep_their_code_and_lose_the_graph_trace():
    err = tf.errors.InvalidArgumentError(
        None, None, "Graph execution error:\n\nDetected at node x defined at (most recent call last):\n"
                    "<stack traces unavailable>\nUnknown image file format.\n\t [[{{node x}}]] [Op:__inference_1]")
    failure = errors.from_exception(err)
    assert (failure.code, failure.http_status, failure.message) == ("INVALID_ARGUMENT", 400,
                                                                    "Unknown image file format.")
    assert errors.readable_message("{{function_node __inference_f_1}} assertion failed: [x]\n\t [[{{node y}}]] "
                                   "[Op:__inference_f_1]") == "assertion failed: [x]"
    assert errors.from_exception(tf.errors.NotFoundError(None, None, "gone")).http_status == 404
    assert errors.from_exception(RuntimeError("boom")).http_status == 500
    assert errors.ServingError("UNIMPLEMENTED", "x").grpc_code.name == "UNIMPLEMENTED"


# ---------------------------------------------------------------------------------------------
# The registry's policy and reload logic, with a fake loader (no TensorFlow load).


class FakeServable:
    def __init__(self, name, version, path):
        if (path / "broken").exists():
            raise ValueError(f"corrupt export {path.name}")
        self.name, self.version, self.path = name, version, path


def _version(base: Path, v: int, broken: bool = False):
    d = base / str(v)
    d.mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"pb")
    if broken:
        (d / "broken").write_text("x")


def _config(path: Path, body: str):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"model_config_list {{ {body} }}")
    tmp.replace(path)


def test_registry_policy_reload_and_failed_loads(tmp_path):
    base = tmp_path / "m"
    _version(base, 1)
    (base / ".tmp-2-abc").mkdir()
    (base / ".tmp-2-abc" / "saved_model.pb").write_bytes(b"half")
    config = tmp_path / "models.config"
    pinned = 'model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 }'
    _config(config, f'config {{ name: "m" base_path: "{base}" }}'
                    f'config {{ name: "pinned" base_path: "{base}" {pinned} }}')
    registry = ModelRegistry(config, poll_seconds=0, loader=FakeServable)
    registry.start()
    assert registry.describe() == {"m": {1: "AVAILABLE"}, "pinned": {1: "AVAILABLE"}}
    assert registry.get("m").version == 1 and registry.get("pinned", label="stable").version == 1

    # A new version replaces the old one; the pinned model stays on version 1.
    _version(base, 2)
    registry.refresh()
    assert registry.get("m").version == 2 and registry.describe()["m"] == {1: "END", 2: "AVAILABLE"}
    assert registry.get("pinned").version == 1
    with pytest.raises(errors.ServingError, match=r"Specific\(m, 1\)"):
        registry.get("m", 1)

    # A broken newest version is reported, and the previous one keeps serving.
    _version(base, 3, broken=True)
    registry.refresh()
    assert registry.get("m").version == 2
    status = registry.status("m", 3).model_version_status[0]
    assert status.state == status.END and "corrupt export 3" in status.status.error_message
    assert status.status.error_code != 0
    # Retried a bounded number of times, then again once the files change.
    for _ in range(5):
        registry.refresh()
    (base / "3" / "broken").unlink()
    (base / "3" / "saved_model.pb").write_bytes(b"fixed pb")
    registry.refresh()
    assert registry.get("m").version == 3

    # models.config changes are picked up: a model added, one removed.
    _config(config, f'config {{ name: "renamed" base_path: "{base}" model_version_policy {{ all {{}} }} }}')
    time.sleep(0.01)
    os.utime(config, None)
    registry.refresh()
    assert sorted(registry.describe()["renamed"]) == [1, 2, 3]
    with pytest.raises(errors.ServingError, match=r"Latest\(m\)") as info:
        registry.get("m")
    assert info.value.http_status == 404
    with pytest.raises(errors.ServingError, match="Unrecognized servable version label: x"):
        registry.get("renamed", label="x")
    with pytest.raises(errors.ServingError, match="Could not find any versions of model nope"):
        registry.status("nope")

    # A broken config keeps the previous model list.
    _config(config, "garbage {")
    registry.refresh()
    assert "renamed" in registry.model_names()
    registry.stop()


def test_registry_polls_in_the_background(tmp_path):
    base = tmp_path / "m"
    _version(base, 1)
    config = tmp_path / "models.config"
    _config(config, f'config {{ name: "m" base_path: "{base}" }}')
    registry = ModelRegistry(config, poll_seconds=0.05, loader=FakeServable)
    registry.start()
    try:
        _version(base, 4)
        deadline = time.monotonic() + 10
        while registry.get("m").version != 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert registry.get("m").version == 4
    finally:
        registry.stop()
