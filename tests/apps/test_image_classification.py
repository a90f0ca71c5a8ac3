"""Image classification: shapes, learning, metric, its endpoints and TPU alias, the fine-tuning phase,
the folder reader, deterministic splits, resume."""

import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from apps.image_classification import Config, Pipeline
from apps.image_classification.bench import BENCH
from core import hub
from core.schedules import BudgetedCosine
from core.testing import (
    AppContract,
    assert_export_roundtrip,
    make_hub_module,
    shared_dataset,
    signature_names,
    smoke_fit,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return smoke_fit(Pipeline, tmp_path_factory)


def test_model_output_shape():
    model = Pipeline(Config.preset("smoke")).build_model()
    out = model(np.zeros((2, 16, 16, 3), np.float32))
    assert tuple(out.shape) == (2, 10)
    np.testing.assert_allclose(np.sum(out, axis=-1), 1.0, atol=1e-5)


def test_smoke_fit_learns(trained):
    p, result = trained
    loss = result["history"]["loss"]
    assert loss[-1] < loss[0]
    assert "phases" not in result  # no backbone: one phase
    metrics = p.evaluate()
    # Ten balanced classes: chance is ~0.1; smoke training must be far above it.
    assert metrics["accuracy"] > 0.5, metrics
    assert metrics["accuracy"] > 2 * metrics["chance"]
    assert (p.workdir / "confusion_matrix.png").exists()
    assert json.loads((p.workdir / "metrics.json").read_text())["test"]["accuracy"] == metrics["accuracy"]


def test_signatures_tpu_alias_and_any_image_size(exported):
    p, path, loaded = exported
    sigs = signature_names(path)
    assert sigs["serving_default"] == {"inputs": ["image_bytes"], "outputs": ["classes", "scores"]}
    assert sigs["predict_images"]["inputs"] == ["images"]
    # The jit-compiled TPU alias is saved beside (not among) the serving signatures; it answers like
    # the bare model the bench times the endpoint against.
    assert "classify_tpu" not in loaded.signatures
    bare, images = BENCH.bare_model(p, p.sample_inputs(2))
    assert tuple(images.shape) == (2, 16, 16, 3)
    np.testing.assert_allclose(loaded.classify_tpu(images)["probabilities"], bare(images), atol=1e-4)
    # A JPEG of another size is resized in the graph and answered like any other image.
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 25, 3), 200, np.uint8)).save(buf, format="JPEG")
    answer = p.predict_exported(path, [buf.getvalue()])[0]
    assert len(answer["classes"]) == 3 and answer["scores"] == sorted(answer["scores"], reverse=True)


def test_fine_tune_phase_unfreezes_the_backbone_top_at_a_tenth_of_the_rate():
    config = Config.preset("smoke", backbone="mobilenet_v2", image_size=32, fine_tune_epochs=2,
                           fine_tune_layers=10)
    p = Pipeline(config)
    assert [phase.name for phase in Pipeline(config.replace(fine_tune_epochs=0)).phases()] == ["train"]
    train, fine_tune = p.phases()
    assert (train.name, fine_tune.name, fine_tune.epochs) == ("train", "fine_tune", 2)
    model = p.build_model()
    backbone = model.get_layer("features").get_layer("backbone")
    assert not backbone.trainable_weights  # the first phase trains the head alone
    # A resumed run skips the finished first phase: the fine-tuning phase sets trainability itself.
    fine_tune.prepare(model)
    trainable = [layer for layer in backbone.layers if layer.trainable_weights]
    assert trainable and all(layer in backbone.layers[-10:] for layer in trainable)
    assert not [layer for layer in trainable if isinstance(layer, keras.layers.BatchNormalization)]
    # The schedule and weight decay carry on: a cosine from a tenth of the peak over the phase's steps.
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, BudgetedCosine) and model.optimizer.weight_decay == pytest.approx(1e-4)
    assert schedule.peak == pytest.approx(config.learning_rate * 0.1)
    assert schedule.total_steps == 2 * -(-p.datasets().info["sizes"]["train"] // config.batch_size)


def test_hub_backbone_trains_frozen_then_fine_tuned_and_exports_without_the_module(tmp_path):
    module_path = make_hub_module(tmp_path / "module", (None, 24, 24, 3), features=16)
    original = tf.saved_model.load(str(module_path)).kernel.numpy()
    config = Config.preset("smoke", backbone=f"hub:{module_path}", image_size=0, epochs=2)
    frozen = Pipeline(config.replace(fine_tune_epochs=0), workdir=tmp_path / "frozen")
    assert frozen.config.image_size == 24  # image_size=0: the module's own size
    frozen.fit()
    module = frozen.model.get_layer("features").get_layer("backbone")
    np.testing.assert_array_equal(module._module.kernel.numpy(), original)

    p = Pipeline(config.replace(image_size=16, fine_tune_epochs=1), workdir=tmp_path / "tuned")
    result = p.fit()  # 16 px images, resized to the module's 24 in the model
    assert list(result["phases"]) == ["fine_tune"]
    module = p.model.get_layer("features").get_layer("backbone")
    assert not np.allclose(module._module.kernel.numpy(), original)
    # The export holds the fine-tuned module itself: it answers with the module gone, and its graph,
    # variables and assets name it nowhere (only the model card's config.json records the setting).
    module_path.rename(tmp_path / "moved")
    path = assert_export_roundtrip(p, tmp_path / "models")
    files = [f for f in path.rglob("*") if f.is_file() and "assets.extra" not in f.parts]
    assert any(f.name == "saved_model.pb" for f in files)
    for file in files:
        assert b"module" not in file.read_bytes().replace(b"hub_module", b""), file


def test_vgg16_with_a_local_weights_file_gives_the_same_features_after_export(tmp_path):
    import tf_keras

    # The format keras.applications downloads: a legacy .h5 written by Keras 2.
    weights = tmp_path / "vgg16_notop.h5"
    reference = tf_keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3),
                                            pooling="avg")
    reference.save_weights(str(weights))
    config = Config.preset("smoke", backbone="VGG16", weights=str(weights), image_size=32, epochs=1)
    with pytest.warns(UserWarning, match="image_size=224"):  # pretrained weights fed 32 px images
        p = Pipeline(config, workdir=tmp_path / "run")
        p.model = p.build_model()
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected = reference(tf_keras.applications.vgg16.preprocess_input(images.copy())).numpy()
    features = p.model.get_layer("features")
    np.testing.assert_allclose(features(images), expected, rtol=1e-4, atol=1e-3)
    assert_export_roundtrip(p, tmp_path / "models")
    published = p.export_hub(tmp_path / "models")["backbone"]
    np.testing.assert_allclose(hub.load(str(published))(images / 255.0), expected, rtol=1e-4, atol=1e-3)


