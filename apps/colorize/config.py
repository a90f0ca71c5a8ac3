"""Colourization settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive


@dataclasses.dataclass
class Config(BaseConfig):
    image_size: int = positive(64)  # square side the model sees; the endpoint restores the input's resolution
    width: int = positive(32)  # channels at full resolution; each encoder level doubles it
    depth: int = positive(3)  # encoder downsamplings (the U-Net's levels)
    # U-Nets trained one after another from different starts (the time budget shared); serving averages them
    members: int = positive(1)
    bin_size: float = positive(10.0)  # ab grid step of the colour classes
    soft_sigma: float = positive(5.0)  # Gaussian soft encoding of targets over neighbouring bins (ab units)
    rebalance: float = between(0, 1, 0.9)  # lambda of the class rebalancing: 1.0 turns it off, Zhang et al. use 0.5
    # annealed mean: 1 = mean (dull), towards 0 = mode (vivid); 0: chosen on validation
    temperature: float = at_least(0, 0.0)
    # ab gain after the annealed mean (1: none); 0: chosen on validation with the temperature
    saturation: float = at_least(0, 0.0)
    # decoding choice: least colourfulness (fraction of the originals') accepted
    min_colorfulness: float = at_least(0, 0.6)
    crops_per_photo: int = positive(400)  # embedded data: training crops per photo (val/test take half)
    augment: bool = True  # random zoomed crops (down to MIN_CROP of the side) and flips while training
    prior_images: int = positive(2048)  # training images used to count colour frequencies for rebalancing
    val_fraction: float = between(0, 1, 0.1)  # folder / TFDS sources; the embedded data splits by photo
    test_fraction: float = between(0, 1, 0.15)  # held-out photos for the test split

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 6, "batch_size": 32, "image_size": 32, "width": 16, "depth": 2,
                  "crops_per_photo": 64, "learning_rate": 3e-3, "verbose": 0},
        # make demo: sized for about 100 s in all (fit, evaluate, export) on 2 CPU cores.
        "demo": {"epochs": 8, "batch_size": 32, "image_size": 48, "width": 16, "depth": 3,
                 "crops_per_photo": 250, "learning_rate": 2e-3, "time_budget_s": 50},
        "full": {"epochs": 80, "batch_size": 32, "image_size": 128, "width": 48, "depth": 4,
                 "crops_per_photo": 1500, "early_stopping_patience": 10},
    }
