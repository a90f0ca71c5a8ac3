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
from core.export import run_model


def make_ab_predictor(model, centers: np.ndarray | None, temperature: float):
    """Returns predict_ab(lightness [N, S, S, 1]) -> ab [N, S, S, 2] at the model's resolution.

    `centers` are the ab bin centres of a loss="bins" model; None for a model that outputs ab.
    """
    centers = None if centers is None else tf.constant(centers, tf.float32)

    def predict_ab(small_lightness):
        outputs = tf.cast(run_model(model, small_lightness), tf.float32)
        return outputs if centers is None else color.annealed_mean(outputs, centers, temperature)

    return predict_ab


def make_colorizer(model, image_size: int, centers: np.ndarray | None, temperature: float):
    """Returns colorize(rgb [N, H, W, 3] in 0..1) -> colour rgb [N, H, W, 3] in 0..1."""
    predict_ab = make_ab_predictor(model, centers, temperature)
    return lambda rgb: recombine(rgb, predict_ab(model_input(rgb, image_size)))


def model_input(rgb: tf.Tensor, image_size: int) -> tf.Tensor:
    """rgb [N, H, W, 3] in 0..1 -> the model's input: lightness of the image resized to its square."""
    return color.lightness(tf.image.resize(rgb, (image_size, image_size), antialias=True))


def recombine(rgb: tf.Tensor, ab: tf.Tensor) -> tf.Tensor:
    """Full-resolution lightness of rgb [N, H, W, 3] + ab upsampled from the model's resolution."""
    ab = tf.image.resize(ab, tf.shape(rgb)[1:3], method="bilinear")
    return color.lab_to_rgb(tf.concat([color.lightness(rgb), ab], axis=-1))


def make_endpoints(model, image_size: int, centers: np.ndarray | None, temperature: float) -> dict:
    colorize = make_colorizer(model, image_size, centers, temperature)
    predict_ab = make_ab_predictor(model, centers, temperature)

    def decode_flat(data):  # a photo's pixels as one row, so photos of any size fit one (ragged) batch
        rgb = decode_image(data, 3, "image_bytes")
        return tf.reshape(rgb, [-1]), tf.shape(rgb)[:2]

    def unflatten(row, size):
        return tf.cast(tf.reshape(row, tf.concat([size, [3]], axis=0)), tf.float32) / 255.0

    def to_png(rgb):
        return tf.io.encode_png(tf.cast(tf.round(rgb * 255.0), tf.uint8))

    def each(fn, elems, signature):
        return tf.map_fn(fn, elems, fn_output_signature=signature, parallel_iterations=16)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(image_bytes):
        # Only what must be per image runs per image: decoding (once) and PNG encoding. A loop step
        # costs more in op dispatch than in arithmetic for photos this small, so the resizing, the
        # model and the colour conversions run on the batch.
        flat, sizes = each(decode_flat, image_bytes,
                           (tf.RaggedTensorSpec([None], tf.uint8, ragged_rank=0), tf.TensorSpec([2], tf.int32)))
        same_size = tf.logical_and(tf.size(image_bytes) > 0, tf.reduce_all(tf.equal(sizes, sizes[:1])))

        def one_batch():  # the usual request: photos of one size are one tensor
            rgb = unflatten(flat.flat_values, tf.concat([tf.shape(sizes)[:1], sizes[0]], axis=0))
            return each(to_png, colorize(rgb), tf.TensorSpec([], tf.string))

        def one_by_one():  # mixed sizes: each photo keeps its own
            small = each(lambda args: model_input(unflatten(*args)[None], image_size)[0], (flat, sizes),
                         tf.TensorSpec([image_size, image_size, 1], tf.float32))
            return each(lambda args: to_png(recombine(unflatten(args[0], args[1])[None], args[2][None])[0]),
                        (flat, sizes, predict_ab(small)), tf.TensorSpec([], tf.string))

        return {"colorized_png_bytes": tf.cond(same_size, one_batch, one_by_one)}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def colorize_images(images):
        return {"colorized_images": colorize(images / 255.0) * 255.0}

    return {"serving_default": serve_image_bytes, "colorize_images": colorize_images}
