"""CIE Lab in TensorFlow ops, quantized ab bins, and colourfulness.

Everything here runs inside the exported graph (stock TF ops only), in the input pipeline and in the
loss, so training, evaluation and serving convert colours with exactly the same arithmetic.

Conventions: sRGB in [0, 1], D65 white, 2-degree observer (as skimage.color.rgb2lab);
L in [0, 100], a and b roughly in [-110, 110].
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0


def rgb_to_lab(rgb: tf.Tensor) -> tf.Tensor:
    """sRGB [..., 3] in [0, 1] -> Lab [..., 3]."""
    rgb = tf.clip_by_value(tf.convert_to_tensor(rgb, tf.float32), 0.0, 1.0)
    linear = tf.where(rgb <= 0.04045, rgb / 12.92, tf.pow((rgb + 0.055) / 1.055, 2.4))
    # Dividing by the white point here folds it into the matrix: xyz / white in one product.
    matrix = tf.constant((_RGB_TO_XYZ / _WHITE_D65[:, None]).T, tf.float32)
    xyz = tf.tensordot(linear, matrix, axes=1)
    # The linear segment below DELTA^3 keeps the cube root's slope finite near black.
    f = tf.where(xyz > _DELTA ** 3, tf.pow(tf.maximum(xyz, _DELTA ** 3), 1.0 / 3.0),
                 xyz / (3 * _DELTA ** 2) + 4.0 / 29.0)
    fx, fy, fz = tf.unstack(f, axis=-1)
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lightness(rgb: tf.Tensor) -> tf.Tensor:
    """sRGB [..., 3] in [0, 1] -> Lab's L [..., 1]: rgb_to_lab's first channel, from Y alone.

    What the model sees and what the recombination keeps at full resolution; a third of the cube
    roots and matrix columns of the full conversion.
    """
    rgb = tf.clip_by_value(tf.convert_to_tensor(rgb, tf.float32), 0.0, 1.0)
    linear = tf.where(rgb <= 0.04045, rgb / 12.92, tf.pow((rgb + 0.055) / 1.055, 2.4))
    y = tf.tensordot(linear, tf.constant(_RGB_TO_XYZ[1:2].T / _WHITE_D65[1], tf.float32), axes=1)
    fy = tf.where(y > _DELTA ** 3, tf.pow(tf.maximum(y, _DELTA ** 3), 1.0 / 3.0), y / (3 * _DELTA ** 2) + 4.0 / 29.0)
    return 116.0 * fy - 16.0


def lab_to_rgb(lab: tf.Tensor, clip: bool = True) -> tf.Tensor:
    """Lab [..., 3] -> sRGB [..., 3], clipped to [0, 1] unless `clip=False` (for gamut tests)."""
    lab = tf.convert_to_tensor(lab, tf.float32)
    lightness, a, b = tf.unstack(lab, axis=-1)
    fy = (lightness + 16.0) / 116.0
    f = tf.stack([fy + a / 500.0, fy, fy - b / 200.0], axis=-1)
    xyz = tf.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4.0 / 29.0))
    matrix = tf.constant((np.linalg.inv(_RGB_TO_XYZ) * _WHITE_D65[None, :]).T, tf.float32)
    linear = tf.tensordot(xyz, matrix, axes=1)
    positive = tf.maximum(linear, 0.0031308)
    rgb = tf.where(linear <= 0.0031308, 12.92 * linear, 1.055 * tf.pow(positive, 1.0 / 2.4) - 0.055)
    return tf.clip_by_value(rgb, 0.0, 1.0) if clip else rgb


def gray_rgb(lightness: tf.Tensor) -> tf.Tensor:
    """The grayscale baseline: L [..., 1] with a = b = 0, as sRGB [..., 3]."""
    return lab_to_rgb(tf.concat([lightness, tf.zeros_like(lightness), tf.zeros_like(lightness)], -1))


@functools.lru_cache(maxsize=8)
def ab_bin_centers(bin_size: float = 10.0) -> np.ndarray:
    """Centres [Q, 2] of the ab grid cells that some lightness can display in sRGB.

    With bin_size=10 this is the quantization of Zhang et al. (2016): ~300 bins covering the gamut.
    """
    if bin_size <= 0:
        raise ValueError(f"bin_size must be positive. Received: bin_size={bin_size}")
    steps = np.arange(-110.0, 110.0 + 1e-6, bin_size)
    a, b = np.meshgrid(steps, steps, indexing="ij")
    grid = np.stack([a.ravel(), b.ravel()], -1)
    lightness = np.linspace(1.0, 99.0, 50)
    lab = np.concatenate([np.repeat(lightness[:, None, None], len(grid), 1),
                          np.broadcast_to(grid, (len(lightness), *grid.shape))], -1)
    rgb = lab_to_rgb(lab.astype(np.float32), clip=False).numpy()
    inside = np.all((rgb >= -1e-3) & (rgb <= 1 + 1e-3), axis=-1).any(axis=0)
    return grid[inside].astype(np.float32)


def soft_encode(ab: tf.Tensor, centers: tf.Tensor, sigma: float = 5.0) -> tuple[tf.Tensor, tf.Tensor]:
    """ab [..., 2] -> (distribution over bins [..., Q], index of the nearest bin [...]).

    The distribution is a Gaussian kernel around the true colour: soft targets tell the network that
    neighbouring bins are nearly right, which one-hot targets would not.
    """
    distance2 = tf.reduce_sum(tf.square(ab[..., None, :] - centers), axis=-1)
    soft = tf.nn.softmax(-distance2 / (2.0 * sigma ** 2), axis=-1)
    return soft, tf.argmin(distance2, axis=-1, output_type=tf.int32)


def annealed_mean(logits: tf.Tensor, centers: tf.Tensor, temperature: float = 0.38) -> tf.Tensor:
    """Bin logits [..., Q] -> ab [..., 2]: the mean of the distribution sharpened by 1/temperature.

    temperature=1 is the plain mean (safe but greyish where the model hesitates between colours),
    temperature->0 the mode (vivid but patchy); Zhang et al. found 0.38 a good compromise.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive. Received: temperature={temperature}")
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32) / temperature, axis=-1)
    return tf.tensordot(probabilities, centers, axes=1)


