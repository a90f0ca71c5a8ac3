"""A compact residual CNN, a keras.applications network or a TF Hub module, for image classification.

Input: float32 images [N, S, S, 3] with values in 0..255. Augmentation and rescaling live inside
the model so every caller (training, export, a user's own code) feeds the same raw pixels. The
feature extractor is the nested model "features" (published with `catalogue export --hub`).
"""

from __future__ import annotations

import keras
from keras import layers

from core.backbones import backbone_features
from core.layers import ConvBlock, ResidualBlock, classifier_head


def augmentation(flip: bool, seed: int) -> keras.Sequential:
    steps = [layers.RandomTranslation(0.1, 0.1, seed=seed), layers.RandomRotation(0.04, seed=seed),
             layers.RandomZoom(0.1, seed=seed), layers.RandomContrast(0.2, seed=seed)]
    if flip:
        steps.insert(0, layers.RandomFlip("horizontal", seed=seed))
    return keras.Sequential(steps, name="augment")


def build_features(config) -> keras.Model:
    """Images [N, S, S, 3] in 0..255 -> a feature vector: the part other apps reuse ("features")."""
    images = keras.Input((config.image_size, config.image_size, 3), name="images")
    if config.backbone:
        # Frozen here; the fine-tuning phase unfreezes (part of) it.
        x = backbone_features(config.backbone, images, config.image_size, config.weights, pooling="avg")
    else:
        x = layers.Rescaling(1.0 / 255)(images)
        x = ConvBlock(config.width)(x)
        for stage in range(config.depth):
            width = config.width * 2 ** stage
            x = ResidualBlock(width, strides=1 if stage == 0 else 2)(x)
            x = ResidualBlock(width)(x)
        x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, x, name="features")


def build_model(config, num_classes: int) -> keras.Model:
    """Image batch -> class probabilities (float32 even under mixed precision)."""
    inputs = keras.Input((config.image_size, config.image_size, 3), name="images")
    x = augmentation(config.flip, config.seed)(inputs) if config.augment else inputs
    outputs = classifier_head(build_features(config)(x), num_classes, config.dropout)
    return keras.Model(inputs, outputs, name="image_classifier")
