"""Image classification sources -> unbatched (float32 image [S, S, 3] in 0..255, int label) datasets.

- embedded: scikit-learn's handwritten digits (1,797 real 8x8 scans shipped in its wheel).
- a folder: one sub-folder per class (`root/<class>/*.jpg`), any image sizes.
- tfds:NAME: any TFDS image-classification dataset with (image, label) features.

Images are resized exactly as the exported endpoint resizes them, so training and serving agree.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from core.data import Source, Splits, class_folders, decode_image, load_tfds, percent_cuts, split_indices
from core.data import resize_square as resize


def _from_arrays(images: np.ndarray, labels: np.ndarray, class_names: list[str], size: int,
                 fractions, seed: int, info: dict) -> Splits:
    parts = split_indices(len(labels), fractions, seed)

    def make(idx):
        ds = tf.data.Dataset.from_tensor_slices((images[idx], labels[idx]))
        return ds.map(lambda x, y: (resize(x, size), y), num_parallel_calls=tf.data.AUTOTUNE)

    info = {**info, "class_names": class_names, "sizes": {k: int(len(p)) for k, p in
                                                          zip(("train", "val", "test"), parts)}}
    return Splits(make(parts[0]), make(parts[1]), make(parts[2]), info)


def digits(size: int, fractions, seed: int) -> Splits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 intensities, ink bright on black; scale to 8-bit grey and repeat to RGB like a scan would be.
    grey = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    names = [str(c) for c in bunch.target_names]
    return _from_arrays(images, bunch.target.astype(np.int32), names, size, fractions, seed,
                        {"source": "embedded: scikit-learn digits (UCI optdigits, 1,797 8x8 scans)"})


def folder(root: str, size: int, fractions, seed: int) -> Splits:
    paths, labels, names = class_folders(root)
    parts = split_indices(len(paths), fractions, seed)
    paths = np.asarray(paths)

    def load(path, label):
        return resize(decode_image(tf.io.read_file(path), 3, "image file"), size), label

    def make(idx):
        ds = tf.data.Dataset.from_tensor_slices((paths[idx], labels[idx]))
        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)

    info = {"source": f"folder: {root}", "class_names": names,
            "sizes": {k: int(len(p)) for k, p in zip(("train", "val", "test"), parts)}}
    return Splits(make(parts[0]), make(parts[1]), make(parts[2]), info)


def tfds_source(name: str, size: int, fractions, seed: int) -> Splits:
    import tensorflow_datasets as tfds  # noqa: F401 - imported for builder metadata below

    base = name.split(":")[0]
    cuts = percent_cuts("train", fractions)
    loaded, builder_info = None, None
    splits = []
    for cut in cuts:
        loaded, builder_info = load_tfds(base, split=cut, as_supervised=True, with_info=True,
                                         shuffle_files=False)
        splits.append(loaded.map(lambda x, y: (resize(x, size), tf.cast(y, tf.int32)),
                                 num_parallel_calls=tf.data.AUTOTUNE))
    names = builder_info.features["label"].names
    return Splits(*splits, {"source": f"tfds: {base}", "class_names": names, "splits": cuts})


def load(spec: str, size: int, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    return Source.load(spec, embedded=lambda: digits(size, fractions, seed),
                       tfds=lambda name: tfds_source(name, size, fractions, seed),
                       path=lambda root: folder(root, size, fractions, seed))
