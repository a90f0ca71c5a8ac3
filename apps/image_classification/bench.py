"""Image classification's bench: 600 real flower photos in five classes, against the majority class."""

from __future__ import annotations

import tensorflow as tf

from core.bench import BenchSpec
from core.data import decode_resize_images, read_bytes

FLOWERS_SOURCE = (
    "TFDS tf_flowers, or its archive https://storage.googleapis.com/download.tensorflow.org/example_images/"
    "flower_photos.tgz: one folder per class (daisy, dandelion, roses, sunflowers, tulips) under "
    "flowers_128/train/, e.g. flowers_128/train/roses/*.jpg (the bench's copy: the first 120 photos of each "
    "class, centre-cropped to 128x128; any count and size work)")


def bare_classifier(pipeline, raw_inputs):
    """The Keras model on decoded, resized images: what serving_default adds decoding and top-k to."""
    model = pipeline.require_model()
    size = (pipeline.config.image_size,) * 2
    images = decode_resize_images(tf.constant([read_bytes(x) for x in raw_inputs]), size)
    return (lambda x: model(x, training=False)), images


BENCH = BenchSpec(
    overrides={"epochs": 30, "batch_size": 32, "width": 32, "depth": 3, "image_size": 64, "flip": True,
               "time_budget_s": 420, "early_stopping_patience": 8, "verbose": 2},
    dataset="flowers_128",
    source=FLOWERS_SOURCE,
    bars=(("accuracy", ">", "chance"),),
    bare_model=bare_classifier,
)
