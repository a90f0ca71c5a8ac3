"""Image generation sources -> unbatched (float32 image [S, S, 3] in 0..255, int label) datasets.

The image_classification app's readers, so that both apps read the same formats the same way:
- embedded: scikit-learn's handwritten digits (1,797 real 8x8 scans), upsampled to `image_size`.
- a folder: one sub-folder per class (`root/<class>/*.jpg`, a single `train/` level is looked through).
- tfds:NAME: any TFDS image-classification dataset with (image, label) features.
"""

from __future__ import annotations

from apps.image_classification.data import load as load_classified

__all__ = ["load"]


def load(spec: str, size: int, val_fraction: float, test_fraction: float, seed: int):
    """Train / val / test splits of `spec` at `size` x `size`, with info["class_names"]."""
    return load_classified(spec, size, val_fraction, test_fraction, seed)
