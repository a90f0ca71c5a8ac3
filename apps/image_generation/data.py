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

import numpy as np
import tensorflow as tf

from apps.image_classification.data import load as load_classified
from core.data import IMAGE_EXTENSIONS, Source, Splits, decode_image, list_files, split_indices
from core.data import resize_square as resize

__all__ = ["load", "UNCONDITIONAL_CLASSES"]

UNCONDITIONAL_CLASSES = [""]  # the one class of an unconditional model: the empty label


def load(spec: str, size: int, val_fraction: float, test_fraction: float, seed: int,
         conditional: bool = True) -> Splits:
    """Train / val / test splits of `spec` at `size` x `size`, with info["class_names"]."""
    if conditional:
        return load_classified(spec, size, val_fraction, test_fraction, seed)
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    source = Source.parse(spec)
    splits = (unlabeled_folder(source.value, size, fractions, seed) if source.kind == "path"
              else load_classified(spec, size, val_fraction, test_fraction, seed))
    unlabel = lambda x, y: (x, tf.zeros([], tf.int32))  # noqa: E731
    info = {**splits.info, "class_names": UNCONDITIONAL_CLASSES,
            "labels": "ignored (unconditional)" if source.kind != "path" else "none (unconditional)"}
    return Splits(splits.train.map(unlabel), splits.val.map(unlabel), splits.test.map(unlabel), info)


def unlabeled_folder(root: str, size: int, fractions, seed: int) -> Splits:
    """Every image under `root`, at any depth, split per file."""
    paths = np.asarray([str(p) for p in list_files(root, IMAGE_EXTENSIONS)])
    parts = split_indices(len(paths), fractions, seed)

    def make(idx):
        ds = tf.data.Dataset.from_tensor_slices(paths[idx])
        return ds.map(lambda p: (resize(decode_image(tf.io.read_file(p), 3, "image file"), size), 0),
                      num_parallel_calls=tf.data.AUTOTUNE)

    info = {"source": f"folder: {root}",
            "sizes": {k: int(len(p)) for k, p in zip(("train", "val", "test"), parts)}}
    return Splits(make(parts[0]), make(parts[1]), make(parts[2]), info)
