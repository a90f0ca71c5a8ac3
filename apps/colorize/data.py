"""Colourization sources -> unbatched float32 RGB images [S, S, 3] in 0..255 (no labels).

- embedded: the real colour photographs shipped inside pip dependencies (scikit-image's astronaut,
  coffee, rocket, motorcycle, chelsea; scikit-learn's china and flower; matplotlib's Grace Hopper),
  cut into many crops at several scales with flips. Photos are split whole: the validation and test
  crops come from photos the model never sees in training.
- a folder: every image under it (recursively), any sizes; split per file.
- tfds:NAME: any TFDS dataset with an `image` feature.

Whole images are resized to S x S exactly as the exported endpoint resizes them.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from apps.colorize import color
from core.data import Source, Splits, image_folder, load_tfds, percent_cuts
from core.data import resize_square as resize

# Whole photos per split; the two motorcycle views show one scene, so both stay in training.
EMBEDDED_SPLITS = {
    "train": ("astronaut", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "china"),
    "val": ("grace_hopper",),
    "test": ("chelsea", "flower"),
}
PYRAMID_LEVELS = 5  # crop scales: from the whole photo's short side down to 1/4 of it
MIN_COLORFULNESS = 1.0  # below: a black-and-white photo (0), left out of every split; 15 is "slightly colourful"


def embedded_photo(name: str) -> np.ndarray:
    """One of the photographs shipped inside a pip dependency, as uint8 [H, W, 3]."""
    if name in ("astronaut", "coffee", "rocket", "chelsea"):
        import skimage.data

        return getattr(skimage.data, name)()
    if name.startswith("motorcycle_"):
        import skimage.data

        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name.endswith("left") else right
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))
    raise ValueError(f"Unknown embedded photo. Received: {name!r}")


def random_crops(photo: np.ndarray, size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random size x size crops at several scales, half of them mirrored: uint8 [count, S, S, 3].

    A pyramid of antialiased downscales makes every scale a plain slice, so thousands of crops cost
    a few resizes rather than one each.
    """
    height, width = photo.shape[:2]
    short = min(height, width)
    if short < size:
        raise ValueError(f"Photo of {height}x{width} is smaller than image_size={size}")
    sides = np.geomspace(size, max(size, min(short, 4 * size)), PYRAMID_LEVELS)
    pyramid = []
    for side in sides:
        shape = (round(height * side / short), round(width * side / short))
        level = tf.image.resize(tf.cast(photo, tf.float32), shape, antialias=True)
        pyramid.append(tf.cast(tf.round(level), tf.uint8).numpy())
    crops = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        level = pyramid[rng.integers(len(pyramid))]
        y = rng.integers(level.shape[0] - size + 1)
        x = rng.integers(level.shape[1] - size + 1)
        crop = level[y:y + size, x:x + size]
        crops[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return crops


def embedded(size: int, crops_per_photo: int, seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    datasets, sizes = {}, {}
    for split, names in EMBEDDED_SPLITS.items():
        count = crops_per_photo if split == "train" else max(1, crops_per_photo // 2)
        crops = np.concatenate([random_crops(embedded_photo(n), size, count, rng) for n in names])
        datasets[split] = tf.data.Dataset.from_tensor_slices(crops).map(lambda x: tf.cast(x, tf.float32))
        sizes[split] = len(crops)
    info = {"source": "embedded: photos shipped in scikit-image, scikit-learn and matplotlib, "
                      f"{crops_per_photo} crops per training photo",
            "photos": {k: list(v) for k, v in EMBEDDED_SPLITS.items()}, "sizes": sizes}
    return Splits(datasets["train"], datasets["val"], datasets["test"], info)


def tfds_source(name: str, sizes: tuple[int, int, int], fractions) -> Splits:
    """TFDS `name` (optionally NAME:SPLIT) cut by percent into train / val / test at `sizes` each."""
    base, _, split = name.partition(":")
    cuts = percent_cuts(split or "train", fractions)

    def image_at(size):
        def image_of(example):
            if "image" not in example:
                raise ValueError(f"TFDS dataset {base!r} has no 'image' feature. Features: {sorted(example)}")
            image = example["image"]
            # Grayscale datasets have one channel: repeat it so every source yields RGB.
            return resize(tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image, size)
        return image_of

    splits = [load_tfds(base, split=cut, shuffle_files=False).map(image_at(size), num_parallel_calls=tf.data.AUTOTUNE)
              for cut, size in zip(cuts, sizes)]
    return Splits(*splits, {"source": f"tfds: {base}", "splits": cuts})


def load(spec: str, size: int, crops_per_photo: int, val_fraction: float, test_fraction: float,
         seed: int, train_size: int | None = None) -> Splits:
    """The photos of `spec` split by `seed`: validation and test at size x size, as the endpoint sees them;
    a folder's or TFDS's training photos at train_size (default: size), for training to cut zoomed crops
    from (the embedded training crops are cut from the full-resolution photos already)."""
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    train_size = train_size or size
    splits = Source.load(spec, embedded=lambda: embedded(size, crops_per_photo, seed),
                         tfds=lambda name: tfds_source(name, (train_size, size, size), fractions),
                         path=lambda root: image_folder(root, size, fractions, seed, train_size=train_size))
    return Splits(*(split.filter(has_colour) for split in (splits.train, splits.val, splits.test)),
                  dict(splits.info, without=f"photos of colourfulness below {MIN_COLORFULNESS} (black and white)"))


def has_colour(rgb: tf.Tensor) -> tf.Tensor:
    """False for a black-and-white photo among colour ones: there is no colour to learn from it, and
    scored against its own gray version (PSNR about 75 dB) one such photo outweighs dozens of others."""
    return color.colorfulness(rgb[None])[0] >= MIN_COLORFULNESS
