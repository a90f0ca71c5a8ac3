import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.config import model_server_config_pb2

from core import export as export_lib


def toy_export(out, name="toy", check=None):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def serve(x):
        return {"y": model(x)}

    return export_lib.export_endpoints(out, name, trackables=[model], endpoints={"serving_default": serve},
                                       check=check, card={"config": {"a": 1}})


def test_versions_increase_and_models_config_parses(tmp_path):
    first = toy_export(tmp_path)
    second = toy_export(tmp_path)
    toy_export(tmp_path, name="other")
    assert (first.name, second.name) == ("1", "2")
    assert (second / "assets.extra" / "config.json").exists()
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((tmp_path / "models.config").read_text(), config)
    names = [c.name for c in config.model_config_list.config]
    assert names == ["other", "toy"]
    assert all(c.base_path.startswith("/") for c in config.model_config_list.config)
    assert export_lib.latest_version_dir(tmp_path / "toy") == second


def test_failed_check_leaves_nothing_behind(tmp_path):
    def reject(path, saved):
        raise AssertionError("reload check failed")

    with pytest.raises(AssertionError):
        toy_export(tmp_path, check=reject)
    assert export_lib.versions(tmp_path / "toy") == []
    assert [p.name for p in (tmp_path / "toy").iterdir()] == []


def test_assert_outputs_match_names_the_output():
    export_lib.assert_outputs_match({"a": np.ones(3)}, {"a": np.ones(3) + 1e-6})
    with pytest.raises(AssertionError, match="'a'"):
        export_lib.assert_outputs_match({"a": np.ones(3)}, {"a": np.zeros(3)})
    with pytest.raises(AssertionError, match="'s'"):
        export_lib.assert_outputs_match({"s": np.array([b"x"])}, {"s": np.array([b"y"])})


def test_exports_refuse_batches_over_the_limit_and_keep_input_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv(export_lib.MAX_BATCH_ENV, "3")
    gain_default = tf.constant([2.0])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x"),
                                  tf.TensorSpec([1], tf.float32, name="gain")])
    def scale(x, gain=gain_default):
        return {"y": x * gain}

    path = export_lib.export_endpoints(tmp_path, "scaled", trackables=[], endpoints={"serving_default": scale})
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    defaults = saved.meta_graphs[0].signature_def["serving_default"].defaults
    assert tf.make_ndarray(defaults["gain"]).tolist() == [2.0]  # TF Serving may still leave gain out
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    np.testing.assert_allclose(fn(x=tf.constant([1.0, 2.0, 3.0]), gain=tf.constant([3.0]))["y"], [3.0, 6.0, 9.0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Input x holds.*4.*at most 3 per request"):
        fn(x=tf.ones([4]), gain=tf.constant([1.0]))
    monkeypatch.setenv(export_lib.MAX_BATCH_ENV, "0")
    with pytest.raises(ValueError, match="CATALOGUE_MAX_BATCH"):
        export_lib.export_endpoints(tmp_path, "scaled", trackables=[], endpoints={"serving_default": scale})


def test_live_endpoints_are_the_limited_functions_the_export_saves(tmp_path, monkeypatch):
    from apps.image_classification import Config, Pipeline

    monkeypatch.setenv(export_lib.MAX_BATCH_ENV, "2")
    p = Pipeline(Config.preset("smoke"), workdir=tmp_path / "run")
    p.model = p.build_model()
    serve = p.endpoints["serving_default"]
    assert serve.batch_limit == 2 and export_lib.limit_batch(serve, 2) is serve
    # Another limit wraps the app's own function again, not the limited one.
    assert export_lib.limit_batch(serve, 5).unlimited is serve.unlimited
    raw = p.sample_inputs(5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Input image_bytes holds.*5.*at most 2 per request"):
        serve(**p.encode_request(raw))
    # predict() sends the limit's worth at a time.
    assert p.predict(raw) == p.predict(raw[:2]) + p.predict(raw[2:4]) + p.predict(raw[4:])
    assert p.predict([]) == []
    # The model export() reloaded to verify the version is the one predict_exported() answers with.
    path = p.export(tmp_path / "models")
    assert p.load_exported(path) is p.load_exported(path.parent)
    assert export_lib.exported_max_batch(path) == 2
    # The live functions follow the limit as set now; predict_exported() the one the version was saved with.
    monkeypatch.setenv(export_lib.MAX_BATCH_ENV, "8")
    assert p.endpoints["serving_default"].batch_limit == 8
    assert p.predict_exported(path, raw) == p.predict(raw)
    assert p.predict_exported(path, raw[0]) == p.predict(raw[:1])


def test_a_live_endpoint_and_its_export_share_one_trace(tmp_path, monkeypatch):
    monkeypatch.setenv(export_lib.MAX_BATCH_ENV, "4")  # the export's limit: the live function must be the same
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    traces = []

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def serve(x):
        traces.append(x)
        return {"y": model(x)}

    x = np.ones((3, 2), np.float32)
    # A plain tf.function called live is traced again by the save (TensorFlow keys traces on saving).
    serve(x=x)
    export_lib.export_endpoints(tmp_path, "twice", trackables=[model], endpoints={"serving_default": serve})
    assert len(traces) == 2
    traces.clear()
    live = export_lib.traced_once(export_lib.limit_batch(serve, 4))
    assert export_lib.traced_once(live) is live and export_lib.limit_batch(live, 4) is live and live.batch_limit == 4
    answer = live(x=x)["y"].numpy()
    path = export_lib.export_endpoints(tmp_path, "once", trackables=[model], endpoints={"serving_default": live})
    assert len(traces) == 1
    loaded = tf.saved_model.load(str(path))
    np.testing.assert_allclose(export_lib.call_signature(loaded, "serving_default", {"x": x})["y"], answer)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 4 per request"):
        live(x=np.ones((5, 2), np.float32))


def test_exports_leave_custom_gradients_out_and_load_without_warning(tmp_path, caplog):
    @tf.custom_gradient
    def clip_gradient(x):
        return tf.identity(x), lambda dy: tf.clip_by_value(dy, -1.0, 1.0)

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def serve(x):
        return {"y": clip_gradient(model(x))}

    path = export_lib.export_endpoints(tmp_path, "grad", trackables=[model], endpoints={"serving_default": serve})
    with caplog.at_level("WARNING"):
        loaded = tf.saved_model.load(str(path))
    np.testing.assert_allclose(loaded.signatures["serving_default"](x=tf.ones([1, 2]))["y"], model(tf.ones([1, 2])))
    assert not [r for r in caplog.records if "custom gradients" in r.getMessage()]
    # The filter drops only that message: other warnings still reach the user.
    logging.getLogger("absl").warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
