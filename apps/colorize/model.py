"""A U-Net that reads lightness and predicts colour, built from core's convolutional blocks.

Input: [N, S, S, 4]: L in 0..100 (CIE Lab lightness) and the user's colour hints: a, b of the hinted
colour and a 0/1 mask (all zero without hints; serving.hint_maps). Output, at half the input
resolution (colour varies slowly; the endpoint upsamples ab and recombines it with the full-resolution L):
 [N, S/2, S/2, Q] over quantized ab colours (Zhang et al. 2016), decoded by an annealed mean,
which keeps colours vivid where the model hesitates between several. (Regressing ab with L2 instead
scored 0.7 dB lower PSNR on validation flowers: the average of plausible colours is brownish grey.)

    encoder: S -> S/2 -> ... -> S/2^depth    (residual stages, widths double)
    global:  average-pooled bottleneck features added back everywhere (scene type: sky, foliage ...)
    decoder: upsample, concatenate the encoder's features at that scale, a conv block; up to S/2

Logits come with a members axis, [N, S/2, S/2, M, Q]: M = 1 for one U-Net; an ensemble (config.members)
joins M U-Nets trained one after another from different starts (pipeline.fit), and serving averages their
log-probabilities.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from apps.colorize import color
from apps.colorize.serving import HINT_CHANNELS
from core.layers import ConvBlock, ResidualBlock

OUTPUT_STRIDE = 2


def build_model(config, num_bins: int) -> keras.Model:
    """L and hint maps batch -> ab bin logits [N, S/2, S/2, members, Q], float32 even under mixed precision."""
    if config.members == 1:
        return build_member(config, num_bins, "colorizer")
    inputs = keras.Input((config.image_size, config.image_size, 1 + HINT_CHANNELS), name="lightness_hints")
    members = [build_member(config, num_bins, f"colorizer_{i}")(inputs) for i in range(config.members)]
    return keras.Model(inputs, layers.Concatenate(axis=-2, dtype="float32")(members), name="colorizers")


def build_member(config, num_bins: int, name: str) -> keras.Model:
    """One U-Net: L and hint maps -> ab bin logits [N, S/2, S/2, 1, Q]."""
    if config.depth < 1:
        raise ValueError(f"depth must be at least 1. Received: depth={config.depth}")
    if config.image_size % 2 ** config.depth:
        raise ValueError(f"image_size must be divisible by 2**depth={2 ** config.depth}. "
                         f"Received: image_size={config.image_size}")
    inputs = keras.Input((config.image_size, config.image_size, 1 + HINT_CHANNELS), name="lightness_hints")
    # L to [-1, 1], hinted ab to about [-1, 1], the mask as it is.
    x = layers.Rescaling([1.0 / 50.0, 0.01, 0.01, 1.0], offset=[-1.0, 0.0, 0.0, 0.0])(inputs)
    x = ConvBlock(config.width)(x)
    skips = []
    for level in range(1, config.depth + 1):
        skips.append(x)
        x = ResidualBlock(config.width * 2 ** level, strides=2)(x)
        x = ResidualBlock(config.width * 2 ** level)(x)

    scene = layers.GlobalAveragePooling2D(keepdims=True)(x)
    scene = layers.Dense(x.shape[-1], activation="swish")(scene)
    x = layers.Add()([x, scene])

    # skips[i] has stride 2**i; the decoder stops at OUTPUT_STRIDE.
    for level in range(config.depth - 1, 0, -1):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.Concatenate()([x, skips[level]])
        x = ConvBlock(config.width * 2 ** level)(x)
    logits = layers.Conv2D(num_bins, 1, dtype="float32", name="ab_logits")(x)
    centers = color.ab_bin_centers(config.bin_size)
    outputs = HintedOutput(centers, config.soft_sigma, dtype="float32", name="hinted")(logits, inputs[..., 1:])
    return keras.Model(inputs, layers.Reshape((*outputs.shape[1:3], 1, num_bins), dtype="float32")(outputs),
                       name=name)


class HintedOutput(layers.Layer):
    """Where the user gave a colour, the output takes it: the network learns to spread hints to their
    regions, this layer makes sure the hinted cell itself shows the hint from the first step on.

    Bin logits get the log of a Gaussian around the hinted ab: a product of the network's belief and
    the hint's.

    Args:
        centers: ab bin centres [Q, 2] of the logits.
        sigma: the hint Gaussian's width in ab units.

    Example:
        >>> HintedOutput(color.ab_bin_centers(), 5.0)(logits, hint_maps)  # [N, S/2, S/2, Q], [N, S, S, 3]
    """

    def __init__(self, centers, sigma, **kwargs):
        super().__init__(**kwargs)
        self.centers = np.asarray(centers, np.float32)
        self.sigma = sigma

    def call(self, logits, hint_maps):
        stride = OUTPUT_STRIDE
        # The ab channels are ab * mask: pooled, their ratio to the pooled mask is the hints' mean colour.
        pooled = tf.nn.avg_pool2d(tf.cast(hint_maps, tf.float32), stride, stride, "VALID")
        hinted = tf.cast(pooled[..., 2:] > 0, tf.float32)
        ab = pooled[..., :2] / tf.maximum(pooled[..., 2:], 1e-6)
        distance2 = tf.reduce_sum(tf.square(ab[..., None, :] - self.centers), axis=-1)
        return logits - hinted * distance2 / (2.0 * self.sigma ** 2)

    def get_config(self):
        return {**super().get_config(), "centers": self.centers.tolist(), "sigma": self.sigma}


def make_loss(config, centers: np.ndarray, bin_weights: np.ndarray):
    """The training loss on targets ab [N, S/2, S/2, 2] in ab units: cross-entropy against Gaussian
    soft-encoded targets, each pixel weighted by how rare its colour is (`bin_weights`, from
    color.rebalancing_weights), so that the frequent dull colours of backgrounds do not drown out the
    saturated ones. Logits [N, S/2, S/2, M, Q]: each member meets the targets on its own.
    """
    centers = tf.constant(centers, tf.float32)
    weights = tf.constant(bin_weights, tf.float32)

    def rebalanced_cross_entropy(ab, logits):
        targets, nearest = color.soft_encode(ab, centers, config.soft_sigma)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))  # [N, S/2, S/2, M, Q]
        cross_entropy = -tf.reduce_sum(targets[..., None, :] * log_probs, axis=-1)
        return tf.gather(weights, nearest)[..., None] * cross_entropy

    return rebalanced_cross_entropy
