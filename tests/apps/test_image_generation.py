"""Image generation: the smoke GAN beats the PCA-Gaussian baseline's KID on digits, its pictures, the
export answers like predict() for the same seeds, unknown labels are refused, interpolation strips, the
train_step under a 2-replica MirroredStrategy, the metrics and the bench's bars."""

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from apps.image_generation import Config, Pipeline, metrics, serving
from apps.image_generation.bench import BENCH
from core import export as export_lib
from core.bench import check_bars, one_run_bars
from core.testing import AppContract, signature_names, smoke_fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pipeline, result = smoke_fit(Pipeline, tmp_path_factory)
    return pipeline, result, pipeline.evaluate()


def png_pixels(answer) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["png_base64"]))))


def test_smoke_gan_beats_the_pca_gaussian_baseline_on_digits(trained):
    pipeline, result, scores = trained
    assert result["phases"]["judge"]["val_accuracy"] > 0.7
    assert scores["kid"] < scores["baseline_kid"], scores
    # The label steers the image: well above the 0.1 of ignoring it.
    assert scores["class_accuracy"] > 0.3, scores
    assert 0.5 <= scores["two_sample_accuracy"] <= 1.0 and scores["real_class_accuracy"] > 0.7
    assert scores["nn_distance_median"] > 0  # no sample is a copy of a training scan


def test_training_writes_per_epoch_grids_final_grid_and_curves(trained):
    pipeline, result, _ = trained
    grids = sorted((pipeline.workdir / "samples").glob("epoch_*.png"))
    assert len(grids) == result["epochs_run"] >= 2
    for name in ("progress.png", "samples_vs_real.png", "training_curves.png"):
        assert (pipeline.workdir / name).stat().st_size > 1000, name
    # One row per class (10), samples_per_class columns, 16 px shown at 3x with 1 px gaps.
    height, width, _ = tf.io.decode_png(grids[-1].read_bytes()).shape
    assert (height, width) == (10 * 49 - 1, 8 * 49 - 1)


def test_export_equals_predict_for_the_same_seeds(exported):
    pipeline, path, loaded = exported
    raw = [{"label": "3", "seed": 5}, {"label": "3", "seed": 5}, {"label": "3", "seed": 6},
           {"label": "", "seed": 11}, ("7", 5)]
    live = pipeline.predict(raw)
    assert pipeline.predict_exported(path, raw) == live
    assert [a["label"] for a in live[:3]] == ["3"] * 3 and live[4]["label"] == "7"
    assert live[3]["label"] in pipeline.state["class_names"]
    assert (live[0]["width"], live[0]["height"]) == (16, 16)
    assert live[0]["png_base64"] == live[1]["png_base64"] != live[2]["png_base64"]
    # The same seed and class through generate_images: the pixels of the PNG.
    request = pipeline.encode_request(raw)
    images = export_lib.call_signature(loaded, "generate_images", request)["images"]
    assert images.dtype == np.float32 and images.shape == (5, 16, 16, 3)
    np.testing.assert_array_equal(images[0], png_pixels(live[0]).astype(np.float32))
    # A random class is a function of the seed: asking again gives the same class and image.
    assert pipeline.predict([{"label": "", "seed": 11}]) == [live[3]]
    names = signature_names(path)
    assert names["serving_default"] == {"inputs": ["label", "seed"], "outputs": ["image_png_bytes", "label"]}
    assert names["interpolate"]["inputs"] == ["label", "seed_from", "seed_to", "steps"]


def test_unknown_labels_and_bad_steps_are_refused_naming_the_valid_ones(exported):
    pipeline, _, loaded = exported
    request = {"label": tf.constant(["3", "dog"]), "seed": tf.constant([1, 2], tf.int64)}
    refused = r"Invalid label: unknown class.*dog.*valid labels: 0, 1, 2"
    with pytest.raises(tf.errors.InvalidArgumentError, match=refused):
        export_lib.call_signature(loaded, "serving_default", request)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid label"):
        pipeline.predict([{"label": "ten", "seed": 0}])
    bad_steps = {"label": tf.constant(["1"]), "seed_from": tf.constant([1], tf.int64),
                 "seed_to": tf.constant([2], tf.int64), "steps": tf.constant([40], tf.int64)}
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid steps: expected 2 to 16"):
        export_lib.call_signature(loaded, "interpolate", bad_steps)
    # The server keeps serving after a refused request.
    assert pipeline.predict([{"label": "1", "seed": 0}])[0]["label"] == "1"


