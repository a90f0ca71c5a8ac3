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
from core.testing import shared_dataset, signature_names, smoke_fit


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


def test_signatures_tpu_alias_and_any_image_size(trained, tmp_path):
    p, _ = trained
    path = p.export(tmp_path)
    sigs = signature_names(path)
    assert sigs["serving_default"] == {"inputs": ["image_bytes"], "outputs": ["classes", "scores"]}
    assert sigs["predict_images"]["inputs"] == ["images"]
    # The jit-compiled TPU alias is saved beside (not among) the serving signatures; it answers like
    # the bare model the bench times the endpoint against.
    loaded = tf.saved_model.load(str(path))
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
    backbone = model.get_layer("backbone")
    assert not backbone.trainable_weights  # the first phase trains the head alone
    # A resumed run skips the finished first phase: the fine-tuning phase sets trainability itself.
    fine_tune.prepare(model)
    trainable = [layer for layer in backbone.layers if layer.trainable_weights]
    assert trainable and all(layer in backbone.layers[-10:] for layer in trainable)
    assert not [layer for layer in trainable if isinstance(layer, keras.layers.BatchNormalization)]
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert rate == pytest.approx(config.learning_rate * 0.1)


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
