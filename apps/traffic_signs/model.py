"""A CenterNet-style traffic-sign detector and a sign classifier, on compact backbones of one design.

    scenes [N, S, S, 3] -> backbone (stride 4) -> heatmap     [N, S/4, S/4, C]  sign centres per class
                                               -> regression  [N, S/4, S/4, 4]  dy, dx, log h, log w (cells)
    crops  [N, K, K, 3] -> crop backbone       -> class_probs [N, C]

Pixels are 0..255 floats.

Backbone: per-image standardisation, a stride-2 stem and three residual stages (strides 4, 8, 16),
then a small top-down path (FPN-style) back to stride 4: a 16 px sign covers 4x4 output cells, so
small signs keep a peak of their own. Anchor-free: one peak per sign, no anchor boxes to tune.
`centernet_targets` encodes ground-truth boxes into the heads' targets, in the graph per batch.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers, ops

from core.layers import ConvBlock, ResidualBlock

STRIDE = 4  # output cells per input pixel side
MIN_STRIDE_MULTIPLE = 16  # input sides must be multiples of the deepest stride


@keras.saving.register_keras_serializable(package="traffic_signs")
class Standardize(layers.Layer):
    """Per-image standardisation (zero mean, unit variance over pixels and channels).

    Dark, low-contrast photos (a large part of GTSRB) then look like bright ones to the network.
    """

    def call(self, x):
        x = ops.cast(x, "float32")
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        var = ops.var(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / ops.sqrt(var + 25.0)  # +25: flat images stay flat instead of amplifying noise


def build_backbone(width: int, head_width: int, name: str = "backbone") -> keras.Model:
    """Images of any size (multiple of 16) -> (stride-4 features, stride-16 features)."""
    inputs = keras.Input((None, None, 3), name="pixels")
    x = Standardize()(inputs)
    x = ConvBlock(width, 3, strides=2)(x)  # /2
    c2 = ResidualBlock(width * 2, strides=2)(x)  # /4
    c3 = ResidualBlock(width * 3, strides=2)(c2)  # /8
    c3 = ResidualBlock(width * 3)(c3)
    c4 = ResidualBlock(width * 4, strides=2)(c3)  # /16
    c4 = ResidualBlock(width * 4)(c4)
    p3 = layers.Add()([layers.Conv2D(head_width, 1)(c3), layers.UpSampling2D(2)(layers.Conv2D(head_width, 1)(c4))])
    p2 = layers.Add()([layers.Conv2D(head_width, 1)(c2), layers.UpSampling2D(2)(p3)])
    p2 = ConvBlock(head_width)(p2)
    return keras.Model(inputs, [p2, c4], name=name)


@keras.saving.register_keras_serializable(package="traffic_signs")
class RandomLighting(layers.Layer):
    """Training-time lighting changes that per-image standardisation does not cancel (0..255 pixels).

    A random gamma (exposure curve), a colour cast (per-channel gains: white balance) and a linear
    illumination ramp across the image in a random direction (backlight, half-shaded signs).
    strength 1.0: gamma in [1/2, 2], gains within +-15%, the ramp up to +-60% at the edges.
    Identity at inference.

    Args:
        strength: scale of all three changes; 0 disables the layer.
        seed: seed of its random draws.
    """

    def __init__(self, strength=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.strength = strength
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or self.strength <= 0:
            return x
        x = ops.cast(x, "float32")
        n = ops.shape(x)[0]
        s = self.strength
        gamma = ops.exp(keras.random.uniform((n, 1, 1, 1), -s, s, seed=self.seed_generator) * math.log(2.0))
        gains = 1.0 + 0.15 * s * keras.random.uniform((n, 1, 1, 3), -1.0, 1.0, seed=self.seed_generator)
        angle = keras.random.uniform((n, 1, 1, 1), 0.0, 2.0 * math.pi, seed=self.seed_generator)
        slope = 0.6 * s * keras.random.uniform((n, 1, 1, 1), -1.0, 1.0, seed=self.seed_generator)
        rows = ops.linspace(-1.0, 1.0, ops.shape(x)[1])[None, :, None, None]
        cols = ops.linspace(-1.0, 1.0, ops.shape(x)[2])[None, None, :, None]
        ramp = 1.0 + slope * (ops.cos(angle) * rows + ops.sin(angle) * cols)
        lit = 255.0 * ops.power(ops.clip(x, 0.0, 255.0) / 255.0, gamma) * gains * ramp
        return ops.clip(lit, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "seed": self.seed}


def crop_augmentation(seed: int, lighting: float = 0.0, name: str = "crop_augment") -> keras.Sequential:
    # Framing, and optionally lighting: per-image standardisation cancels uniform brightness and
    # contrast changes but not gamma, colour casts or uneven light. No flips: they turn "keep left"
    # into "keep right".
    steps = [layers.RandomTranslation(0.08, 0.08, seed=seed), layers.RandomRotation(0.03, seed=seed),
             layers.RandomZoom(0.12, seed=seed)]
    if lighting > 0:
        steps.append(RandomLighting(lighting, seed=seed))
    return keras.Sequential(steps, name=name)


def build_model(config, num_classes: int) -> keras.Model:
    """The joint training model: {"scenes", "crops"} -> {"heatmap", "regression", "class_probs"}."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2. Received: num_classes={num_classes}")
    for key in ("image_size", "serve_size", "crop_size"):
        value = getattr(config, key) or config.image_size
        if value <= 0 or value % MIN_STRIDE_MULTIPLE:
            raise ValueError(f"{key} must be a positive multiple of {MIN_STRIDE_MULTIPLE}. "
                             f"Received: {key}={value}")
    backbone = build_backbone(config.width, config.head_width)
    scenes = keras.Input((config.image_size, config.image_size, 3), name="scenes")
    crops = keras.Input((config.crop_size, config.crop_size, 3), name="crops")

    features, _ = backbone(scenes)
    heat = ConvBlock(config.head_width, name="heatmap_conv")(features)
    # Bias so every cell starts at p = 0.01: the focal loss then starts small instead of exploding.
    prior = -math.log((1 - 0.01) / 0.01)
    heatmap = layers.Conv2D(num_classes, 1, activation="sigmoid", dtype="float32", name="heatmap",
                            bias_initializer=keras.initializers.Constant(prior))(heat)
    reg = ConvBlock(config.head_width, name="regression_conv")(features)
    regression = layers.Conv2D(4, 1, dtype="float32", name="regression")(reg)

    # Crops get a backbone of their own: shared BatchNorm layers would average the statistics of whole
    # scenes and of tight sign crops, which fit neither at inference.
    x = crops
    if config.augment:
        x = crop_augmentation(config.seed, config.crop_lighting)(x)
    fine, deep = build_backbone(config.width, config.head_width, name="crop_backbone")(x)
    pooled = layers.Concatenate()([layers.GlobalAveragePooling2D()(deep), layers.GlobalMaxPooling2D()(fine)])
    pooled = layers.Dropout(config.dropout)(pooled)
    class_probs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="class_probs")(pooled)
    return keras.Model({"scenes": scenes, "crops": crops},
                       {"heatmap": heatmap, "regression": regression, "class_probs": class_probs},
                       name="traffic_signs")


