"""Exported endpoints of the colourizer (stock TF ops only).

serving_default:     image_bytes (string [N], encoded JPEG/PNG/GIF/BMP of any size, colour or gray)
                     -> colorized_png_bytes (string [N], PNG at each input's own resolution)
colorize_with_hints: image_bytes as above, hints (float32 [N, K, 4]: K clicks (x, y, a, b) per image, x
                     and y in that image's pixels, a and b the wanted Lab colour; rows outside the image,
                     e.g. x = -1, are padding) -> colorized_png_bytes
colorize_images:     images (float32 [N, H, W, 3], 0..255, any H and W; gray images with R = G = B)
                     -> colorized_images (float32 [N, H, W, 3], 0..255)

The model sees the lightness of the image resized to its square input, beside the hint maps; the
predicted ab is upsampled to the input's resolution and recombined with the full-resolution lightness,
so edges stay sharp.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from apps.colorize import color
from core.data import check_request_size, decode_image
from core.export import run_model

HINT_CHANNELS = 3  # a and b of the hinted colour, and a mask that is 1 where a hint is
HINT_AB_LIMIT = 128.0  # Lab's a and b stay within +-128: larger hints are clipped to it
# Light regions of photos (highlights, white petals, clouds) are nearly neutral, and colour the low-resolution
# ab bleeds into them costs PSNR: chroma fades linearly from this lightness to none at white (best of
# 40-95 on validation flowers in each of three seeds).
FADE_LIGHTNESS = 70.0
# Near black the same holds for shadows: chroma also fades from this lightness down to none at black (20 gained
# on validation in each of three seeds; 30 and 40 lost in one).
DARK_FADE_LIGHTNESS = 20.0


def no_hints(lightness: tf.Tensor) -> tf.Tensor:
    """Empty hint maps [N, S, S, HINT_CHANNELS] for lightness [N, S, S, 1]: what serving_default feeds."""
    return tf.zeros(tf.concat([tf.shape(lightness)[:3], [HINT_CHANNELS]], axis=0))


def hint_maps(hints: tf.Tensor, sizes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Clicks [N, K, 4] (x, y, a, b) on images of sizes [N, 2] (height, width) -> maps [N, S, S, 3].

    Each click lands in the model's cell under it; clicks sharing a cell are averaged.
    """
    hints = tf.convert_to_tensor(hints, tf.float32)
    x, y, a, b = tf.unstack(hints, num=4, axis=-1)
    sizes = tf.cast(sizes, tf.float32)
    height, width = sizes[:, :1], sizes[:, 1:]
    inside = tf.cast((x >= 0) & (y >= 0) & (x < width) & (y < height), tf.float32)
    rows = tf.one_hot(tf.cast(tf.floor(y * image_size / height), tf.int32), image_size) * inside[..., None]
    cols = tf.one_hot(tf.cast(tf.floor(x * image_size / width), tf.int32), image_size)
    count = tf.einsum("nkr,nkc->nrc", rows, cols)
    ab = tf.stack([tf.einsum("nkr,nkc->nrc", rows * tf.clip_by_value(v, -HINT_AB_LIMIT, HINT_AB_LIMIT)[..., None],
                             cols) for v in (a, b)], axis=-1)
    mask = tf.minimum(count, 1.0)[..., None]
    return tf.concat([ab / tf.maximum(count, 1.0)[..., None], mask], axis=-1)


def make_ab_predictor(model, centers: np.ndarray, temperature: float, saturation: float = 1.0):
    """Returns predict_ab(lightness [N, S, S, 1], hint maps [N, S, S, 3] or None) -> ab [N, S/2, S/2, 2].

    `centers` are the ab bin centres of the model's logits; the annealed mean at `temperature` is
    multiplied by `saturation` except where a hint gives the colour.
    """
    centers = tf.constant(centers, tf.float32)

    def predict_ab(small_lightness, hints=None):
        hints = no_hints(small_lightness) if hints is None else hints
        outputs = tf.cast(run_model(model, tf.concat([small_lightness, hints], axis=-1)), tf.float32)
        # The members' distributions multiplied (mean log-probability): where one is unsure the others decide.
        log_probs = tf.reduce_mean(tf.nn.log_softmax(outputs), axis=-2)
        ab = color.annealed_mean(log_probs, centers, temperature)
        # A mean of the plausible colours is paler than each of them; a clicked cell keeps its click.
        return tf.where(clicked_cells(hints, tf.shape(ab)[1:3]), ab, ab * saturation)

    return predict_ab


def clicked_cells(hints: tf.Tensor, size) -> tf.Tensor:
    """Hint maps [N, S, S, 3] -> bool [N, h, w, 1]: the cells of an (h, w) output grid holding a click."""
    return tf.image.resize(hints[..., 2:], size, method="area") > 0


def make_colorizer(model, image_size: int, centers: np.ndarray, temperature: float, saturation: float = 1.0):
    """Returns colorize(rgb [N, H, W, 3] in 0..1, hint maps or None) -> colour rgb [N, H, W, 3] in 0..1."""
    predict_ab = make_ab_predictor(model, centers, temperature, saturation)
    return lambda rgb, hints=None: recombine(rgb, predict_ab(model_input(rgb, image_size), hints), hints)


