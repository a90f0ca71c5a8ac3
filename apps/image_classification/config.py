"""Image classification settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig


@dataclasses.dataclass
class Config(BaseConfig):
    image_size: int = 32  # square side the model sees; any input size is resized to it
    width: int = 32  # channels of the first stage; later stages double it
    depth: int = 2  # residual stages after the stem
    dropout: float = 0.2  # before the classifier
    augment: bool = True  # random translation, rotation, zoom and contrast while training
    flip: bool = False  # horizontal flips: wrong for digits and signs, right for most photos
    label_smoothing: float = 0.05  # of the one-hot targets
    top_k: int = 3  # classes (with scores) each answer lists, best first
    backbone: str = ""  # "" for the compact CNN, or a keras.applications name (mobilenet_v2, ...)
    weights: str = ""  # backbone weights: "", "imagenet" (needs network) or a local .h5/.keras file
    fine_tune_epochs: int = 0  # second phase with the backbone's top layers unfrozen
    fine_tune_layers: int = 30  # backbone layers (from the top) the fine-tuning phase trains
    val_fraction: float = 0.1  # of the data, held out to pick the best epoch
    test_fraction: float = 0.15  # of the data, held out for evaluate()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 8, "batch_size": 64, "width": 16, "depth": 1, "learning_rate": 3e-3, "augment": False,
                  "image_size": 16, "verbose": 0},
        "demo": {"epochs": 15, "batch_size": 64, "width": 32, "depth": 2, "learning_rate": 3e-3, "augment": False,
                 "image_size": 16, "time_budget_s": 120},
        "full": {"epochs": 60, "batch_size": 64, "width": 48, "depth": 3, "image_size": 96,
                 "early_stopping_patience": 10},
    }