def detector(model: keras.Model) -> keras.Model:
    """The scene branch of the joint model (shares its weights): scenes -> (heatmap, regression)."""
    return keras.Model(model.input["scenes"], [model.output["heatmap"], model.output["regression"]],
                       name="detector")


def classifier(model: keras.Model, views: int = 1) -> keras.Model:
    """The crop branch of the joint model (shares its weights): crops -> class probabilities.

    views > 1 averages the probabilities over that many views of each crop (test-time augmentation):
    the crop itself, then 90% crops from its centre and four corners, each resized back. A crop's
    framing varies (GTSRB's border is 10% of the sign, with jitter); the views vote over it.
    """
    if not 1 <= views <= 6:
        raise ValueError(f"views must be between 1 and 6. Received: views={views}")
    single = keras.Model(model.input["crops"], model.output["class_probs"], name="classifier")
    if views == 1:
        return single
    size = model.input["crops"].shape[1]
    crops = keras.Input((size, size, 3), name="crops")
    inner = int(round(0.9 * size))
    corners = [((size - inner) // 2,) * 2, (0, 0), (0, size - inner), (size - inner, 0), (size - inner,) * 2]
    stacked = [crops] + [ops.image.resize(crops[:, y:y + inner, x:x + inner, :], (size, size))
                         for y, x in corners[:views - 1]]
    probs = single(ops.concatenate(stacked, axis=0))
    probs = ops.mean(ops.reshape(probs, (len(stacked), -1, probs.shape[-1])), axis=0)
    return keras.Model(crops, probs, name=f"classifier_{len(stacked)}_views")


def classifier_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers with the classifier's weights (its backbone and head)."""
    return [model.get_layer("crop_backbone"), model.get_layer("class_probs")]


# ----------------------------------------------------------------------------------------------
# Targets and losses (CenterNet: Zhou et al. 2019, "Objects as Points"); targets are built in the
# graph per batch.

def centernet_targets(boxes: tf.Tensor, classes: tf.Tensor, image_size: int, stride: int,
                      num_classes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Ground truth for a batch -> (heatmap [B, G, G, C], regression [B, G, G, 5]).

    The heatmap holds a Gaussian peak of exactly 1 at each object's centre cell, wide in proportion
    to its size. Regression holds, at centre cells only, the sub-cell centre offset (dy, dx), the
    log box size in cells (log h, log w), and a mask channel (1 at centres).
    """
    grid = image_size // stride
    boxes = tf.cast(boxes, tf.float32) / stride
    valid = classes >= 0
    cy = (boxes[..., 0] + boxes[..., 2]) / 2
    cx = (boxes[..., 1] + boxes[..., 3]) / 2
    h = tf.maximum(boxes[..., 2] - boxes[..., 0], 1e-3)
    w = tf.maximum(boxes[..., 3] - boxes[..., 1], 1e-3)
    iy = tf.clip_by_value(tf.floor(cy), 0, grid - 1)
    ix = tf.clip_by_value(tf.floor(cx), 0, grid - 1)
    # Gaussian width: a sixth of the box side (at least half a cell), so 16 px signs stay sharp peaks.
    sy = tf.maximum(h / 6.0, 0.5)
    sx = tf.maximum(w / 6.0, 0.5)
    cells = tf.range(grid, dtype=tf.float32)
    gy = tf.exp(-tf.square(cells[None, None, :] - iy[..., None]) / (2 * tf.square(sy[..., None])))
    gx = tf.exp(-tf.square(cells[None, None, :] - ix[..., None]) / (2 * tf.square(sx[..., None])))
    gauss = gy[..., :, None] * gx[..., None, :]  # [B, M, G, G]
    batch = tf.shape(classes)[0]
    m = tf.shape(classes)[1]
    # Max (not sum) over the objects of one class in one image: overlapping peaks stay at most 1.
    # Segment b * C + class; padding objects go to an extra segment that is dropped.
    segment = tf.where(valid, tf.range(batch)[:, None] * num_classes + classes, batch * num_classes)
    heat = tf.math.unsorted_segment_max(tf.reshape(gauss, [-1, grid, grid]), tf.reshape(segment, [-1]),
                                        batch * num_classes + 1)[:-1]
    heat = tf.maximum(heat, 0.0)  # empty segments come back as the lowest float
    heat = tf.transpose(tf.reshape(heat, [batch, num_classes, grid, grid]), [0, 2, 3, 1])

    b_idx = tf.tile(tf.range(batch)[:, None], [1, m])
    idx = tf.stack([b_idx, tf.cast(iy, tf.int32), tf.cast(ix, tf.int32)], -1)
    values = tf.stack([cy - iy, cx - ix, tf.math.log(h), tf.math.log(w), tf.ones_like(cy)], -1)
    idx = tf.boolean_mask(idx, valid)
    values = tf.boolean_mask(values, valid)
    regression = tf.scatter_nd(idx, values, tf.stack([batch, grid, grid, 5]))
    # Two objects in one cell: scatter_nd adds; keep the mask binary and the values of a mean.
    count = tf.maximum(regression[..., 4:5], 1.0)
    regression = tf.concat([regression[..., :4] / count, tf.minimum(regression[..., 4:5], 1.0)], -1)
    return heat, regression


def heatmap_focal_loss(y_true, y_pred):
    """Penalty-reduced focal loss over all cells and classes, normalised by the number of signs."""
    y_true = ops.cast(y_true, "float32")
    p = ops.clip(ops.cast(y_pred, "float32"), 1e-4, 1.0 - 1e-4)
    positive = ops.cast(ops.greater_equal(y_true, 1.0 - 1e-4), "float32")
    pos_loss = ops.log(p) * ops.square(1.0 - p) * positive
    neg_loss = ops.log(1.0 - p) * ops.square(p) * ops.power(1.0 - y_true, 4.0) * (1.0 - positive)
    num_pos = ops.maximum(ops.sum(positive), 1.0)
    return -(ops.sum(pos_loss) + ops.sum(neg_loss)) / num_pos


class RegressionLoss(keras.losses.Loss):
    """L1 on centre offsets and log sizes at the centre cells only (mask in y_true's 5th channel).

    Args:
        size_weight: weight of the log-size terms.
        offset_weight: weight of the centre-offset terms.
    """

    def __init__(self, size_weight=0.5, offset_weight=1.0, name="regression_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.size_weight = size_weight
        self.offset_weight = offset_weight

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        mask = y_true[..., 4:5]
        error = ops.abs(y_true[..., :4] - y_pred) * mask
        n = ops.maximum(ops.sum(mask), 1.0)
        return (self.offset_weight * ops.sum(error[..., :2]) + self.size_weight * ops.sum(error[..., 2:])) / n

    def get_config(self):
        return {**super().get_config(), "size_weight": self.size_weight, "offset_weight": self.offset_weight}
