"""core.hub: modules as Keras 3 layers (frozen, fine-tuned, one clip at a time, offline handles) and
encoders published as modules that hub.load, HubLayer and tf-keras' hub.KerasLayer all load."""

import hashlib
import json
import shutil
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import hub
from core.testing import make_hub_module


@pytest.fixture(scope="module")
def image_module(tmp_path_factory):
    return make_hub_module(tmp_path_factory.mktemp("hub") / "images", (None, 8, 8, 3), features=6)


def _classifier(layer):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(layer(inputs)))
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    return model


def test_layer_shares_the_module_variables_frozen_then_trained(image_module):
    layer = hub.HubLayer(str(image_module))
    module = layer._module
    x = np.random.default_rng(0).random((32, 8, 8, 3), np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int32)
    model = _classifier(layer)
    assert tuple(model.output.shape) == (None, 2) and not layer.trainable_weights
    kernel = module.kernel.numpy().copy()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    # Frozen: neither the weights nor the training-only statistics move.
    np.testing.assert_array_equal(module.kernel.numpy(), kernel)
    assert not np.any(module.moving_mean.numpy())
    layer.trainable = True
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    assert {w.name for w in layer.trainable_weights} == {"kernel", "bias"}
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    # Trainable: the optimizer updates the module's own variables, and it was called with training=True.
    assert not np.allclose(module.kernel.numpy(), kernel)
    assert np.any(module.moving_mean.numpy())
    np.testing.assert_allclose(layer(x[:4]), module(x[:4], training=False), atol=1e-6)


def test_one_clip_at_a_time_module_is_mapped_over_the_batch(tmp_path):
    path = make_hub_module(tmp_path / "yamnet_like", (None,), features=5, one_at_a_time=True)
    waves = np.random.default_rng(1).normal(0, 0.1, (3, 1600)).astype(np.float32)
    embeddings = hub.hub_layer(f"hub:{path}#1")(waves)
    module = hub.load(str(path))
    assert tuple(embeddings.shape) == (3, 9, 5)  # 9 frames of 320 samples, hop 160
    np.testing.assert_allclose(embeddings[2], module(waves[2])[1], atol=1e-6)
    with pytest.raises(ValueError, match=r"returns 2 outputs.*#<index>"):
        hub.hub_layer(f"hub:{path}")(waves)


def test_handles_offline_cache_versions_and_errors(image_module, tmp_path, monkeypatch):
    url = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(FileNotFoundError, match=hashlib.sha1(url.encode()).hexdigest()):
        hub.resolve(url)  # no network here, and nothing cached yet: the error says where a copy goes
    shutil.copytree(image_module, hub.cache_folder(url))
    assert hub.resolve(url) == str(hub.cache_folder(url))
    assert hub.input_size(f"hub:{url}") == 8
    versions = tmp_path / "published"
    for version in ("1", "2"):
        shutil.copytree(image_module, versions / version)
    assert hub.resolve(str(versions)) == str(versions / "2")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        hub.resolve(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="hub:<handle-or-path>"):
        hub.parse("mobilenet_v2")


def test_published_encoder_loads_with_hub_load_keras3_layer_and_tf_keras(tmp_path):
    import tensorflow_hub as tf_hub
    import tf_keras

    images = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(images)
    x = keras.layers.BatchNormalization(name="norm")(x)
    encoder = keras.Model(images, keras.layers.GlobalAveragePooling2D()(x), name="features")
    encoder.get_layer("conv").trainable = False  # frozen in the app: still trainable for a re-user
    spec = tf.TensorSpec([None, 8, 8, 3], tf.float32)
    path = hub.publish(hub.Encoder(encoder, spec, "test features", preprocess=lambda v: v * 255.0),
                       tmp_path / "hub" / "app" / "features", {"trained_on": "nothing"})
    assert path.name == "1"
    x = np.random.default_rng(2).random((3, 8, 8, 3), np.float32)
    expected = encoder(x * 255.0, training=False).numpy()

    module = tf_hub.load(str(path))
    np.testing.assert_allclose(module(x, training=False), expected, atol=1e-4)
    assert len(module.trainable_variables) == 4 and len(module.variables) == 6  # + BN moving statistics
    assert list(module.regularization_losses) == []
    np.testing.assert_allclose(module.signatures["serving_default"](inputs=tf.constant(x))["features"],
                               expected, atol=1e-4)
    card = hub.read_card(path.parent)
    assert card["output"]["shape"] == [None, 4] and card["input"]["shape"] == [None, 8, 8, 3]
    assert card["trained_on"] == "nothing"

    np.testing.assert_allclose(hub.HubLayer(str(path.parent))(x), expected, atol=1e-4)

    legacy = tf_keras.Sequential([tf_hub.KerasLayer(str(path), trainable=True), tf_keras.layers.Dense(1)])
    legacy.build([None, 8, 8, 3])
    np.testing.assert_allclose(legacy.layers[0](x), expected, atol=1e-4)
    legacy.compile(tf_keras.optimizers.SGD(0.1), "mse")
    before = [w.numpy().copy() for w in legacy.layers[0].trainable_weights]
    legacy.fit(x, np.ones((3, 1)), epochs=1, verbose=0)
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, legacy.layers[0].trainable_weights))
    assert json.loads((path / "assets.extra" / "card.json").read_text())["description"] == "test features"
