"""Image generation's bench: CIFAR-10 (2,500 real photos, 32x32) against the per-class PCA-Gaussian
baseline in the judge's feature space; recipes: the digits at 16x16 (class accuracy of samples) and
TF flowers at 64x64."""

from __future__ import annotations

from pathlib import Path

from core.bench import BenchSpec
from core.data import data_root

CIFAR_SOURCE = ("CIFAR-10 (TFDS cifar10, https://www.cs.toronto.edu/~kriz/cifar.html): one folder per class under "
                "cifar10_subset/train/, e.g. cifar10_subset/train/cat/*.jpg (the bench's copy: 250 images a class)")
FLOWERS_SOURCE = ("TFDS tf_flowers, or https://storage.googleapis.com/download.tensorflow.org/example_images/"
                  "flower_photos.tgz: one folder per class under flowers_128/train/ (the bench's copy: 120 "
                  "photos a class, centre-cropped to 128x128)")
# Photos: wider networks, colour augmentation too, a deeper judge trained longer.
PHOTOS = {"batch_size": 64, "learning_rate": 2e-4, "ema": 0.999, "diff_augment": "color,translation,cutout",
          "judge_width": 32, "judge_depth": 3, "judge_epochs": 30, "early_stopping_patience": 1000, "verbose": 2}
# 16 candidates a seed: on validation, lower KID and higher class accuracy than one draw in each of three seeds.
CIFAR = {**PHOTOS, "image_size": 32, "width": 256, "d_width": 64, "epochs": 400, "time_budget_s": 1800,
         "candidates": 16}
FLOWERS = {**PHOTOS, "image_size": 64, "width": 512, "d_width": 32, "epochs": 600, "time_budget_s": 1800}
DIGITS = {"image_size": 16, "width": 64, "d_width": 16, "epochs": 300, "learning_rate": 2e-3, "time_budget_s": 600,
          "early_stopping_patience": 1000, "verbose": 2}


def run_preset(overrides: dict, out_dir: Path, dataset: str = "", source: str = "") -> dict[str, float]:
    """Trains and evaluates one preset in out_dir; returns evaluate()'s metrics."""
    from apps.image_generation import Config, Pipeline

    values = dict(overrides)
    if dataset:
        path = data_root() / dataset
        if not path.exists():
            raise FileNotFoundError(f"The image_generation bench reads {path}, which is absent. Get it from {source}.")
        values["data"] = str(path)
    pipeline = Pipeline(Config(**values), out_dir)
    pipeline.fit()
    return pipeline.evaluate()


def digits_recipe(out_dir: Path) -> dict[str, float]:
    """catalogue train image_generation --set width=64 d_width=16 epochs=300 time_budget_s=600 (embedded digits)."""
    return run_preset(DIGITS, out_dir)


def flowers_recipe(out_dir: Path) -> dict[str, float]:
    """catalogue train image_generation --data $CATALOGUE_DATA/flowers_128 --set image_size=64 width=512 ..."""
    return run_preset(FLOWERS, out_dir, "flowers_128", FLOWERS_SOURCE)


BENCH = BenchSpec(
    overrides=CIFAR,
    dataset="cifar10_subset",
    source=CIFAR_SOURCE,
    # CIFAR's bars hold in each of three runs (seeds 0, 1, 2: each its own split, judge and GAN).
    # Memorisation: samples' nearest image among training + test images is a training image no more
    # often than chance allows (within two binomial standard deviations).
    bars=(("seeds_max_kid_over_baseline", "<=", 0.5), ("seeds_min_class_accuracy", ">=", 0.6),
          ("seeds_max_nn_train_z", "<=", 2.0), ("digits_class_accuracy", ">=", 0.9),
          ("digits_nn_train_z", "<=", 2.0)),
    seeds=(1, 2),
    seed_metrics=("kid_over_baseline", "class_accuracy", "nn_train_z"),
    quick={"judge_epochs": 5},
    recipes={"digits": digits_recipe, "flowers": flowers_recipe},
)
