"""Image generation settings and presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive

AUGMENTATIONS = ("color", "translation", "cutout")


@dataclasses.dataclass
class Config(BaseConfig):
    # False: one generator for all images, labels ignored (a folder may then be any tree of images), and
    # the judge learns k-means clusters of the training images instead of their classes.
    conditional: bool = True
    image_size: int = at_least(8, 16)  # side of the square images generated (a power of two, at least 8)
    latent_dim: int = positive(64)  # length of the noise vector a seed becomes
    width: int = at_least(32, 128)  # channels at the generator's 4x4 stage, halved at each upsampling (at least 32)
    d_width: int = positive(32)  # channels of the discriminator's first stage, doubled at each downsampling
    # R1 penalty weight: gamma/2 times the squared gradient norm of D on real images keeps D smooth
    r1_gamma: float = at_least(0, 0.5)
    # decay of the generator's moving average, the copy that samples and is served
    ema: float = between(0, 1, 0.99, high_open=True)
    # Differentiable augmentations of real and generated images alike before the discriminator (DiffAugment),
    # comma-separated from color, translation, cutout; "" for none.
    diff_augment: str = "translation,cutout"
    # Weight of AC-GAN's auxiliary loss: the discriminator also classifies real images, and the generator
    # is asked for images it classifies as their label (0: projection conditioning alone).
    class_weight: float = at_least(0, 0.5)
    # Noises a seed draws when sampling; the one kept is the image the discriminator's class head reads as
    # the label most surely (1: the seed's own noise; models without a class head always draw one). More
    # steers photos to their class and lowers KID (the CIFAR bench uses 16); on the digits it gained nothing.
    candidates: int = positive(1)
    beta_1: float = between(0, 1, 0.5, high_open=True)  # Adam's first-moment decay for both networks
    # The metric classifier (the image_classification app's compact CNN, trained first on the same
    # training split): its features give KID/FID, its predictions the class accuracy of samples.
    judge_epochs: int = positive(10)  # training epochs of the judge (early stopped on validation accuracy)
    judge_width: int = positive(16)  # channels of the judge's first stage
    judge_depth: int = positive(2)  # residual stages of the judge
    samples_per_class: int = positive(8)  # columns of the per-epoch sample grid (one row per class)
    val_fraction: float = between(0, 1, 0.1)  # of the data, held out: its KID picks the best epoch
    test_fraction: float = between(0, 1, 0.15)  # of the data, held out for evaluate()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # candidates 4: the tests run the choice among candidates (the CIFAR bench's 16) end to end
        "smoke": {"epochs": 10, "batch_size": 64, "learning_rate": 2e-3, "width": 64, "d_width": 16,
                  "judge_epochs": 4, "early_stopping_patience": 100, "candidates": 4, "verbose": 0},
        "demo": {"epochs": 100, "batch_size": 64, "learning_rate": 2e-3, "width": 64, "d_width": 16, "judge_epochs": 10,
                 "time_budget_s": 60, "early_stopping_patience": 100},
        "full": {"epochs": 300, "batch_size": 64, "learning_rate": 1e-3, "ema": 0.999,
                 "early_stopping_patience": 100},
    }

    def check(self) -> None:
        super().check()
        size = self.image_size
        if size & (size - 1):
            raise ValueError(f"image_size must be a power of two, at least 8. Received: image_size={size}")
        unknown = [a for a in self.augmentations() if a not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"diff_augment takes {', '.join(AUGMENTATIONS)}, comma-separated. "
                             f"Received: diff_augment={self.diff_augment!r}")
        if self.strategy == "multiworker":
            # core's multi-worker loop calls the compiled loss; the GAN's two-optimizer step needs fit().
            raise ValueError("image_generation trains with Keras fit, which core does not run under "
                             "MultiWorkerMirroredStrategy. Received: strategy='multiworker'")

    def augmentations(self) -> list[str]:
        return [a.strip() for a in self.diff_augment.split(",") if a.strip()]