def model_input(rgb: tf.Tensor, image_size: int) -> tf.Tensor:
    """rgb [N, H, W, 3] in 0..1 -> the model's input: lightness of the image resized to its square."""
    return color.lightness(tf.image.resize(rgb, (image_size, image_size), antialias=True))


def recombine(rgb: tf.Tensor, ab: tf.Tensor, hints: tf.Tensor | None = None) -> tf.Tensor:
    """Full-resolution lightness of rgb [N, H, W, 3] + ab upsampled from the model's resolution, its
    chroma faded to none from FADE_LIGHTNESS up to white and from DARK_FADE_LIGHTNESS down to black, except
    in cells a hint (maps [N, S, S, 3]) gives the colour of."""
    lightness, size = color.lightness(rgb), tf.shape(rgb)[1:3]
    fade = tf.clip_by_value(tf.minimum((100.0 - lightness) / (100.0 - FADE_LIGHTNESS),
                                       lightness / DARK_FADE_LIGHTNESS), 0.0, 1.0)
    if hints is not None:
        clicked = tf.cast(clicked_cells(hints, tf.shape(ab)[1:3]), tf.float32)
        fade = tf.where(tf.image.resize(clicked, size, method="nearest") > 0, 1.0, fade)
    ab = tf.image.resize(ab, size, method="bilinear") * fade
    return color.lab_to_rgb(tf.concat([lightness, ab], axis=-1))


def make_endpoints(model, image_size: int, centers: np.ndarray, temperature: float, saturation: float) -> dict:
    colorize = make_colorizer(model, image_size, centers, temperature, saturation)
    predict_ab = make_ab_predictor(model, centers, temperature, saturation)

    def decode_flat(data):  # a photo's pixels as one row, so photos of any size fit one (ragged) batch
        rgb = decode_image(data, 3, "image_bytes")
        return tf.reshape(rgb, [-1]), tf.shape(rgb)[:2]

    def unflatten(row, size):
        return tf.cast(tf.reshape(row, tf.concat([size, [3]], axis=0)), tf.float32) / 255.0

    def to_png(rgb):
        return tf.io.encode_png(tf.cast(tf.round(rgb * 255.0), tf.uint8))

    def each(fn, elems, signature):
        return tf.map_fn(fn, elems, fn_output_signature=signature, parallel_iterations=16)

    def serve(image_bytes, hints):
        # Only what must be per image runs per image: decoding (once) and PNG encoding. A loop step
        # costs more in op dispatch than in arithmetic for photos this small, so the resizing, the
        # model and the colour conversions run on the batch.
        with tf.control_dependencies([check_request_size(image_bytes)]):  # every photo stays decoded at once
            image_bytes = tf.identity(image_bytes)
        flat, sizes = each(decode_flat, image_bytes,
                           (tf.RaggedTensorSpec([None], tf.uint8, ragged_rank=0), tf.TensorSpec([2], tf.int32)))
        maps = hint_maps(hints, sizes, image_size)
        same_size = tf.logical_and(tf.size(image_bytes) > 0, tf.reduce_all(tf.equal(sizes, sizes[:1])))

        def one_batch():  # the usual request: photos of one size are one tensor
            rgb = unflatten(flat.flat_values, tf.concat([tf.shape(sizes)[:1], sizes[0]], axis=0))
            return each(to_png, colorize(rgb, maps), tf.TensorSpec([], tf.string))

        def one_by_one():  # mixed sizes: each photo keeps its own
            small = each(lambda args: model_input(unflatten(*args)[None], image_size)[0], (flat, sizes),
                         tf.TensorSpec([image_size, image_size, 1], tf.float32))
            return each(lambda args: to_png(recombine(unflatten(args[0], args[1])[None], args[2][None],
                                                      args[3][None])[0]),
                        (flat, sizes, predict_ab(small, maps), maps), tf.TensorSpec([], tf.string))

        return {"colorized_png_bytes": tf.cond(same_size, one_batch, one_by_one)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(image_bytes):
        return serve(image_bytes, tf.zeros([tf.size(image_bytes), 0, 4]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                  tf.TensorSpec([None, None, 4], tf.float32, name="hints")])
    def colorize_with_hints(image_bytes, hints):
        checks = [tf.debugging.assert_equal(tf.shape(hints)[0], tf.size(image_bytes), message=(
                      "Invalid hints: expected one row of clicks [K, 4] per image_bytes")),
                  tf.debugging.assert_all_finite(hints, "Invalid hints: expected finite (x, y, a, b) values")]
        with tf.control_dependencies(checks):
            return serve(image_bytes, tf.identity(hints))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def colorize_images(images):
        return {"colorized_images": colorize(images / 255.0) * 255.0}

    return {"serving_default": serve_image_bytes, "colorize_with_hints": colorize_with_hints,
            "colorize_images": colorize_images}
