"""Image generation sources -> unbatched (float32 image [S, S, 3] in 0..255, int label) datasets.

Conditional (the default): the image_classification app's readers, so that both apps read the same
formats the same way:
- embedded: scikit-learn's handwritten digits (1,797 real 8x8 scans), upsampled to `image_size`.
- a folder: one sub-folder per class (`root/<class>/*.jpg`, a single `train/` level is looked through).
- tfds:NAME: any TFDS image-classification dataset with (image, label) features.

Unconditional: the same sources with their labels dropped, and a folder may be any tree of images
(every image under it, sub-folders or not). Every image gets label 0 of the one class "".
"""

from __future__ import annotations

from apps.image_classification.data import load as load_classified
from apps.image_generation.model import UNCONDITIONAL_CLASSES
from core.data import Source, Splits, image_folder

__all__ = ["load"]


def load(spec: str, size: int, val_fraction: float, test_fraction: float, seed: int,
         conditional: bool = True) -> Splits:
    """Train / val / test splits of `spec` at `size` x `size`, with info["class_names"]."""
    if conditional:
        return load_classified(spec, size, val_fraction, test_fraction, seed)
    source = Source.parse(spec)
    if source.kind == "path":  # any tree of images, sub-folders or not
        fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
        splits, unlabel = image_folder(source.value, size, fractions, seed), lambda x: (x, 0)
    else:
        splits, unlabel = load_classified(spec, size, val_fraction, test_fraction, seed), lambda x, y: (x, 0)
    info = {**splits.info, "class_names": UNCONDITIONAL_CLASSES,
            "labels": "none (unconditional)" if source.kind == "path" else "ignored (unconditional)"}
    return Splits(splits.train.map(unlabel), splits.val.map(unlabel), splits.test.map(unlabel), info)
