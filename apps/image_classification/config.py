"""Image classification settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive


@dataclasses.dataclass
class Config(BaseConfig):
    # Square side the model sees (any input size is resized to it); 0: the backbone's own (224 for most
    # keras.applications networks, a hub module's fixed size), 32 for the compact CNN.
    image_size: int = at_least(0, 0)
    width: int = positive(32)  # channels of the first stage; later stages double it
    depth: int = positive(2)  # residual stages after the stem
    dropout: float = between(0, 1, 0.2, high_open=True)  # before the classifier
    augment: bool = True  # random translation, rotation, zoom and contrast while training
    flip: bool = False  # horizontal flips: wrong for digits and signs, right for most photos
    label_smoothing: float = between(0, 1, 0.05)  # of the one-hot targets
    top_k: int = positive(3)  # classes (with scores) each answer lists, best first
    # "" for the compact CNN; a keras.applications network (core.backbones: vgg16, resnet50, mobilenet_v2,
    # efficientnet_v2_b0, convnext_tiny, ...); or hub:<URL-or-path> of an image feature-vector module.
    backbone: str = ""
    weights: str = ""  # keras.applications weights: "" (random), "imagenet" or a local .h5/.weights.h5 file
    fine_tune_epochs: int = at_least(0, 0)  # second phase with (part of) the backbone trainable
    fine_tune_layers: int = at_least(0, 30)  # backbone layers (from the top) the fine-tuning phase trains
    fine_tune_blocks: str = ""  # or the layers whose names start so, comma-separated (VGG16: block5)
    val_fraction: float = between(0, 1, 0.1)  # of the data, held out to pick the best epoch
    test_fraction: float = between(0, 1, 0.15)  # of the data, held out for evaluate()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 8, "batch_size": 64, "width": 16, "depth": 1, "learning_rate": 3e-3, "augment": False,
                  "image_size": 16, "verbose": 0},
        "demo": {"epochs": 15, "batch_size": 64, "width": 32, "depth": 2, "learning_rate": 3e-3, "augment": False,
                 "image_size": 16, "time_budget_s": 120},
        "full": {"epochs": 60, "batch_size": 64, "width": 48, "depth": 3, "image_size": 96,
                 "early_stopping_patience": 10},
    }
