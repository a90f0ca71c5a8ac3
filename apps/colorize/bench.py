"""Colourization's bench: held-out real flower photos, against their grayscale version (L alone)."""

from __future__ import annotations

from apps.colorize import color, serving
from core.bench import BenchSpec
from core.data import decode_resize_images


def bare_colorizer(pipeline, raw_inputs):
    """The model and its annealed mean on lightness at the model's size: the ab colour it predicts,
    what serving_default adds decoding, resizing, recombination and PNG encoding to."""
    cfg = pipeline.config
    rgb = decode_resize_images(pipeline.encode_request(raw_inputs)["image_bytes"], (cfg.image_size,) * 2)
    predict_ab = serving.make_ab_predictor(pipeline.require_model(), pipeline.centers, cfg.temperature)
    return predict_ab, color.lightness(rgb / 255.0)


BENCH = BenchSpec(
    # Flowers are less varied in colour than the embedded photos: a lighter rebalancing keeps PSNR up.
    overrides={"epochs": 40, "batch_size": 32, "image_size": 64, "width": 24, "depth": 3, "learning_rate": 2e-3,
               "rebalance": 0.95, "early_stopping_patience": 10, "time_budget_s": 900, "verbose": 2},
    dataset="flowers_128",
    source="TFDS tf_flowers, or its archive https://storage.googleapis.com/download.tensorflow.org/"
           "example_images/flower_photos.tgz: the photos anywhere under flowers_128/ (read recursively, "
           "labels unused; the bench's copy: 600 photos centre-cropped to 128x128 in flowers_128/train/<class>/)",
    bars=(("psnr", ">", "gray_psnr"), ("colorfulness_fraction", ">=", 0.5)),
    bare_model=bare_colorizer,
)