def test_interpolation_strip_runs_from_one_seed_to_the_other(exported):
    pipeline, _, loaded = exported
    out = export_lib.call_signature(loaded, "interpolate", {
        "label": tf.constant(["4"]), "seed_from": tf.constant([2], tf.int64), "seed_to": tf.constant([9], tf.int64),
        "steps": tf.constant([6], tf.int64)})
    strip = tf.io.decode_png(out["strip_png_bytes"][0]).numpy().astype(np.float32)
    assert strip.shape == (16, 6 * 16, 3) and out["label"][0] == b"4"
    ends = [png_pixels(a).astype(np.float32) for a in pipeline.predict([("4", 2), ("4", 9)])]
    # Slerp at t = 0 and 1 gives the endpoints' noise up to rounding.
    assert np.abs(strip[:, :16] - ends[0]).max() <= 2 and np.abs(strip[:, -16:] - ends[1]).max() <= 2


def test_a_seed_keeps_the_candidate_the_discriminator_reads_as_its_label_most_surely(trained):
    pipeline = trained[0]
    model, k, latent = pipeline.model, pipeline.config.candidates, pipeline.config.latent_dim
    assert k > 1 and model.class_weight > 0
    ids, seeds = np.array([3, 3, 7, 0]), np.array([0, 1, 5, 11])
    by_hand = []
    for class_id, seed in zip(ids, seeds):
        noise = tf.concat([serving.noise_for(tf.constant([seed], tf.int64), latent, d) for d in range(k)], 0)
        images = model.ema_generator([noise, tf.fill([k], int(class_id))], training=False)
        _, logits = model.discriminator([images, tf.fill([k], int(class_id))], training=False)
        best = int(np.argmax(tf.nn.log_softmax(logits)[:, class_id]))
        by_hand.append(serving.to_uint8(images[best]).numpy())
    chosen = pipeline.generate(ids, seeds)
    assert np.abs(chosen - np.stack(by_hand)).max() <= 1
    assert (np.abs(chosen - pipeline.generate(ids, seeds, candidates=1)).max(axis=(1, 2, 3)) > 1).any()
    # evaluate() scores the same seeds' first draws beside the kept ones (what the choice adds is measured
    # on CIFAR-10 by the bench: the smoke digits are read as their label about as often either way).
    scores = trained[2]
    assert 0 <= scores["first_draw_class_accuracy"] <= 1 and scores["first_draw_kid_over_baseline"] < 1, scores


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    from core.distribute import split_cpu
    split_cpu(2)
    from apps.image_generation import Config, Pipeline
    config = Config.preset("smoke", strategy="mirrored", epochs=2, steps_per_epoch=3, judge_epochs=1,
                           time_budget_s=0, batch_size=16, seed=1, test_fraction=0.6, image_size=8,
                           width=32, d_width=8, judge_depth=1)
    p = Pipeline(config, sys.argv[1])
    result = p.fit()
    json.dump({"replicas": result["replicas"], "history": result["history"],
               "steps": [int(p.model.optimizer.iterations.numpy()), int(p.model.d_optimizer.iterations.numpy())],
               "finite": bool(all(np.isfinite(w).all() for w in p.model.ema_generator.get_weights()))},
              open(sys.argv[2], "w"))
""")


def test_train_step_under_two_replica_mirrored_strategy(tmp_path):
    # Logical devices must be set before TensorFlow starts: a fresh process.
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "work"), str(out)], cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    history = result["history"]
    for key in ("d_loss", "g_loss", "r1", "val_kid", "val_class_accuracy"):
        assert len(history[key]) == 2 and np.all(np.isfinite(history[key])), (key, history[key])
    # Both networks took every step (2 epochs x 3) and the averaged generator stayed finite.
    assert result["steps"] == [6, 6] and result["finite"]


def test_metrics_tell_close_from_far_samples():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same, shifted = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1.0
    assert abs(metrics.kid(real, same)) < 0.05 < metrics.kid(real, shifted)
    assert metrics.fid(real, same) < 0.5 < metrics.fid(real, shifted)
    assert metrics.two_sample_accuracy(real, same) < 0.6 < 0.8 < metrics.two_sample_accuracy(real, shifted)
    images = rng.uniform(0, 255, size=(20, 4, 4, 3))
    # Each image is its own nearest; the expanded form |a|^2 + |b|^2 - 2ab leaves rounding, not zero, on some BLAS.
    assert np.all(metrics.nearest_distances(images[:5], images) < 1e-6)
    assert np.all(metrics.nearest_distances(images[:5], images[5:]) > 0.1)
    labels = np.repeat(np.arange(2), 10)
    baseline = metrics.PcaGaussian(images, labels, 2, seed=0)
    drawn = baseline.sample(np.array([0, 1, 1]))
    assert drawn.shape == (3, 4, 4, 3) and drawn.min() >= 0 and drawn.max() <= 255


def test_training_nearest_fraction_is_chance_for_new_draws_and_not_for_copies():
    rng = np.random.default_rng(1)
    train, held_out = rng.uniform(0, 255, size=(800, 6, 6, 3)), rng.uniform(0, 255, size=(200, 6, 6, 3))
    fresh = metrics.training_nearest_fraction(rng.uniform(0, 255, size=(600, 6, 6, 3)), train, held_out)
    assert fresh["chance"] == 0.8 and abs(fresh["z"]) < 3, fresh
    # Blurry, typical samples (near the mean of everything) are no copies either.
    typical = 127.5 + 0.2 * (rng.uniform(0, 255, size=(600, 6, 6, 3)) - 127.5)
    assert abs(metrics.training_nearest_fraction(typical, train, held_out)["z"]) < 3
    copies = train[:300] + rng.normal(0, 10, size=(300, 6, 6, 3))
    copied = metrics.training_nearest_fraction(copies, train, held_out)
    assert copied["fraction"] == 1.0 and copied["z"] > 5, copied


def test_config_refuses_bad_values_naming_the_key():
    with pytest.raises(ValueError, match="image_size"):
        Config.preset("smoke", image_size=24)
    with pytest.raises(ValueError, match="diff_augment"):
        Config.preset("smoke", diff_augment="translation,rotate")
    with pytest.raises(ValueError, match="strategy='multiworker'"):
        Config.preset("smoke", strategy="multiworker")


def test_bench_bars_read_the_metrics_evaluate_reports(trained):
    _, _, scores = trained
    # The bars over three seeds read each run's metrics; the recipes' (digits_*, flowers_*) their own runs.
    own = one_run_bars(BENCH.bars)
    checked = check_bars(own, scores)
    assert len(own) == 3
    assert all(bar["value"] is not None and bar["target_value"] is not None for bar in checked), checked


def unconditional_fit(tmp_path_factory, **overrides):
    """The smoke preset, unconditional, on the digits written as a flat folder of PNGs (no class folders)."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("unlabeled_digits")
    for i, scan in enumerate(load_digits().images):
        grey = np.round(scan * (255.0 / 16.0)).astype(np.uint8)
        Image.fromarray(grey).convert("RGB").save(folder / f"{i:04d}.png")
    pipeline, result = smoke_fit(Pipeline, tmp_path_factory, conditional=False, data=str(folder), **overrides)
    return pipeline, result, pipeline.evaluate()


