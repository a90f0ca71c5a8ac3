"""Colourization's bench: held-out real flower photos, against their grayscale version (L alone), in three
runs with different seeds (each its own split, initialisation and augmentation); and Zhang et al.'s
semantic check: a flower classifier's accuracy on the colourized photos, against gray and originals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.colorize import color, serving
from core.bench import BenchSpec
from core.data import batched, decode_resize_images

GOAL_METRICS = ("psnr_over_gray", "ssim_over_gray", "colorfulness_fraction")
# The catalogue's compact flower classifier at the colourizer's 32 px, trained on the same train split.
CLASSIFIER = {"image_size": 32, "width": 32, "depth": 2, "flip": True, "epochs": 40, "batch_size": 32,
              "learning_rate": 3e-3, "time_budget_s": 180, "early_stopping_patience": 8, "verbose": 2}


def bare_colorizer(pipeline, raw_inputs):
    """The model and its annealed mean on lightness at the model's size: the ab colour it predicts,
    what serving_default adds decoding, resizing, recombination and PNG encoding to."""
    cfg = pipeline.config
    rgb = decode_resize_images(pipeline.encode_request(raw_inputs)["image_bytes"], (cfg.image_size,) * 2)
    predict_ab = serving.make_ab_predictor(pipeline.require_model(), pipeline.centers, pipeline.temperature,
                                           pipeline.saturation)
    return predict_ab, color.lightness(rgb / 255.0)


def classifier_recipe(out_dir: Path) -> dict[str, float]:
    """Accuracy of image_classification, trained on the bench's flower training photos (same files: both
    apps split the sorted paths with the same seed and fractions), on the test photos as originals, as
    gray and as colourized by the seed-0 run (bench_runs/colorize).

    Equivalent commands: `catalogue train image_classification --data $CATALOGUE_DATA/flowers_128 --set
    image_size=32 width=32 depth=2 flip=true epochs=40 batch_size=32 learning_rate=3e-3`, then its model on
    the three versions of the test photos.
    """
    from apps.colorize import Pipeline
    from apps.image_classification import Config as ClassifierConfig
    from apps.image_classification import Pipeline as Classifier

    colorizer = Pipeline.from_workdir(Path(out_dir).parent / "colorize")
    config = ClassifierConfig(data=colorizer.config.data, seed=colorizer.config.seed, **CLASSIFIER)
    classifier = Classifier(config, Path(out_dir) / "classifier")
    classifier.fit()
    images, labels = zip(*batched(classifier.datasets().test, 256, cache=False))
    rgb, labels = tf.concat(images, 0) / 255.0, np.concatenate(labels)
    colorize = serving.make_colorizer(colorizer.model, colorizer.config.image_size, colorizer.centers,
                                      colorizer.temperature, colorizer.saturation)
    versions = {"original": rgb, "gray": color.gray_rgb(color.lightness(rgb)), "colorized": colorize(rgb)}
    return {f"{name}_accuracy": float(np.mean(np.argmax(classifier.model(tf.round(v * 255.0), training=False), -1)
                                              == labels)) for name, v in versions.items()}


BENCH = BenchSpec(
    # Measured on validation flowers at equal compute (README): 32 px with 4x the steps beats 64 px, and
    # no rebalancing beats lambda 0.95 on PSNR; two members beat one by 0.13-0.20 dB in each of three seeds.
    overrides={"epochs": 100, "batch_size": 32, "image_size": 32, "width": 24, "depth": 3, "learning_rate": 2e-3,
               "rebalance": 1.0, "steps_per_epoch": 15, "early_stopping_patience": 10, "time_budget_s": 900,
               "members": 2, "verbose": 2},
    dataset="flowers_128",
    source="TFDS tf_flowers, or its archive https://storage.googleapis.com/download.tensorflow.org/"
           "example_images/flower_photos.tgz: the photos anywhere under flowers_128/ (read recursively, "
           "labels unused; the bench's copy: 600 photos centre-cropped to 128x128 in flowers_128/train/<class>/)",
    # The goal, in every one of the three seeds: 1 dB closer to the photo than gray, as structured, colourful.
    bars=(("seeds_min_psnr_over_gray", ">=", 1.0), ("seeds_min_ssim_over_gray", ">=", 0.0),
          ("seeds_min_colorfulness_fraction", ">=", 0.5),
          ("classifier_colorized_accuracy", ">", "classifier_gray_accuracy")),
    seeds=(1, 2),
    seed_metrics=GOAL_METRICS,
    recipes={"classifier": classifier_recipe},
    bare_model=bare_colorizer,
)