def rebalancing_weights(prior: np.ndarray, centers: np.ndarray, mix: float = 0.5,
                        sigma: float = 5.0) -> np.ndarray:
    """Per-bin loss weights that make rare (saturated) colours count (Zhang et al. 2016, eq. 4).

    The empirical bin distribution is smoothed with a Gaussian in ab space and mixed with the uniform
    one (`mix` = lambda); weights are its inverse, normalised to an expected value of 1 under the data.
    mix=1 gives uniform weights, i.e. no rebalancing.
    """
    if not 0.0 < mix <= 1.0:
        raise ValueError(f"rebalance (lambda) must be in (0, 1]. Received: {mix}")
    prior = np.asarray(prior, np.float64)
    prior = prior / max(prior.sum(), 1e-12)
    distance2 = np.sum((centers[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
    kernel = np.exp(-distance2 / (2 * sigma ** 2))
    smoothed = kernel @ prior
    smoothed /= smoothed.sum()
    weights = 1.0 / ((1 - mix) * smoothed + mix / len(prior))
    return weights / np.sum(smoothed * weights)


def colorfulness(rgb) -> tf.Tensor:
    """Hasler and Suesstrunk (2003) colourfulness of RGB images [N, H, W, 3] in 0..255 -> [N].

    0 for gray images; about 15 for "slightly", 33 for "moderately", 59 for "quite" colourful.
    """
    rgb = tf.cast(rgb, tf.float32)
    red, green, blue = tf.unstack(rgb, axis=-1)
    rg, yb = red - green, 0.5 * (red + green) - blue
    axes = (-2, -1)
    spread = tf.sqrt(tf.math.reduce_variance(rg, axes) + tf.math.reduce_variance(yb, axes))
    mean = tf.sqrt(tf.reduce_mean(rg, axes) ** 2 + tf.reduce_mean(yb, axes) ** 2)
    return spread + 0.3 * mean