@pytest.fixture(scope="module")
def unconditional(tmp_path_factory):
    # What the mode serves and draws needs no learning: a few epochs (learning: the slow test below).
    return unconditional_fit(tmp_path_factory, epochs=3, judge_epochs=4)


def test_unconditional_mode_serves_the_empty_label_and_refuses_others(unconditional, tmp_path):
    pipeline, result, scores = unconditional
    assert pipeline.state["class_names"] == [""]
    # The judge learnt its label-free task: which of 10 k-means clusters a held-out image falls in.
    assert result["phases"]["judge"]["val_accuracy"] > 0.5, result["phases"]
    assert not [k for k in scores if "class_accuracy" in k] and scores["nn_distance_median"] > 0, scores
    path = pipeline.export(tmp_path)
    answers = pipeline.predict_exported(path, [{"label": "", "seed": 3}, {"label": "", "seed": 4}])
    assert [a["label"] for a in answers] == ["", ""] and answers[0]["png_base64"] != answers[1]["png_base64"]
    assert answers == pipeline.predict([":3", ":4"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown class.*7.*unconditional: every label"):
        pipeline.predict([{"label": "7", "seed": 0}])
    # Four rows of samples, not one row per class.
    height, _, _ = tf.io.decode_png((pipeline.workdir / "samples" / "epoch_001.png").read_bytes()).shape
    assert height == 4 * 49 - 1


@pytest.mark.slow
def test_unconditional_mode_learns_unlabeled_images(tmp_path_factory):
    # Without a class to steer it, the generator needs more steps than the conditional smoke run.
    _, _, scores = unconditional_fit(tmp_path_factory, epochs=25, judge_epochs=8)
    assert scores["kid"] < scores["baseline_kid"], scores


def test_a_conditional_model_needs_classes():
    from apps.image_generation.model import build_model

    with pytest.raises(ValueError, match="set conditional=false for unlabeled images"):
        build_model(Config.preset("smoke"), 1)


@pytest.mark.parametrize("class_weight", [0.0, 0.5])
def test_the_auxiliary_class_loss_trains_the_discriminators_classifier_only_when_weighted(class_weight):
    from apps.image_generation.model import build_model

    config = Config.preset("smoke", image_size=8, width=32, d_width=8, judge_depth=1, class_weight=class_weight)
    gan = build_model(config, 3)
    gan.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2))
    head = gan.discriminator.get_layer("class_logits").kernel
    before = head.numpy()
    images = tf.random.uniform([6, 8, 8, 3], -1.0, 1.0, seed=0)
    gan.train_step((images, tf.constant([0, 1, 2, 0, 1, 2])))
    assert np.array_equal(head.numpy(), before) == (class_weight == 0.0)
    assert int(gan.d_optimizer.iterations.numpy()) == 1


class TestContract(AppContract):
    """The catalogue's export contract on the trained smoke model (core.testing.AppContract)."""
