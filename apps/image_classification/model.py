"""A compact residual CNN, or a keras.applications backbone, for image classification.

Input: float32 images [N, S, S, 3] with values in 0..255. Augmentation and rescaling live inside
the model so every caller (training, export, a user's own code) feeds the same raw pixels.
"""

from __future__ import annotations

import keras
from keras import layers

from core.backbones import backbone_features
from core.layers import ConvBlock, ResidualBlock


def augmentation(flip: bool, seed: int) -> keras.Sequential:
    steps = [layers.RandomTranslation(0.1, 0.1, seed=seed), layers.RandomRotation(0.04, seed=seed),
             layers.RandomZoom(0.1, seed=seed), layers.RandomContrast(0.2, seed=seed)]
    if flip:
        steps.insert(0, layers.RandomFlip("horizontal", seed=seed))
    return keras.Sequential(steps, name="augment")


def build_model(config, num_classes: int) -> keras.Model:
    """Image batch -> class probabilities (float32 even under mixed precision)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2. Received: num_classes={num_classes}")
    inputs = keras.Input((config.image_size, config.image_size, 3), name="images")
    x = augmentation(config.flip, config.seed)(inputs) if config.augment else inputs
    if config.backbone:
        # Frozen here; the fine-tuning phase unfreezes its top layers.
        x = backbone_features(config.backbone, x, config.image_size, config.weights, pooling="avg")
    else:
        x = layers.Rescaling(1.0 / 255)(x)
        x = ConvBlock(config.width)(x)
        for stage in range(config.depth):
            width = config.width * 2 ** stage
            x = ResidualBlock(width, strides=1 if stage == 0 else 2)(x)
            x = ResidualBlock(width)(x)
        x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(config.dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="image_classifier")
