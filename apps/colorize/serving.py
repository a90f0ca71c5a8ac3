"""Exported endpoints of the colourizer (stock TF ops only).

serving_default: image_bytes (string [N], encoded JPEG/PNG/GIF/BMP of any size, colour or gray)
                 -> colorized_png_bytes (string [N], PNG at each input's own resolution)
colorize_images: images (float32 [N, H, W, 3], 0..255, any H and W; gray images with R = G = B)
                 -> colorized_images (float32 [N, H, W, 3], 0..255)

The model sees the lightness of the image resized to its square input; the predicted ab is upsampled
to the input's resolution and recombined with the full-resolution lightness, so edges stay sharp.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from apps.colorize import color
from core.data import decode_image


def make_ab_predictor(model, centers: np.ndarray | None, temperature: float):
    """Returns predict_ab(lightness [N, S, S, 1]) -> ab [N, S, S, 2] at the model's resolution.

    `centers` are the ab bin centres of a loss="bins" model; None for a model that outputs ab.
    """
    centers = None if centers is None else tf.constant(centers, tf.float32)

    def predict_ab(small_lightness):
        outputs = tf.cast(model(small_lightness, training=False), tf.float32)
        return outputs if centers is None else color.annealed_mean(outputs, centers, temperature)

    return predict_ab


def make_colorizer(model, image_size: int, centers: np.ndarray | None, temperature: float):
    """Returns colorize(rgb [N, H, W, 3] in 0..1) -> colour rgb [N, H, W, 3] in 0..1."""
    predict_ab = make_ab_predictor(model, centers, temperature)
    return lambda rgb: recombine(rgb, predict_ab(model_input(rgb, image_size)))


def model_input(rgb: tf.Tensor, image_size: int) -> tf.Tensor:
    """rgb [N, H, W, 3] in 0..1 -> the model's input: lightness of the image resized to its square."""
    small = tf.image.resize(rgb, (image_size, image_size), antialias=True)
    return color.rgb_to_lab(small)[..., :1]


def recombine(rgb: tf.Tensor, ab: tf.Tensor) -> tf.Tensor:
    """Full-resolution lightness of rgb [N, H, W, 3] + ab upsampled from the model's resolution."""
    lightness = color.rgb_to_lab(rgb)[..., :1]
    ab = tf.image.resize(ab, tf.shape(rgb)[1:3], method="bilinear")
    return color.lab_to_rgb(tf.concat([lightness, ab], axis=-1))


def make_endpoints(model, image_size: int, centers: np.ndarray | None, temperature: float) -> dict:
    colorize = make_colorizer(model, image_size, centers, temperature)
    predict_ab = make_ab_predictor(model, centers, temperature)

    def decode(data):
        return tf.cast(decode_image(data, 3, "image_bytes"), tf.float32)[None] / 255.0

    def to_png(args):
        data, ab = args
        rgb = decode(data)
        out = recombine(rgb, ab[None])[0]
        return tf.io.encode_png(tf.cast(tf.round(out * 255.0), tf.uint8))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(image_bytes):
        # Every input keeps its own size, so decoding and the full-resolution recombination run per
        # image (several at once); the model runs once on the whole batch at its square resolution,
        # which made batch 32 about twice as fast as running the model inside the per-image loop.
        small = tf.map_fn(lambda data: model_input(decode(data), image_size)[0], image_bytes,
                          fn_output_signature=tf.TensorSpec([image_size, image_size, 1], tf.float32),
                          parallel_iterations=16)
        ab = predict_ab(small)
        pngs = tf.map_fn(to_png, (image_bytes, ab), fn_output_signature=tf.TensorSpec([], tf.string),
                         parallel_iterations=16)
        return {"colorized_png_bytes": pngs}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def colorize_images(images):
        return {"colorized_images": colorize(images / 255.0) * 255.0}

    return {"serving_default": serve_image_bytes, "colorize_images": colorize_images}