def test_cli_publishes_the_backbone_for_hub_load_keras3_and_tf_keras(trained, tmp_path, capsys):
    import tensorflow_hub as tf_hub
    import tf_keras

    from core import cli

    p, _ = trained
    accuracy = p.evaluate()["accuracy"]
    cli.main(["export", "image_classification", "--workdir", str(p.workdir), "--out", str(tmp_path), "--hub"])
    path = tmp_path / "hub" / "image_classification" / "backbone" / "1"
    assert capsys.readouterr().out.strip() == str(path)
    images = np.stack([x.numpy() for x, _ in p.datasets().test.take(3)])
    expected = p.model.get_layer("features")(images).numpy()
    np.testing.assert_allclose(tf_hub.load(str(path))(images / 255.0, training=False), expected, atol=1e-4)
    np.testing.assert_allclose(hub.HubLayer(str(path))(images / 255.0), expected, atol=1e-4)
    legacy = tf_keras.Sequential([tf_keras.Input((16, 16, 3)), tf_hub.KerasLayer(str(path))])
    np.testing.assert_allclose(legacy.predict(images / 255.0, verbose=0), expected, atol=1e-4)
    card = hub.read_card(path)
    assert card["trained_on"].startswith("embedded: scikit-learn digits") and card["output"]["shape"] == [None, 16]
    assert card["test_metrics"]["accuracy"] == accuracy and card["input"]["shape"] == [None, 16, 16, 3]


def test_resume_continues_from_backup(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("simulated crash after epoch 2")

    config = Config.preset("smoke", epochs=4)
    p = Pipeline(config, workdir=tmp_path)
    p.extra_callbacks = lambda: [Interrupt()]
    with pytest.raises(KeyboardInterrupt):
        p.fit()
    assert (tmp_path / "backup").exists()
    resumed = Pipeline(config, workdir=tmp_path).fit()
    # Epochs 0 and 1 are in the backup: the second run starts at epoch 2 and runs only 2 epochs.
    assert resumed["first_epoch"] == 2 and resumed["epochs_run"] == 2


def test_folder_source_on_real_flowers(tmp_path):
    root = shared_dataset("flowers_128")
    p = Pipeline(Config.preset("smoke", data=str(root), epochs=1), workdir=tmp_path)
    splits = p.datasets()
    assert p.state["class_names"] == sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    image, label = next(iter(splits.train))
    assert tuple(image.shape) == (16, 16, 3) and 0 <= int(label) < 5
    p.fit()
    assert 0.0 <= p.evaluate()["accuracy"] <= 1.0


def test_splits_are_deterministic():
    a = [int(y) for _, y in Pipeline(Config.preset("smoke")).datasets().test]
    b = [int(y) for _, y in Pipeline(Config.preset("smoke")).datasets().test]
    assert a == b and len(a) > 100


def test_bench_reads_flowers_under_catalogue_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CATALOGUE_DATA", str(tmp_path))
    config = BENCH.config(Config)
    assert config.data == str(tmp_path / "flowers_128") and config.image_size == 64 and config.flip
    with pytest.raises(FileNotFoundError, match="tf_flowers"):
        BENCH.require_data("image_classification")


@pytest.mark.slow
def test_demo_preset_reaches_95_percent(tmp_path):
    p = Pipeline(Config.preset("demo"), workdir=tmp_path)
    p.fit()
    assert p.evaluate()["accuracy"] >= 0.95


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "transfer from the 2,500-image CIFAR-10 subset "
    "does not beat scratch on flowers_128 yet (0.400 against 0.511)"))
def test_transfer_recipe_from_cifar10_beats_scratch_on_flowers(tmp_path):
    shared_dataset("cifar10_subset")
    shared_dataset("flowers_128")
    metrics = BENCH.recipes["transfer"](tmp_path)
    assert metrics["accuracy"] > metrics["scratch_accuracy"], metrics
    assert metrics["captioning_bleu4"] > 0.0, metrics


class TestContract(AppContract):
    """The catalogue's export contract on the trained smoke model (core.testing.AppContract)."""
